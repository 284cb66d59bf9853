-- USAGE only: the role can see the Silver schema's objects but create nothing in it.
GRANT USAGE ON SCHEMA ${schema} TO ROLE ${role}
