"""Shared code of the stocklake DAGs (Airflow puts the plugins folder on sys.path, so DAG files import it as
`stocklake_airflow`): environment.py says where tasks run (the checkout, the job environment, the settings and the
warehouse target read through it), jobs.py builds the tasks that call the pipeline's jobs, warehouse.py the
Snowflake tasks, assets.py names the lake's tables, alerts.py posts failures and notices to Slack. It holds no
business logic: that lives in the jobs the tasks run. Imports go one way: environment <- alerts <- jobs, and
environment <- warehouse."""
