-- SELECT only, on one Gold mart, for the BI role (Power BI): it cannot see staging views, seeds or Silver.
GRANT SELECT ON TABLE ${table} TO ROLE ${role}
