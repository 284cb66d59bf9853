GRANT USAGE ON STAGE ${stage} TO ROLE ${role}
