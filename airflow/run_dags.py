"""Run DAGs once each, in order, in this one Airflow process (DAG.test: the tasks run here, no scheduler), and write
what became of each run as JSON: a smoke run of the whole orchestration on one machine, and the DAG tests' runner.

    .venv-airflow/bin/python -P airflow/run_dags.py PLAN.json --json RESULT.json

Runs in the Airflow environment (scripts/airflow_env.py: `python3 scripts/airflow_env.py run -- python -P
airflow/run_dags.py ...`) with a migrated database. PLAN is a list of runs, done in its order:

    [{"dag_id": "lakehouse_compaction"},
     {"dag_id": "historical_backfill", "conf": {"start": "2026-01-05", ...}},     # the DAG's params
     {"dag_id": "snowflake_refresh", "env": {"STOCKLAKE_WAREHOUSE_TARGET": "snowflake"}},  # for this run only
     {"dag_id": "gold_dbt", "tasks": ["grant_bi_select"]}]                    # only these tasks of the DAG

"env" is set in this process (so in every task and job it starts) for that run and restored after it; "tasks" runs
only the tasks named (none of their upstream tasks). RESULT:

    [{"dag_id", "run_id", "state", "seconds", "tasks": {<task_id>: <state>}}, ...]

Every run is attempted, whatever became of the previous one; no task is retried (a failure shows at once). Exit 0
when every run succeeded, 1 otherwise (the JSON is written either way), 2 for a bad plan or an unknown DAG. Task logs go to stdout, as `airflow dags test` prints
them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

PLAN_KEYS = {"dag_id", "conf", "env", "tasks"}


def load_plan(path: Path) -> list[dict[str, Any]]:
    plan = json.loads(path.read_text())
    if not isinstance(plan, list) or not plan:
        raise ValueError("the plan must be a non-empty JSON list of runs")
    for index, run in enumerate(plan):
        if not isinstance(run, dict) or not isinstance(run.get("dag_id"), str) or set(run) - PLAN_KEYS:
            raise ValueError(f"run {index}: an object with dag_id and optionally conf, env, tasks; got {run!r}")
    return plan


@contextmanager
def environment(overrides: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update({key: str(value) for key, value in overrides.items()})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_once(dag: Any, run: Mapping[str, Any]) -> dict[str, Any]:
    # A failed task fails the run at once: waiting out its retry delays (minutes) would only hold up the report.
    for task in dag.tasks:
        task.retries = 0
    started = time.monotonic()
    with environment(run.get("env") or {}):
        dag_run = dag.test(run_conf=run.get("conf"))
    return {"dag_id": dag.dag_id, "run_id": dag_run.run_id, "state": str(dag_run.state),
            "seconds": round(time.monotonic() - started, 1),
            "tasks": {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path, help="JSON list of runs: {dag_id, conf?, env?, tasks?}")
    parser.add_argument("--json", type=Path, required=True, help="where to write the runs' results")
    args = parser.parse_args(argv)
    try:
        plan = load_plan(args.plan)
    except (OSError, ValueError) as exc:
        print(f"run_dags: {exc}", file=sys.stderr)
        return 2

    from airflow.utils.cli import get_bagged_dag  # what `airflow dags test` uses to find a DAG

    dags = {}
    for dag_id in dict.fromkeys(run["dag_id"] for run in plan):
        try:
            dags[dag_id] = get_bagged_dag(None, dag_id)
        except Exception as exc:  # Airflow's own exception for a missing or broken DAG
            print(f"run_dags: {exc}", file=sys.stderr)
            return 2
    results = []
    for run in plan:
        dag = dags[run["dag_id"]]
        if run.get("tasks"):
            dag = dag.partial_subset(task_ids=run["tasks"], include_upstream=False)
        results.append(run_once(dag, run))
        print(f"run_dags: {run['dag_id']} {results[-1]['state']} in {results[-1]['seconds']} s", flush=True)
    args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0 if all(result["state"] == "success" for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
