-- SELECT only: no ownership, so the role cannot alter, refresh or drop the Silver tables.
GRANT SELECT ON EXTERNAL TABLE ${table} TO ROLE ${role}
