#!/bin/sh
# The minio-init one-shot job of docker/compose.yaml: create the lake bucket, and the lake user (the
# AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY every pipeline container uses) with a policy that allows that one
# bucket and nothing else. The root credentials stay with this job and the server. Safe to run again: every step
# leaves what is already there as it is (the user's secret and the policy are set to the current values).
set -eu

: "${STOCKLAKE_LAKE_S3_ENDPOINT:?STOCKLAKE_LAKE_S3_ENDPOINT must be set (compose sets it)}"
: "${STOCKLAKE_LAKE_BUCKET:?STOCKLAKE_LAKE_BUCKET must be set (compose sets it)}"
: "${MINIO_ROOT_USER:?MINIO_ROOT_USER must be set in docker/.env}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD must be set in docker/.env}"
: "${AWS_ACCESS_KEY_ID:?AWS_ACCESS_KEY_ID must be set in docker/.env}"
: "${AWS_SECRET_ACCESS_KEY:?AWS_SECRET_ACCESS_KEY must be set in docker/.env}"
if [ "$AWS_ACCESS_KEY_ID" = "$MINIO_ROOT_USER" ]; then
  echo "minio-init: AWS_ACCESS_KEY_ID must differ from MINIO_ROOT_USER (the lake user is not the root user)" >&2
  exit 1
fi

alias=lake
bucket="$STOCKLAKE_LAKE_BUCKET"
policy=stocklake-lake-rw
# mc keeps its alias (with the root secret) in a private, throw-away folder.
MC_CONFIG_DIR="$(mktemp -d)"
export MC_CONFIG_DIR
trap 'rm -rf "$MC_CONFIG_DIR"' EXIT

mc alias set "$alias" "$STOCKLAKE_LAKE_S3_ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "$alias/$bucket"

policy_file="$MC_CONFIG_DIR/policy.json"
cat > "$policy_file" <<EOF
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::$bucket", "arn:aws:s3:::$bucket/*"]}
  ]
}
EOF
mc admin policy create "$alias" "$policy" "$policy_file"
mc admin user add "$alias" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
# Attaching a policy the user already has is an error in mc: attach only when it is missing.
if ! mc admin user info "$alias" "$AWS_ACCESS_KEY_ID" --json | grep -q "\"$policy\""; then
  mc admin policy attach "$alias" "$policy" --user "$AWS_ACCESS_KEY_ID"
fi
echo "minio-init: bucket $bucket ready; user $AWS_ACCESS_KEY_ID limited to it by policy $policy"
