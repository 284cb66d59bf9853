-- IF NOT EXISTS, never OR REPLACE: replacing an integration generates a new external ID and breaks the
-- trust policy already set on the AWS IAM role. Change settings with ALTER STORAGE INTEGRATION ... SET.
CREATE STORAGE INTEGRATION IF NOT EXISTS ${integration}
  TYPE = EXTERNAL_STAGE
  STORAGE_PROVIDER = 'S3'
  ENABLED = TRUE
  STORAGE_AWS_ROLE_ARN = ${role_arn}
  STORAGE_ALLOWED_LOCATIONS = (${allowed_locations})
