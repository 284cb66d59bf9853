"""Statements on Snowflake through Airflow's Snowflake provider: the external-table refresh and the BI grants.

    refresh_warehouse_silver()            # ALTER EXTERNAL TABLE ... REFRESH per Silver table (the change index first)
    grant_bi_select()                     # GRANT SELECT on each Gold mart to SNOWFLAKE_BI_ROLE, after a dbt build

The SQL is rendered by the pipeline (`scripts/snowflake_setup.py render --part P --json`, run in the job environment),
where every name is validated and quoted and the marts are listed; the provider's SnowflakeHook runs it on the
`snowflake_default` connection (built from the SNOWFLAKE_* environment by scripts/airflow_env.py, or any connection
of that id Airflow can read), logging each statement and Snowflake's query ids. When `warehouse.target` is `local`
(DuckDB) there is nothing to run: the task is skipped, and the tasks after it still run (their trigger rule is
none_failed).
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import task

from stocklake_airflow.environment import JOB_PYTHON, REPO, run_job, warehouse_target

log = logging.getLogger(__name__)

SNOWFLAKE_CONN_ID = "snowflake_default"
RENDER_TIMEOUT_SECONDS = 120


def rendered_statements(part: str) -> list[dict[str, str]]:
    """[{name, sql}, ...] of one part of scripts/snowflake_setup.py, rendered by the job environment (which prints
    one line naming a bad setting, never a secret, when it cannot)."""
    output = run_job([JOB_PYTHON, str(REPO / "scripts" / "snowflake_setup.py"), "render", "--part", part, "--json"],
                     RENDER_TIMEOUT_SECONDS)
    return json.loads(output.strip().splitlines()[-1])


def run_on_snowflake(part: str) -> list[str]:
    """Run one part's statements on Snowflake in order (skipped on the local warehouse); Snowflake's query ids."""
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook
    from airflow.sdk.exceptions import AirflowSkipException

    if warehouse_target() != "snowflake":
        raise AirflowSkipException("warehouse.target is local: nothing to run on Snowflake")
    statements = rendered_statements(part)
    if not statements:
        raise AirflowSkipException(f"no statement to run for {part} (bi_grants: SNOWFLAKE_BI_ROLE is unset)")
    hook = SnowflakeHook(snowflake_conn_id=SNOWFLAKE_CONN_ID)
    log.info("Snowflake: %s, %d statement(s): %s", part, len(statements), ", ".join(s["name"] for s in statements))
    hook.run([s["sql"] for s in statements])
    log.info("Snowflake query ids: %s", ", ".join(hook.query_ids))
    return list(hook.query_ids)


def warehouse_statements(task_id: str, part: str, *, timeout: timedelta, **kwargs: Any):
    """A task running one part of the Snowflake SQL through the provider."""
    @task(task_id=task_id, execution_timeout=timeout, **kwargs)
    def statements_on_snowflake() -> list[str]:
        return run_on_snowflake(part)

    return statements_on_snowflake()


def refresh_warehouse_silver(task_id: str = "refresh_warehouse_silver", *,
                             timeout: timedelta = timedelta(minutes=20), **kwargs: Any):
    """The external tables over Silver and its change index see new Delta commits only once refreshed."""
    return warehouse_statements(task_id, "refresh", timeout=timeout, **kwargs)


def grant_bi_select(task_id: str = "grant_bi_select", **kwargs: Any):
    """SELECT on each Gold mart for the BI role: a mart dbt created since the last grant gets one."""
    return warehouse_statements(task_id, "bi_grants", timeout=timedelta(minutes=10), **kwargs)
