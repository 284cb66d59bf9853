"""compact.py, vacuum.py and retention.py against Delta tables on the real local MinIO.

The tables are the stream's own: created by stream.ensure_tables and filled through the stream's transforms
(bronze_rows, parse_events, silver_rows, quarantine_rows) over small in-memory Kafka-like DataFrames, one small
append at a time, so each append leaves exactly one file in every hour partition it touches.
"""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from delta.tables import DeltaTable

from conf.contracts.schemas import load_contract
from conf.contracts.events import encode, make_trade_event
from spark_jobs import compact, retention, vacuum
from spark_jobs.lib.tables import KAFKA_SCHEMA, ensure_tables
from spark_jobs.lib.transforms import TRADES, bronze_rows, parse_events, quarantine_rows, silver_rows
from tests.integration.stack import REPO, s3_client

pytestmark = pytest.mark.integration

SCHEMA = load_contract(TRADES.schema_name)
NOW = "2026-01-05T15:20:00Z"             # with the default 15 min grace, hour 14 closed at 15:15
CLOSED = ("2026-01-05", "14")
OPEN = ("2026-01-05", "15")              # the hour the stream is writing
OLD = ("2026-01-02", "09")               # closed, but before the 48 h look-back
SYMBOLS = ("AAPL", "MSFT")
PER_SYMBOL = 2                           # valid trades per symbol, hour and append
MALFORMED = b'{"event_id": "'            # one per hour and append: quarantined as malformed_json


def kafka_records(hours, append: int, first_offset: int) -> list[tuple]:
    """Kafka-like rows for each hour: valid trades of every symbol plus one malformed record. The Kafka
    timestamp is the trade time, so Bronze (by Kafka time) and Silver (by event time) share their hours."""
    rows, offset = [], first_offset
    for date, hour in hours:
        start = datetime.fromisoformat(f"{date}T{hour}:00:00").replace(tzinfo=timezone.utc)
        for symbol in SYMBOLS:
            for n in range(PER_SYMBOL):
                ts_ms = int(start.timestamp() * 1000) + (append * 60 + n) * 1000
                event = make_trade_event("simulator", symbol, ts_ms, 100.0 + append + n / 100, 10 + n, ["1"],
                                         sequence=offset)
                rows.append((symbol.encode(), encode(event), "t", 0, offset,
                             datetime.fromtimestamp(ts_ms / 1000, timezone.utc).replace(tzinfo=None), 0))
                offset += 1
        rows.append((b"AAPL", MALFORMED, "t", 0, offset, start.replace(tzinfo=None), 0))
        offset += 1
    return rows


def build_lake(spark, settings, hours, appends: int) -> None:
    """trades Bronze, Silver and quarantine as the stream makes them; each append one file per hour."""
    ensure_tables(spark, settings, TRADES, SCHEMA)
    offset = 0
    for append in range(appends):
        records = kafka_records(hours, append, offset)
        offset += len(records)
        bronze = bronze_rows(spark.createDataFrame(records, KAFKA_SCHEMA)).coalesce(1)
        parsed = parse_events(bronze, TRADES, SCHEMA, settings.stream.max_future_skew_seconds)
        for layer, df in (("bronze", bronze), ("silver", silver_rows(parsed, TRADES)),
                          ("quarantine", quarantine_rows(parsed))):
            df.write.format("delta").mode("append").save(settings.lake_uri(TRADES.table(layer)))


def read(spark, settings, layer: str):
    return spark.read.format("delta").load(settings.lake_uri(TRADES.table(layer)))


def partition_files(spark, settings, layer: str, partition: tuple[str, str]) -> set[str]:
    """The data files the table's current version references for one hour partition, as Spark reads them."""
    date, hour = partition
    return set(read(spark, settings, layer).where(f"date = '{date}' AND hour = '{hour}'").inputFiles())


def object_sizes(settings) -> dict[str, int]:
    """Every object in the test's bucket and its size on MinIO."""
    s3 = s3_client(settings)
    sizes = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.lake.bucket):
        for item in page.get("Contents", []):
            sizes[f"s3a://{settings.lake.bucket}/{item['Key']}"] = item["Size"]
    return sizes


def data_objects(settings) -> set[str]:
    return {name for name in object_sizes(settings) if "/_delta_log/" not in name}


def partition_keys(spark, settings, layer: str, partition: tuple[str, str]) -> list:
    """Each row's identity in one hour partition: (partition, offset) in Bronze, event_id in Silver."""
    date, hour = partition
    columns = ["partition", "offset"] if layer == "bronze" else ["event_id"]
    rows = read(spark, settings, layer).where(f"date = '{date}' AND hour = '{hour}'").select(*columns).collect()
    return sorted(tuple(row) for row in rows)


def latest_commit(spark, settings, layer: str):
    return DeltaTable.forPath(spark, settings.lake_uri(TRADES.table(layer))).history(1).collect()[0]


def tables_by_name(result: dict) -> dict[str, dict]:
    return {f"{t['layer']}/{t['entity']}": t for t in result["tables"]}


def test_compaction_rewrites_closed_hours_only_and_keeps_every_row(spark, isolated, tmp_path, capsys):
    settings, _ = isolated
    build_lake(spark, settings, [OLD, CLOSED, OPEN], appends=3)
    layers = ("bronze", "silver")
    files_before = {(layer, p): partition_files(spark, settings, layer, p)
                    for layer in layers for p in (OLD, CLOSED, OPEN)}
    assert {key: len(files) for key, files in files_before.items()} == {key: 3 for key in files_before}
    keys_before = {layer: partition_keys(spark, settings, layer, CLOSED) for layer in layers}
    assert len(keys_before["bronze"]) == 3 * (len(SYMBOLS) * PER_SYMBOL + 1) == 15
    assert len(keys_before["silver"]) == 3 * len(SYMBOLS) * PER_SYMBOL == 12
    versions_before = {layer: latest_commit(spark, settings, layer)["version"] for layer in layers}

    # A minute before the grace is over, hour 14 is not closed yet: nothing is touched.
    early = tmp_path / "early.json"
    assert compact.main(["--now", "2026-01-05T15:14:59Z", "--json", str(early)], spark=spark) == 0
    assert {name: t["status"] for name, t in tables_by_name(json.loads(early.read_text())).items()} == {
        "bronze/trades": "nothing_to_do", "silver/trades": "nothing_to_do",
        "bronze/quotes": "missing", "silver/quotes": "missing"}
    assert {layer: latest_commit(spark, settings, layer)["version"] for layer in layers} == versions_before

    # The job's main, every entity (Airflow runs its file through spark-submit: tests/integration/
    # test_airflow_dags.py); the quotes tables do not exist and are skipped.
    report = tmp_path / "compact.json"
    capsys.readouterr()
    assert compact.main(["--now", NOW, "--json", str(report)], spark=spark) == 0
    printed = capsys.readouterr().out.splitlines()
    assert f"compact bronze/quotes: skipped, no Delta table at {settings.lake_uri('bronze/quotes')}" in printed
    tables = tables_by_name(json.loads(report.read_text()))
    assert {name: t["status"] for name, t in tables.items()} == {
        "bronze/trades": "compacted", "silver/trades": "compacted", "bronze/quotes": "missing",
        "silver/quotes": "missing"}

    sizes = object_sizes(settings)
    for layer, zorder_column in (("bronze", "key"), ("silver", "symbol")):
        table = tables[f"{layer}/trades"]
        files_after = partition_files(spark, settings, layer, CLOSED)
        # The closed hour: three files became one new one, every row kept.
        assert len(files_after) == 1 and not files_after & files_before[(layer, CLOSED)]
        assert partition_keys(spark, settings, layer, CLOSED) == keys_before[layer]
        # The open hour and the hour before the look-back: exactly the same files.
        assert partition_files(spark, settings, layer, OPEN) == files_before[(layer, OPEN)]
        assert partition_files(spark, settings, layer, OLD) == files_before[(layer, OLD)]

        # The report says what the table and the object store show.
        rows = len(keys_before[layer])
        bytes_before = sum(sizes[name] for name in files_before[(layer, CLOSED)])
        bytes_after = sum(sizes[name] for name in files_after)
        assert len(table["partitions"]) == 1
        partition = table["partitions"][0]
        assert (partition["date"], partition["hour"], partition["status"], partition["attempts"]) == (
            *CLOSED, "compacted", 1)
        assert partition["before"] == {"files": 3, "bytes": bytes_before, "rows": rows}
        assert partition["after"] == {"files": 1, "bytes": bytes_after, "rows": rows}
        assert partition["optimize"] == {"files_removed": 3, "files_added": 1, "bytes_removed": bytes_before,
                                         "bytes_added": bytes_after}
        assert (table["files_before"], table["bytes_before"], table["files_after"], table["bytes_after"]) == (
            3, bytes_before, 1, bytes_after)
        assert f"compact {layer}/trades: 1 closed hour(s) compacted, files 3 -> 1, bytes {bytes_before:,} -> " \
               f"{bytes_after:,}" in printed

        # One OPTIMIZE commit, on that partition only, Z-ordered by the symbol column.
        commit = latest_commit(spark, settings, layer)
        assert (commit["version"], commit["operation"]) == (versions_before[layer] + 1, "OPTIMIZE")
        assert commit["operationParameters"]["zOrderBy"] == json.dumps([zorder_column])
        assert "date" in commit["operationParameters"]["predicate"] and "14" in \
            commit["operationParameters"]["predicate"]

    # Idempotent: a second run finds nothing to compact and commits nothing.
    again = tmp_path / "again.json"
    assert compact.main(["--entity", "trades", "--now", NOW, "--json", str(again)], spark=spark) == 0
    second = tables_by_name(json.loads(again.read_text()))
    assert {name: (t["status"], t["partitions"]) for name, t in second.items()} == {
        "bronze/trades": ("nothing_to_do", []), "silver/trades": ("nothing_to_do", [])}
    assert {layer: latest_commit(spark, settings, layer)["version"] for layer in layers} == \
        {layer: version + 1 for layer, version in versions_before.items()}


def plant_orphan(settings, copy_of: str, name: str, modified: datetime) -> str:
    """A data file no table version references, as a write killed before its commit leaves one: a copy of a real
    data file next to it, with the object store's modification time set to `modified` (MinIO keeps the time a
    PUT names in x-minio-source-mtime, as its replication does). Returns its s3a:// name."""
    s3 = s3_client(settings)
    prefix = f"s3a://{settings.lake.bucket}/"
    key = copy_of[len(prefix):].rsplit("/", 1)[0] + f"/{name}"
    body = s3.get_object(Bucket=settings.lake.bucket, Key=copy_of[len(prefix):])["Body"].read()

    def stamp(request, **_):
        request.headers["X-Minio-Source-Mtime"] = modified.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    s3.meta.events.register("before-sign.s3.PutObject", stamp)
    s3.put_object(Bucket=settings.lake.bucket, Key=key, Body=body)
    return prefix + key


def rows_of(spark, settings, layer: str) -> list[str]:
    """Every row of the layer's current version, as sorted JSON lines (a full comparison, not a count)."""
    return sorted(read(spark, settings, layer).toJSON().collect())


def test_vacuum_deletes_unreferenced_files_older_than_the_retention_only_and_keeps_every_row(
        spark, isolated, tmp_path):
    settings, env = isolated
    build_lake(spark, settings, [CLOSED, OPEN], appends=2)
    assert compact.main(["--entity", "trades", "--now", NOW], spark=spark) == 0
    layers = ("bronze", "silver", "quarantine")
    rows_before = {layer: rows_of(spark, settings, layer) for layer in layers}
    assert {layer: len(rows) for layer, rows in rows_before.items()} == {
        "bronze": 2 * 2 * 5, "silver": 2 * 2 * 4, "quarantine": 2 * 2 * 1}
    # The files OPTIMIZE replaced are still there, unreferenced: younger than the retention.
    referenced = {name for layer in layers for name in read(spark, settings, layer).inputFiles()}
    replaced = data_objects(settings) - referenced
    assert len(replaced) == 2 * 2  # two files each in Bronze's and Silver's closed hour
    # Leftovers of writes killed before their commit: in Silver's open hour and in quarantine, one 8 days old
    # (past the 7-day retention) and one a day old.
    now = datetime.now(timezone.utc)
    old, young = [], []
    for layer in ("silver", "quarantine"):
        source = sorted(f for f in read(spark, settings, layer).inputFiles() if f"hour={OPEN[1]}" in f)[0]
        old.append(plant_orphan(settings, source, "part-00000-killed-write-old.c000.snappy.parquet",
                                now - timedelta(days=8)))
        young.append(plant_orphan(settings, source, "part-00000-killed-write-young.c000.snappy.parquet",
                                  now - timedelta(days=1)))
    sizes = object_sizes(settings)
    objects_before = data_objects(settings)

    report = tmp_path / "vacuum.json"
    assert vacuum.main(["--json", str(report)], spark=spark) == 0
    result = json.loads(report.read_text())
    assert result["retention_hours"] == 168
    assert {name: (t["status"], t.get("files_deleted"), t.get("bytes_deleted"))
            for name, t in tables_by_name(result).items()} == {
        "bronze/trades": ("vacuumed", 0, 0),
        "silver/trades": ("vacuumed", 1, sizes[old[0]]),
        "quarantine/trades": ("vacuumed", 1, sizes[old[1]]),
        "bronze/quotes": ("missing", None, None), "silver/quotes": ("missing", None, None),
        "quarantine/quotes": ("missing", None, None)}

    # Exactly the old leftovers are gone; the young ones, the replaced files and every referenced file stay.
    assert data_objects(settings) == objects_before - set(old)
    assert set(young) | replaced | referenced <= data_objects(settings)
    # Every row of every table reads back as before, field by field.
    assert {layer: rows_of(spark, settings, layer) for layer in layers} == rows_before
    # Delta's retention check stayed on, and the job did not leave its vacuum settings in the session.
    for layer in layers:
        history = DeltaTable.forPath(spark, settings.lake_uri(TRADES.table(layer))).history(2).collect()
        assert [row["operation"] for row in history] == ["VACUUM END", "VACUUM START"]
        assert history[1]["operationParameters"]["retentionCheckEnabled"] == "true"
        assert history[1]["operationParameters"]["specifiedRetentionMillis"] == str(168 * 3600 * 1000)
    assert spark.conf.get("spark.databricks.delta.vacuum.logging.enabled", None) is None
    assert spark.conf.get("spark.databricks.delta.vacuum.retentionWindowIgnore.enabled", None) is None

    # The job file refuses a retention below Delta's safety minimum, before touching anything (and before any JVM).
    refused = subprocess.run([sys.executable, str(REPO / "spark_jobs" / "vacuum.py"), "--retention-hours", "1"],
                             env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "vacuum: --retention-hours 1 is below 168 hours (7 days), Delta's retention safety minimum" \
        in refused.stderr
    assert data_objects(settings) == objects_before - set(old)


def test_retention_deletes_expired_raw_partitions_only(spark, isolated, tmp_path):
    settings, env = isolated
    expired = [("2025-11-30", "04"), ("2025-12-05", "23")]
    kept = [("2025-12-06", "00"), CLOSED]  # the cutoff day itself is kept
    build_lake(spark, settings, expired + kept, appends=1)
    silver_before = {p: partition_keys(spark, settings, "silver", p) for p in expired + kept}
    silver_version = latest_commit(spark, settings, "silver")["version"]

    def rows_per_partition(layer):
        return {(row["date"], row["hour"]): row["count"]
                for row in read(spark, settings, layer).groupBy("date", "hour").count().collect()}

    report = tmp_path / "retention.json"
    assert retention.main(["--days", "30", "--now", NOW, "--json", str(report)], spark=spark) == 0
    result = json.loads(report.read_text())
    assert result["cutoff_date"] == "2025-12-06"
    tables = tables_by_name(result)
    assert {name: t["status"] for name, t in tables.items()} == {
        "bronze/trades": "deleted", "quarantine/trades": "deleted", "bronze/quotes": "missing",
        "quarantine/quotes": "missing"}

    for layer, per_hour in (("bronze", 5), ("quarantine", 1)):
        # Exactly the expired partitions are gone; the others keep every row.
        assert rows_per_partition(layer) == {p: per_hour for p in kept}
        table = tables[f"{layer}/trades"]
        assert [(p["date"], p["hour"], p["files"], p["rows"]) for p in table["partitions_deleted"]] == [
            (*p, 1, per_hour) for p in expired]
        assert (table["rows_deleted"], table["files_deleted"]) == (2 * per_hour, 2)
        # One metadata-only DELETE: whole files dropped, nothing rewritten.
        commit = latest_commit(spark, settings, layer)
        assert commit["operation"] == "DELETE"
        metrics = commit["operationMetrics"]
        assert (metrics["numRemovedFiles"], metrics["numAddedFiles"], metrics["numCopiedRows"],
                metrics["numDeletedRows"]) == ("2", "0", "0", str(2 * per_hour))

    # Silver is never touched.
    assert latest_commit(spark, settings, "silver")["version"] == silver_version
    assert {p: partition_keys(spark, settings, "silver", p) for p in expired + kept} == silver_before
    assert all(len(keys) == len(SYMBOLS) * PER_SYMBOL for keys in silver_before.values())

    # Nothing left to delete: a second run commits nothing.
    bronze_version = latest_commit(spark, settings, "bronze")["version"]
    assert retention.main(["--entity", "trades", "--days", "30", "--now", NOW, "--json", str(report)],
                          spark=spark) == 0
    assert {name: t["status"] for name, t in tables_by_name(json.loads(report.read_text())).items()} == {
        "bronze/trades": "nothing_to_do", "quarantine/trades": "nothing_to_do"}
    assert latest_commit(spark, settings, "bronze")["version"] == bronze_version
