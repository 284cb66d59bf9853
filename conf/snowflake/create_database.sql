-- The database that holds the Silver external tables and the Gold schema dbt builds into.
CREATE DATABASE IF NOT EXISTS ${database}
