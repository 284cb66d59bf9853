-- A Delta table read through its transaction log. Delta external tables cannot refresh automatically, and
-- Snowflake requires REFRESH_ON_CREATE = FALSE for them: refresh_external_table.sql keeps them current.
CREATE EXTERNAL TABLE IF NOT EXISTS ${table}
  LOCATION = @${stage}/${path}
  REFRESH_ON_CREATE = FALSE
  AUTO_REFRESH = FALSE
  FILE_FORMAT = (TYPE = PARQUET)
  TABLE_FORMAT = DELTA
