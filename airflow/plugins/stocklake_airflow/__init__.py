"""Shared code of the stocklake DAGs (Airflow puts the plugins folder on sys.path, so DAG files import it as
`stocklake_airflow`): jobs.py builds the tasks that call the pipeline's jobs, assets.py names the lake's tables,
alerts.py posts failures to Slack. It holds no business logic: that lives in the jobs the tasks run."""
