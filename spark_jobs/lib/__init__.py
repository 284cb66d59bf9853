"""The library tier of the Spark jobs: what more than one job needs (the session, the pure transforms, tables,
checkpoints, Delta helpers, hours and partitions, the job CLI and logging helpers, metrics).

A job module (spark_jobs/<job>.py, what spark-submit or Airflow starts) imports this library, `conf` and the
contracts, never another job; this library never imports a job (tests/unit/test_layers.py).
"""
