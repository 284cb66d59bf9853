-- What dbt needs to build Gold: use the schema and create tables and views in it (incremental models'
-- temporary tables are covered by CREATE TABLE). The role owns what it creates there.
GRANT USAGE, CREATE TABLE, CREATE VIEW ON SCHEMA ${schema} TO ROLE ${role}
