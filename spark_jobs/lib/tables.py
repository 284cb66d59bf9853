"""The lake's Delta tables as the stream creates them: the Kafka record schema, Bronze, Silver and quarantine
created empty and partitioned before the first batch, and evolved when a newer contract adds columns."""
from __future__ import annotations

import json
import logging

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import BinaryType, IntegerType, LongType, StringType, StructField, StructType, TimestampType

from conf.settings import Settings
from spark_jobs.lib.jobs import JobError
from spark_jobs.lib.listener import LOGGER_NAME
from spark_jobs.lib.transforms import (PARTITION_COLUMNS, Entity, bronze_rows, parse_events, quarantine_rows,
                                       silver_rows)

log = logging.getLogger(LOGGER_NAME)


def require_contract_columns(silver_path: str, silver: DataFrame, rows: DataFrame) -> None:
    """JobError unless Silver has every column of the current contract's rows. A newer contract's columns are the
    upgraded stream's to add at start-up (add_missing_columns, below): adding them from a batch job could fail the
    running stream's next commit."""
    lacking = [name for name in rows.columns if name not in silver.columns]
    if lacking:
        raise JobError(f"{silver_path} lacks the columns {', '.join(lacking)} of the current contract: start the "
                       f"upgraded stream first, it adds them (README, Operations, \"Upgrading the event schema\")")


# The Kafka source's schema, for creating the tables before the first batch arrives.
KAFKA_SCHEMA = StructType([
    StructField("key", BinaryType()), StructField("value", BinaryType()), StructField("topic", StringType()),
    StructField("partition", IntegerType()), StructField("offset", LongType()),
    StructField("timestamp", TimestampType()), StructField("timestampType", IntegerType()),
])


# Silver keeps Delta's change data feed: spark_jobs/silver_changes.py reads which rows each commit added or removed,
# so Gold rebuilds exactly the buckets that changed (appends cost nothing extra: the feed reads their data files).
SILVER_PROPERTIES = {"delta.enableChangeDataFeed": "true"}


def ensure_tables(spark: SparkSession, settings: Settings, entity: Entity, schema: dict,
                  layers: tuple[str, ...] = ("bronze", "silver", "quarantine")) -> None:
    """Create the entity's tables of `layers` (empty, partitioned) so readers never meet a missing table, and give an
    existing table the columns a newer contract adds (add_missing_columns)."""
    empty = bronze_rows(spark.createDataFrame([], KAFKA_SCHEMA))
    parsed = parse_events(empty, entity, schema, settings.stream.max_future_skew_seconds)
    tables = {"bronze": empty, "silver": silver_rows(parsed, entity), "quarantine": quarantine_rows(parsed)}
    for layer, df in ((layer, tables[layer]) for layer in layers):
        path = settings.lake_uri(entity.table(layer))
        properties = SILVER_PROPERTIES if layer == "silver" else {}
        builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(df.schema)
        for key, value in properties.items():
            builder = builder.property(key, value)
        builder.partitionedBy(*PARTITION_COLUMNS).execute()
        add_missing_columns(spark, path, df.schema)
        set_missing_properties(spark, path, properties)


def set_missing_properties(spark: SparkSession, path: str, properties: dict[str, str]) -> list[str]:
    """Give a table created by an older release the properties a new one is created with (one metadata commit);
    returns the keys set. SHOW TBLPROPERTIES reads the snapshot's metadata; DESCRIBE DETAIL would run a Spark job
    over the table's files (1-4 s per table at every stream start)."""
    if not properties:
        return []
    current = {row.key: row.value for row in spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()}
    missing = {key: value for key, value in properties.items() if current.get(key) != value}
    if missing:
        assignments = ", ".join(f"'{key}' = '{value}'" for key, value in missing.items())
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({assignments})")
        log.info(json.dumps({"event": "table_properties_set", "table": path, "properties": missing}))
    return list(missing)


def add_missing_columns(spark: SparkSession, path: str, schema: StructType) -> list[str]:
    """Delta schema evolution for a new schema version: the columns of `schema` the table lacks are added (at the
    end, nullable: the rows already there read them as null), in one metadata-only commit. Returns their names.

    Only additions: a contract version may only add optional fields (conf.contracts.schemas.load_contract), so a column
    never changes type or disappears."""
    existing = {field.name for field in DeltaTable.forPath(spark, path).toDF().schema}
    missing = [field for field in schema if field.name not in existing]
    if missing:
        columns = ", ".join(f"`{field.name}` {field.dataType.simpleString()}" for field in missing)
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({columns})")
        log.info(json.dumps({"event": "table_columns_added", "table": path,
                             "columns": [field.name for field in missing]}))
    return [field.name for field in missing]
