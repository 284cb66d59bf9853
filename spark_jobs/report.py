"""Read the tables back and account for every Bronze record.

    spark-submit spark_jobs/report.py [--entity trades] [--entity quotes] [--json PATH]

Each Bronze record ends in exactly one of: Silver (first delivery of a valid event), quarantine (broke the
contract), duplicate (a later delivery of an event id already kept), or late (a valid event the stream's
watermark dropped; it waits in Bronze for reconciliation). The report recomputes validity from Bronze with the
stream's own transforms, so

    bronze = silver + quarantined + duplicates + late

must hold exactly; `balanced` says whether it does.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from conf.contracts.schemas import load_contract
from conf.settings import ConfigError, Settings, load_settings
from spark_jobs.lib.session import build_spark
from spark_jobs.lib.transforms import ENTITIES, Entity, parse_events


def account(spark: SparkSession, settings: Settings, entity: Entity) -> dict:
    read = lambda layer: spark.read.format("delta").load(settings.lake_uri(entity.table(layer)))  # noqa: E731
    bronze, silver, quarantine = read("bronze"), read("silver"), read("quarantine")
    parsed = parse_events(bronze, entity, load_contract(entity.schema_name),
                          settings.stream.max_future_skew_seconds)
    # Parsing is the expensive part: do it once, keep only the ids.
    valid_ids = parsed.where(F.size("reasons") == 0).select(F.col("event.event_id").alias("event_id")).cache()

    bronze_rows = bronze.count()
    valid_rows = valid_ids.count()
    distinct_valid = valid_ids.distinct().count()
    silver_rows = silver.count()
    silver_distinct = silver.select("event_id").distinct().count()
    late_ids = valid_ids.distinct().join(silver.select("event_id"), "event_id", "left_anti")
    late_rows = late_ids.count()
    by_reason = {row["reason"]: row["count"] for row in quarantine.groupBy("reason").count().collect()}
    quarantined = sum(by_reason.values())
    duplicates = valid_rows - distinct_valid
    valid_ids.unpersist()
    return {
        "entity": entity.name,
        "bronze_rows": bronze_rows,
        "silver_rows": silver_rows,
        "silver_duplicate_event_ids": silver_rows - silver_distinct,
        "duplicates_removed": duplicates,
        "quarantined_rows": quarantined,
        "quarantined_by_reason": dict(sorted(by_reason.items())),
        "late_rows": late_rows,
        "balanced": bronze_rows == silver_rows + quarantined + duplicates + late_rows
                    and silver_rows == silver_distinct,
        "tables": {layer: settings.lake_uri(entity.table(layer)) for layer in ("bronze", "silver", "quarantine")},
    }


def render(report: dict) -> str:
    lines = [
        f"{report['entity']}: bronze {report['bronze_rows']:,} = silver {report['silver_rows']:,}"
        f" + quarantined {report['quarantined_rows']:,} + duplicates removed {report['duplicates_removed']:,}"
        f" + late {report['late_rows']:,}  [{'balanced' if report['balanced'] else 'NOT BALANCED'}]",
    ]
    for reason, count in report["quarantined_by_reason"].items():
        lines.append(f"  quarantined {reason}: {count:,}")
    for layer, uri in report["tables"].items():
        lines.append(f"  {layer:<10} {uri}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="spark_jobs/report.py", description=__doc__.splitlines()[0])
    parser.add_argument("--entity", choices=list(ENTITIES), action="append",
                        help="an event stream to account for; repeat for several (default: all, trades first)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        spark = build_spark("stocklake-report", settings, {"spark.ui.enabled": "false"})
    except ConfigError as exc:
        print(f"report: configuration error: {exc}", file=sys.stderr)
        return 2
    spark.sparkContext.setLogLevel("WARN")
    reports = [account(spark, settings, ENTITIES[name]) for name in dict.fromkeys(args.entity or ENTITIES)]
    spark.stop()
    for report in reports:
        print(render(report))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0 if all(r["balanced"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
