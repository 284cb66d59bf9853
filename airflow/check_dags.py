"""Load the DAG folder the way Airflow does (DagBag) and print its shape as JSON, for the DAG integrity tests.

    .venv-airflow/bin/python airflow/check_dags.py [--dags-folder DIR] [--json PATH]

Runs in the Airflow environment (scripts/airflow_env.py: `python3 scripts/airflow_env.py run -- python
airflow/check_dags.py`); the folder defaults to AIRFLOW__CORE__DAGS_FOLDER. Writes one JSON document to PATH (or
stdout, where Airflow's own log lines may also go), keys and lists sorted, so two runs over the same files give the
same bytes:

    {"dags_folder": ..., "import_errors": {<file relative to the folder>: <error>},
     "dags": [{"dag_id", "fileloc", "schedule", "timetable", "schedule_assets", "tags", "owners", "max_active_runs",
               "catchup", "dagrun_timeout_seconds", "doc_md", "on_failure_callback", "has_cycle", "task_ids",
               "tasks": {<task_id>: {"operator", "owner", "retries", "execution_timeout_seconds",
                                     "on_failure_callback", "upstream", "trigger_rule", "outlets"}}}]}

`on_failure_callback` lists the callbacks' qualified names ([] when none). Exit 0 when every file imported, 1 when
any import error (the JSON is written either way), 2 when the folder does not exist.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any


def callback_names(callbacks: Any) -> list[str]:
    if not callbacks:
        return []
    items = callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]
    return sorted(f"{getattr(c, '__module__', '?')}.{getattr(c, '__qualname__', type(c).__name__)}" for c in items)


def seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def schedule_text(dag: Any) -> str | None:
    """The schedule as written when it is text (cron, @preset), else the timetable's summary; None: unscheduled."""
    schedule = dag.schedule
    if schedule is None:
        return None
    if isinstance(schedule, str):
        return schedule
    if isinstance(schedule, timedelta):
        return f"every {schedule}"
    return timetable_summary(dag)


def timetable_summary(dag: Any) -> str:
    """What the UI shows as the schedule (the DAG holds the SDK's timetable; the summary is the scheduler's)."""
    from airflow.serialization.encoders import coerce_to_core_timetable

    return coerce_to_core_timetable(dag.timetable).summary


def schedule_assets(dag: Any) -> list[str]:
    """Names of the assets that trigger an asset-scheduled DAG ([] otherwise)."""
    condition = getattr(dag.timetable, "asset_condition", None)
    if condition is None:
        return []
    names = set()
    for _key, asset in condition.iter_assets():
        names.add(asset.name)
    return sorted(names)


def has_cycle(dag: Any) -> bool:
    from airflow.exceptions import AirflowDagCycleException

    try:
        dag.check_cycle()
    except AirflowDagCycleException:
        return True
    return False


def describe_task(task: Any) -> dict[str, Any]:
    return {
        "operator": type(task).__name__,
        "owner": task.owner,
        "retries": task.retries,
        "execution_timeout_seconds": seconds(task.execution_timeout),
        "on_failure_callback": callback_names(task.on_failure_callback),
        "upstream": sorted(task.upstream_task_ids),
        "trigger_rule": getattr(task.trigger_rule, "value", task.trigger_rule),
        "outlets": sorted(getattr(o, "name", str(o)) for o in (task.outlets or [])),
    }


def describe_dag(dag: Any, folder: Path) -> dict[str, Any]:
    fileloc = Path(dag.fileloc)
    return {
        "dag_id": dag.dag_id,
        "fileloc": str(fileloc.relative_to(folder)) if fileloc.is_relative_to(folder) else str(fileloc),
        "schedule": schedule_text(dag),
        "timetable": timetable_summary(dag),
        "schedule_assets": schedule_assets(dag),
        "tags": sorted(dag.tags),
        "owners": sorted({task.owner for task in dag.tasks}),
        "max_active_runs": dag.max_active_runs,
        "catchup": dag.catchup,
        "dagrun_timeout_seconds": seconds(dag.dagrun_timeout),
        "doc_md": bool(dag.doc_md and dag.doc_md.strip()),
        "on_failure_callback": callback_names(dag.on_failure_callback),
        "has_cycle": has_cycle(dag),
        "task_ids": sorted(dag.task_ids),
        "tasks": {task.task_id: describe_task(task) for task in dag.tasks},
    }


def report(folder: Path) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(folder), safe_mode=False)
    errors = {}
    for path, error in bag.import_errors.items():
        path = Path(path)
        errors[str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)] = str(error).strip()
    return {
        "dags_folder": str(folder),
        "import_errors": errors,
        "dags": [describe_dag(bag.dags[dag_id], folder) for dag_id in sorted(bag.dags)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the DAG folder's DAGs and import errors as JSON.")
    parser.add_argument("--dags-folder", type=Path, default=None,
                        help="default: AIRFLOW__CORE__DAGS_FOLDER (Airflow's [core] dags_folder)")
    parser.add_argument("--json", type=Path, default=None, help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)
    folder = args.dags_folder or os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    if not folder or not Path(folder).is_dir():
        print(f"check_dags: --dags-folder / AIRFLOW__CORE__DAGS_FOLDER is not a folder: {folder!r}", file=sys.stderr)
        return 2
    result = report(Path(folder).resolve())
    text = json.dumps(result, indent=1, sort_keys=True) + "\n"
    if args.json:
        args.json.write_text(text)
    else:
        sys.stdout.write(text)
    return 1 if result["import_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
