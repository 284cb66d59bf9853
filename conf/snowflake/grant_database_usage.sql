GRANT USAGE ON DATABASE ${database} TO ROLE ${role}
