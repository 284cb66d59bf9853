"""scripts/minio_lake_user.py without a server: the policy document, bucket validation, refusals, the flow."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conf.settings import load_settings
from scripts import minio_lake_user as lu
from scripts.minio_lake_user import LakeUserError, ensure_lake_user, main, policy_document, validate_bucket

REPO_SCRIPT = lu.REPO / "scripts" / "minio_lake_user.py"
ROOT = ("rootuser-x1", "root-secret-0123456789")
LAKE = ("lake-writer", "lake-secret-0123456789")


def test_policy_document_is_exactly_the_pipelines_actions_on_exactly_the_bucket():
    assert policy_document("lakehouse") == {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow",
             "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
             "Resource": ["arn:aws:s3:::lakehouse"]},
            {"Effect": "Allow",
             "Action": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject",
                        "s3:ListMultipartUploadParts", "s3:PutObject"],
             "Resource": ["arn:aws:s3:::lakehouse/*"]},
        ],
    }
    assert lu.policy_name("lakehouse") == "stocklake-lake-lakehouse"
    text = json.dumps(policy_document("prod-lake.eu"))
    assert "*\"" not in text.replace("prod-lake.eu/*\"", "")  # no wildcard but the bucket's own objects
    assert "s3:*" not in text and "CreateBucket" not in text and "DeleteBucket" not in text


@pytest.mark.parametrize("bucket", [
    "", "ab", "a" * 64, "Lakehouse", "lake_house", "-lake", "lake-", ".lake", "lake..house", "lake.-house",
    "lake-.house", "192.168.1.1", "xn--lake", "sthree-lake", "lake-s3alias", "lake--ol-s3", "lake.mrap",
    "*", "lake/*", "lake\"", 'lake"],"Resource":["arn:aws:s3:::*', "lake house", "lake\n",
])
def test_bucket_names_breaking_s3_rules_never_reach_the_policy(bucket):
    with pytest.raises(LakeUserError, match="breaks S3's rules"):
        policy_document(bucket)


@pytest.mark.parametrize("bucket", ["lakehouse", "abc", "a" * 63, "prod-lake.eu-1", "test-1a2b3c4d-x", "1lake"])
def test_valid_bucket_names_pass(bucket):
    assert validate_bucket(bucket) == bucket


def cli(environ: dict[str, str], *argv: str, capsys) -> tuple[int, str, str]:
    code = main(list(argv), environ)
    out, err = capsys.readouterr()
    return code, out, err


def forbid_network(monkeypatch):
    def no_admin(*args, **kwargs):
        raise AssertionError("the CLI reached the server before refusing")
    monkeypatch.setattr(lu, "admin_client", no_admin)


@pytest.mark.parametrize("environ, variable", [
    ({"MINIO_ROOT_USER": ROOT[0], "MINIO_ROOT_PASSWORD": ROOT[1],
      "LAKE_ACCESS_KEY_ID": LAKE[0], "LAKE_SECRET_ACCESS_KEY": "minioadmin"}, "LAKE_SECRET_ACCESS_KEY"),
    ({"MINIO_ROOT_USER": ROOT[0], "MINIO_ROOT_PASSWORD": ROOT[1],
      "LAKE_ACCESS_KEY_ID": "minioadmin", "LAKE_SECRET_ACCESS_KEY": LAKE[1]}, "LAKE_ACCESS_KEY_ID"),
    ({"MINIO_ROOT_USER": ROOT[0], "MINIO_ROOT_PASSWORD": ROOT[1],
      "LAKE_ACCESS_KEY_ID": LAKE[0], "LAKE_SECRET_ACCESS_KEY": "s3cr3t!"}, "LAKE_SECRET_ACCESS_KEY"),
    ({"MINIO_ROOT_USER": "minioadmin", "MINIO_ROOT_PASSWORD": "minioadmin",  # pragma: allowlist secret
      "LAKE_ACCESS_KEY_ID": LAKE[0], "LAKE_SECRET_ACCESS_KEY": LAKE[1]}, "MINIO_ROOT_USER"),
    ({"MINIO_ROOT_USER": ROOT[0], "MINIO_ROOT_PASSWORD": "minioadmin",
      "LAKE_ACCESS_KEY_ID": LAKE[0], "LAKE_SECRET_ACCESS_KEY": LAKE[1]}, "MINIO_ROOT_PASSWORD"),
    ({"AWS_ACCESS_KEY_ID": ROOT[0], "AWS_SECRET_ACCESS_KEY": "short12",
      "LAKE_ACCESS_KEY_ID": LAKE[0], "LAKE_SECRET_ACCESS_KEY": LAKE[1]}, "AWS_SECRET_ACCESS_KEY"),
    ({"AWS_ACCESS_KEY_ID": ROOT[0], "AWS_SECRET_ACCESS_KEY": ROOT[1],
      "LAKE_ACCESS_KEY_ID": LAKE[0]}, "LAKE_SECRET_ACCESS_KEY"),
    ({"LAKE_ACCESS_KEY_ID": LAKE[0], "LAKE_SECRET_ACCESS_KEY": LAKE[1]}, "AWS_ACCESS_KEY_ID"),
    ({"AWS_ACCESS_KEY_ID": ROOT[0], "AWS_SECRET_ACCESS_KEY": ROOT[1],
      "LAKE_ACCESS_KEY_ID": LAKE[0], "LAKE_SECRET_ACCESS_KEY": ROOT[1]}, "LAKE_SECRET_ACCESS_KEY"),
])
def test_cli_refuses_default_short_missing_and_reused_secrets_naming_the_variable(environ, variable, capsys,
                                                                                 monkeypatch):
    forbid_network(monkeypatch)
    code, out, err = cli(environ, capsys=capsys)
    assert code == 1 and out == ""
    assert err.startswith(f"{lu.PROG}: error: {variable} ") and err.count("\n") == 1, err
    for name, value in environ.items():
        if "SECRET" in name or "PASSWORD" in name:
            assert value not in err


def test_cli_refuses_a_bad_bucket_before_anything_else(capsys, monkeypatch):
    forbid_network(monkeypatch)
    environ = {"AWS_ACCESS_KEY_ID": ROOT[0], "AWS_SECRET_ACCESS_KEY": ROOT[1],
               "LAKE_ACCESS_KEY_ID": LAKE[0], "LAKE_SECRET_ACCESS_KEY": LAKE[1]}
    code, _, err = cli(environ, "--bucket", "Bad_Bucket", capsys=capsys)
    assert code == 1 and err.startswith("minio_lake_user: error: bucket name 'Bad_Bucket' breaks S3's rules")
    code, _, err = cli({**environ, "STOCKLAKE_LAKE_BUCKET": "x"}, capsys=capsys)
    assert code == 1 and "bucket name 'x'" in err


def test_the_script_runs_standalone_and_fails_with_one_line():
    result = subprocess.run([sys.executable, str(REPO_SCRIPT)], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "LAKE_ACCESS_KEY_ID": LAKE[0],
                                 "LAKE_SECRET_ACCESS_KEY": "minioadmin", "MINIO_ROOT_USER": ROOT[0],
                                 "MINIO_ROOT_PASSWORD": ROOT[1]})
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == ("minio_lake_user: error: LAKE_SECRET_ACCESS_KEY is MinIO's default; "
                             "use non-default credentials\n")


class FakeAdmin:
    """The MinioAdmin calls ensure_lake_user makes, on an in-memory IAM."""

    def __init__(self):
        self.policies: dict[str, dict] = {}
        self.users: dict[str, dict] = {}
        self.calls: list[str] = []

    def policy_add(self, name, policy=None):
        self.calls.append(f"policy_add {name}")
        self.policies[name] = policy

    def user_add(self, access_key, secret_key):
        self.calls.append(f"user_add {access_key}")
        self.users.setdefault(access_key, {"policies": []})["secret"] = secret_key

    def user_info(self, access_key):
        return json.dumps({"policyName": ",".join(self.users[access_key]["policies"]), "status": "enabled"})

    def attach_policy(self, policies, user=None):
        self.calls.append(f"attach {policies}")
        self.users[user]["policies"] += policies

    def detach_policy(self, policies, user=None):
        self.calls.append(f"detach {policies}")
        self.users[user]["policies"] = [p for p in self.users[user]["policies"] if p not in policies]


def test_ensure_lake_user_is_idempotent_and_leaves_only_the_lake_policy(monkeypatch):
    fake = FakeAdmin()
    monkeypatch.setattr(lu, "admin_client", lambda settings, key, secret: fake)
    settings = load_settings({"STOCKLAKE_LAKE_BUCKET": "prod-lake"})
    fake.users[LAKE[0]] = {"policies": ["readwrite"]}  # a user someone made by hand, too powerful

    first = ensure_lake_user(settings, *LAKE, *ROOT)
    second = ensure_lake_user(settings, *LAKE, *ROOT)
    assert first == second == {"user": LAKE[0], "policy": "stocklake-lake-prod-lake", "bucket": "prod-lake",
                               "endpoint": settings.lake.s3_endpoint}
    assert fake.policies == {"stocklake-lake-prod-lake": policy_document("prod-lake")}
    assert fake.users[LAKE[0]] == {"policies": ["stocklake-lake-prod-lake"], "secret": LAKE[1]}
    assert fake.calls == [
        "policy_add stocklake-lake-prod-lake", "user_add lake-writer", "detach ['readwrite']",
        "attach ['stocklake-lake-prod-lake']",
        "policy_add stocklake-lake-prod-lake", "user_add lake-writer",  # second run: nothing to attach
    ]


def test_ensure_lake_user_validates_before_connecting(monkeypatch):
    forbid_network(monkeypatch)
    settings = load_settings({})
    with pytest.raises(LakeUserError, match="lake secret key must be at least 8"):
        ensure_lake_user(settings, LAKE[0], "short", *ROOT)
    with pytest.raises(LakeUserError, match="must differ from the root"):
        ensure_lake_user(settings, ROOT[0], LAKE[1], *ROOT)
    with pytest.raises(LakeUserError, match="breaks S3's rules"):
        ensure_lake_user(settings, *LAKE, *ROOT, bucket="UPPER")


def test_admin_errors_become_one_line_without_the_secret(monkeypatch):
    from minio.error import MinioAdminException

    class Failing(FakeAdmin):
        def user_add(self, access_key, secret_key):
            raise MinioAdminException("403", json.dumps({"Code": "AccessDenied", "Message": "Access Denied."}))

    monkeypatch.setattr(lu, "admin_client", lambda settings, key, secret: Failing())
    with pytest.raises(LakeUserError) as exc:
        ensure_lake_user(load_settings({}), *LAKE, *ROOT)
    assert str(exc.value) == "create user failed: AccessDenied: Access Denied."
