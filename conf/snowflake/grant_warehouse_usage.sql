GRANT USAGE ON WAREHOUSE ${warehouse} TO ROLE ${role}
