#!/usr/bin/env python3
"""A least-privilege MinIO user for the pipeline: read and write the lake bucket, nothing else.

  python scripts/minio_lake_user.py [--bucket NAME]

Creates (or updates; running it again is harmless) through MinIO's admin API:
  - the canned policy `stocklake-lake-<bucket>`: the S3 actions Spark's S3A client, Delta and delta-rs need
    (list, read, write and delete objects, multipart uploads) on the bucket and its objects only; no bucket
    creation or deletion, no other bucket, no admin API;
  - the user LAKE_ACCESS_KEY_ID with the secret LAKE_SECRET_ACCESS_KEY, with that policy as its only policy.
The jobs then run with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY set to the lake user's instead of root's.

The bucket is lake.bucket from conf/settings.py unless --bucket names another; the endpoint is lake.s3_endpoint
(https:// means TLS). Root credentials come from MINIO_ROOT_USER / MINIO_ROOT_PASSWORD, else from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Secrets come only from the environment and are never printed or
logged. Exit codes: 0 ok, 1 error (one line `minio_lake_user: error: ...` on stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]

from conf.settings import ConfigError, Settings, load_settings

PROG = "minio_lake_user"
POLICY_PREFIX = "stocklake-lake-"

ENV_ROOT_USER, ENV_ROOT_PASSWORD = "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"  # pragma: allowlist secret
ENV_AWS_KEY, ENV_AWS_SECRET = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"  # pragma: allowlist secret
ENV_LAKE_KEY, ENV_LAKE_SECRET = "LAKE_ACCESS_KEY_ID", "LAKE_SECRET_ACCESS_KEY"  # pragma: allowlist secret

# MinIO's out-of-the-box root credentials: never acceptable, for root or for the lake user.
MINIO_DEFAULT = "minioadmin"
SECRET_MIN = 8      # MinIO refuses shorter secret keys
# Access keys: MinIO wants at least 3 characters and no '=' or ','; kept to a plain, printable set.
ACCESS_KEY = re.compile(r"[A-Za-z0-9_.@+-]{3,128}")

# Bucket-level and object-level actions, each on its own resource.
BUCKET_ACTIONS = ("s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads")
OBJECT_ACTIONS = ("s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:ListMultipartUploadParts",
                  "s3:PutObject")

# S3 bucket naming rules (AWS general purpose buckets; MinIO accepts a superset).
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
IP_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


class LakeUserError(Exception):
    """A refusal or failure, with a one-line message that never contains a secret."""


def validate_bucket(bucket: str) -> str:
    if not isinstance(bucket, str) or not BUCKET.fullmatch(bucket):
        raise LakeUserError(f"bucket name {bucket!r} breaks S3's rules (3-63 characters: lower-case letters, "
                            "digits, '.' and '-', starting and ending with a letter or digit)")
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        raise LakeUserError(f"bucket name {bucket!r} breaks S3's rules (no '..', '.-' or '-.')")
    if IP_ADDRESS.fullmatch(bucket):
        raise LakeUserError(f"bucket name {bucket!r} breaks S3's rules (must not look like an IP address)")
    if bucket.startswith(RESERVED_PREFIXES) or bucket.endswith(RESERVED_SUFFIXES):
        raise LakeUserError(f"bucket name {bucket!r} breaks S3's rules (reserved prefix or suffix)")
    return bucket


def _set_and_not_default(name: str, value: str | None) -> str:
    """The checks every credential gets; the message names the variable, never the value."""
    if not value:
        raise LakeUserError(f"{name} is not set")
    if value == MINIO_DEFAULT:
        raise LakeUserError(f"{name} is MinIO's default; use non-default credentials")
    return value


def check_access_key(name: str, value: str | None) -> str:
    value = _set_and_not_default(name, value)
    if not ACCESS_KEY.fullmatch(value):
        raise LakeUserError(f"{name} must be 3-128 characters of letters, digits and _ . @ + -")
    return value


def check_secret(name: str, value: str | None) -> str:
    """Refuse a missing, short or default secret; the message names the variable, never the value."""
    value = _set_and_not_default(name, value)
    if len(value) < SECRET_MIN:
        raise LakeUserError(f"{name} must be at least {SECRET_MIN} characters")
    return value


def policy_name(bucket: str) -> str:
    return POLICY_PREFIX + validate_bucket(bucket)


def policy_document(bucket: str) -> dict:
    """The canned policy: exactly the pipeline's S3 actions, on exactly the bucket and its objects."""
    bucket = validate_bucket(bucket)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": list(BUCKET_ACTIONS), "Resource": [f"arn:aws:s3:::{bucket}"]},
            {"Effect": "Allow", "Action": list(OBJECT_ACTIONS), "Resource": [f"arn:aws:s3:::{bucket}/*"]},
        ],
    }


def admin_client(settings: Settings, root_access_key: str, root_secret_key: str):
    from minio import MinioAdmin
    from minio.credentials import StaticProvider

    endpoint = urlparse(settings.lake.s3_endpoint)
    if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
        raise LakeUserError(f"lake.s3_endpoint {settings.lake.s3_endpoint!r} is not an http(s) URL")
    return MinioAdmin(endpoint=endpoint.netloc, credentials=StaticProvider(root_access_key, root_secret_key),
                      region=settings.lake.s3_region, secure=endpoint.scheme == "https")


def _admin_error(what: str, exc: Exception) -> LakeUserError:
    """One line from a MinIO admin error: its code and message (MinIO never echoes a secret in them)."""
    from minio.error import MinioAdminException

    if isinstance(exc, MinioAdminException):
        try:
            body = json.loads(exc._body)  # noqa: SLF001 (the library keeps status and body private)
            detail = f"{body.get('Code', '')}: {body.get('Message', '')}"
        except (TypeError, ValueError, AttributeError):
            detail = f"HTTP {getattr(exc, '_code', '?')}"
        return LakeUserError(f"{what} failed: {detail}")
    return LakeUserError(f"{what} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")


def _attached_policies(admin, access_key: str) -> list[str]:
    info = json.loads(admin.user_info(access_key) or "{}")
    return [name for name in (info.get("policyName") or "").split(",") if name]


def ensure_lake_user(settings: Settings, access_key: str, secret_key: str, root_access_key: str,
                     root_secret_key: str, *, bucket: str | None = None) -> dict:
    """Create or update the lake policy and user, and leave that policy as the user's only policy.

    Idempotent: the policy document is rewritten, the user's secret (re)set, and other policies detached.
    Returns {"user", "policy", "bucket", "endpoint"}; raises LakeUserError (never naming a secret).
    """
    bucket = validate_bucket(bucket if bucket is not None else settings.lake.bucket)
    check_access_key("root access key", root_access_key)
    check_secret("root secret key", root_secret_key)
    check_access_key("lake access key", access_key)
    check_secret("lake secret key", secret_key)
    if access_key == root_access_key:
        raise LakeUserError("the lake user's access key must differ from the root user's")
    if secret_key == root_secret_key:
        raise LakeUserError("the lake user's secret key must differ from the root user's")

    name = policy_name(bucket)
    admin = admin_client(settings, root_access_key, root_secret_key)
    step = "create policy"
    try:
        admin.policy_add(name, policy=policy_document(bucket))
        step = "create user"
        admin.user_add(access_key, secret_key)
        step = "attach policy"
        attached = _attached_policies(admin, access_key)
        others = [p for p in attached if p != name]
        if others:
            admin.detach_policy(others, user=access_key)
        if name not in attached:
            admin.attach_policy([name], user=access_key)
        if _attached_policies(admin, access_key) != [name]:
            raise LakeUserError(f"user {access_key} does not have exactly the policy {name}")
    except LakeUserError:
        raise
    except Exception as exc:  # urllib3 connection errors, MinioAdminException
        raise _admin_error(step, exc) from None
    return {"user": access_key, "policy": name, "bucket": bucket, "endpoint": settings.lake.s3_endpoint}


def remove_lake_user(settings: Settings, access_key: str, root_access_key: str, root_secret_key: str, *,
                     bucket: str | None = None, remove_policy: bool = True) -> None:
    """Delete the user and (unless told otherwise) the bucket's canned policy; a missing one is fine."""
    from minio.error import MinioAdminException

    admin = admin_client(settings, root_access_key, root_secret_key)
    try:
        admin.user_remove(access_key)
    except MinioAdminException as exc:
        if "NoSuchUser" not in str(exc):
            raise _admin_error("remove user", exc) from None
    if remove_policy:
        try:
            admin.policy_remove(policy_name(bucket if bucket is not None else settings.lake.bucket))
        except MinioAdminException as exc:
            if "NoSuchPolicy" not in str(exc):
                raise _admin_error("remove policy", exc) from None


def root_credentials(environ: Mapping[str, str]) -> tuple[str, str]:
    """MINIO_ROOT_USER / MINIO_ROOT_PASSWORD, else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, checked."""
    if environ.get(ENV_ROOT_USER) or environ.get(ENV_ROOT_PASSWORD):
        key_name, secret_name = ENV_ROOT_USER, ENV_ROOT_PASSWORD
    else:
        key_name, secret_name = ENV_AWS_KEY, ENV_AWS_SECRET
    return (check_access_key(key_name, environ.get(key_name)),
            check_secret(secret_name, environ.get(secret_name)))


def lake_credentials(environ: Mapping[str, str]) -> tuple[str, str]:
    return (check_access_key(ENV_LAKE_KEY, environ.get(ENV_LAKE_KEY)),
            check_secret(ENV_LAKE_SECRET, environ.get(ENV_LAKE_SECRET)))


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bucket", help="the lake bucket (default: lake.bucket from the settings)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    try:
        settings = load_settings(dict(environ))
        bucket = validate_bucket(args.bucket if args.bucket is not None else settings.lake.bucket)
        root_key, root_secret = root_credentials(environ)
        lake_key, lake_secret = lake_credentials(environ)
        if lake_key == root_key:
            raise LakeUserError(f"{ENV_LAKE_KEY} must differ from the root user")
        if lake_secret == root_secret:
            raise LakeUserError(f"{ENV_LAKE_SECRET} must differ from the root password")
        result = ensure_lake_user(settings, lake_key, lake_secret, root_key, root_secret, bucket=bucket)
    except (LakeUserError, ConfigError) as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(f"{PROG}: user {result['user']} has only policy {result['policy']} "
          f"(bucket {result['bucket']} at {result['endpoint']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
