"""The lake's entities are named in three places that cannot share one list: spark_jobs/lib/transforms (the jobs),
the Airflow plugin's assets (Airflow's own environment cannot import the project) and dbt's sources (one table each,
with its columns). This keeps the three equal."""
import ast
from pathlib import Path

import yaml

from spark_jobs.lib.transforms import BATCH_ENTITIES, ENTITIES

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "airflow" / "plugins" / "stocklake_airflow" / "assets.py"
SOURCES = REPO / "dbt_project" / "models" / "staging" / "__sources.yml"


def asset_entity_lists() -> list[list[str]]:
    """Every tuple of strings the assets module iterates over to make its per-entity assets."""
    tree = ast.parse(ASSETS.read_text())
    return [[element.value for element in node.iter.elts] for node in ast.walk(tree)
            if isinstance(node, ast.comprehension) and isinstance(node.iter, ast.Tuple)
            and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.iter.elts)]


def test_the_airflow_assets_name_every_streamed_entity():
    lists = asset_entity_lists()
    assert lists and all(entities == list(ENTITIES) for entities in lists), lists
    assert 'name="silver_bars"' in ASSETS.read_text()  # the backfill's table, scheduled on by Gold


def test_dbt_reads_every_entitys_silver_table():
    (lake,) = [source for source in yaml.safe_load(SOURCES.read_text())["sources"] if source["name"] == "lake"]
    tables = {table["name"] for table in lake["tables"]}
    # trades_changes: Silver's change index (spark_jobs/silver_changes.py), what incremental Gold reads.
    assert tables == {*ENTITIES, *BATCH_ENTITIES, "trades_changes"}
