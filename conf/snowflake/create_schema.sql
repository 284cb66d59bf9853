-- Used for both the Silver schema (external tables, stage) and the Gold schema (dbt models).
CREATE SCHEMA IF NOT EXISTS ${schema}
