-- The role dbt and BI readers use: read-only on Silver, builds Gold.
CREATE ROLE IF NOT EXISTS ${role}
