"""The lake's tables as Airflow Assets: tasks that change them list them as outlets, and gold_dbt is scheduled on
them (data-aware scheduling). Names, not bucket URIs: the bucket is a setting, the tables' identity is not."""
from __future__ import annotations

from airflow.sdk import Asset

BRONZE_TABLES = [Asset(name=f"bronze_{entity}", uri=f"stocklake://lake/bronze/{entity}", group="lakehouse")
                 for entity in ("trades", "quotes")]
SILVER_TABLES = [Asset(name=f"silver_{entity}", uri=f"stocklake://lake/silver/{entity}", group="lakehouse")
                 for entity in ("trades", "quotes")]
SILVER_TRADES = SILVER_TABLES[0]
SILVER_BARS = Asset(name="silver_bars", uri="stocklake://lake/silver/bars", group="lakehouse")
GOLD = Asset(name="gold", uri="stocklake://warehouse/gold", group="warehouse")
# Silver as the warehouse sees it (Snowflake external tables after a refresh).
WAREHOUSE_SILVER = Asset(name="warehouse_silver", uri="stocklake://warehouse/silver", group="warehouse")
