"""The least-privilege lake user on the real MinIO: it can use its bucket and nothing else, and the pipeline runs
on it (producer -> Kafka -> spark-submit stream.py -> Delta: the secured run, tests/integration/secured_stream.py),
counted exactly."""
from __future__ import annotations

import json
import os
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass, field

import boto3
import pytest
from botocore.exceptions import ClientError

from scripts.minio_lake_user import (admin_client, ensure_lake_user, policy_document, policy_name,
                                     remove_lake_user)

pytestmark = pytest.mark.integration


def root_credentials() -> tuple[str, str]:
    return os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]


def s3_client(settings, access_key: str, secret_key: str):
    return boto3.client("s3", endpoint_url=settings.lake.s3_endpoint, region_name=settings.lake.s3_region,
                        aws_access_key_id=access_key, aws_secret_access_key=secret_key)


def denied(call, *args, **kwargs) -> bool:
    try:
        call(*args, **kwargs)
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("AccessDenied", "403")
    return False


def normalized(policy: dict) -> dict:
    """A policy with its action and resource lists sorted (MinIO stores them as sets)."""
    return {**policy, "Statement": [{key: sorted(value) if isinstance(value, list) else value
                                     for key, value in statement.items()} for statement in policy["Statement"]]}


@dataclass(frozen=True)
class LakeUser:
    settings: object = field(repr=False)
    env: dict = field(repr=False)          # the namespace's environment (holds root's credentials)
    access_key: str
    secret_key: str = field(repr=False)    # kept out of pytest's failure output


@pytest.fixture
def lake_user(isolated):
    """A fresh lake user with a random secret, limited to the namespace's bucket; removed afterwards."""
    settings, env = isolated
    access_key, secret_key = f"lake-{uuid.uuid4().hex[:12]}", secrets.token_urlsafe(30)
    root = root_credentials()
    try:
        first = ensure_lake_user(settings, access_key, secret_key, *root)
        assert ensure_lake_user(settings, access_key, secret_key, *root) == first  # a second run is harmless
        yield LakeUser(settings, env, access_key, secret_key)
    finally:
        remove_lake_user(settings, access_key, *root)
        admin = admin_client(settings, *root)
        assert access_key not in json.loads(admin.user_list() or "{}")
        assert policy_name(settings.lake.bucket) not in json.loads(admin.policy_list())


def test_policy_confines_the_lake_user_to_its_bucket(lake_user):
    settings, access_key, secret_key = lake_user.settings, lake_user.access_key, lake_user.secret_key
    bucket = settings.lake.bucket
    admin = admin_client(settings, *root_credentials())
    assert json.loads(admin.user_info(access_key))["policyName"] == policy_name(bucket)
    assert normalized(json.loads(admin.policy_info(policy_name(bucket)))) == normalized(policy_document(bucket))

    lake = s3_client(settings, access_key, secret_key)
    root = s3_client(settings, *root_credentials())

    # Its own bucket: everything Spark, Delta and delta-rs do.
    lake.head_bucket(Bucket=bucket)
    lake.get_bucket_location(Bucket=bucket)
    lake.put_object(Bucket=bucket, Key="bronze/probe/a.txt", Body=b"hello")
    assert lake.get_object(Bucket=bucket, Key="bronze/probe/a.txt")["Body"].read() == b"hello"
    listed = lake.list_objects_v2(Bucket=bucket, Prefix="bronze/")
    assert [item["Key"] for item in listed["Contents"]] == ["bronze/probe/a.txt"]
    lake.copy_object(Bucket=bucket, Key="bronze/probe/b.txt", CopySource={"Bucket": bucket,
                                                                         "Key": "bronze/probe/a.txt"})
    upload = lake.create_multipart_upload(Bucket=bucket, Key="bronze/probe/big.bin")["UploadId"]
    lake.upload_part(Bucket=bucket, Key="bronze/probe/big.bin", UploadId=upload, PartNumber=1, Body=b"x" * 1024)
    assert len(lake.list_parts(Bucket=bucket, Key="bronze/probe/big.bin", UploadId=upload)["Parts"]) == 1
    assert [u["UploadId"] for u in lake.list_multipart_uploads(Bucket=bucket).get("Uploads", [])] == [upload]
    lake.abort_multipart_upload(Bucket=bucket, Key="bronze/probe/big.bin", UploadId=upload)
    lake.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "bronze/probe/b.txt"}]})
    lake.delete_object(Bucket=bucket, Key="bronze/probe/a.txt")
    assert lake.list_objects_v2(Bucket=bucket).get("KeyCount") == 0

    # Another existing bucket: no listing, reading, writing or deleting.
    other = f"{bucket[:55]}-other"
    root.create_bucket(Bucket=other)
    try:
        root.put_object(Bucket=other, Key="secret.txt", Body=b"not for the lake user")
        assert denied(lake.list_objects_v2, Bucket=other)
        assert denied(lake.head_bucket, Bucket=other)
        assert denied(lake.get_object, Bucket=other, Key="secret.txt")
        assert denied(lake.put_object, Bucket=other, Key="planted.txt", Body=b"x")
        assert denied(lake.delete_object, Bucket=other, Key="secret.txt")
        assert [item["Key"] for item in root.list_objects_v2(Bucket=other)["Contents"]] == ["secret.txt"]
    finally:
        for item in root.list_objects_v2(Bucket=other).get("Contents", []):
            root.delete_object(Bucket=other, Key=item["Key"])
        root.delete_bucket(Bucket=other)

    # No bucket administration, no other bucket in the listing, no admin API.
    assert denied(lake.create_bucket, Bucket=f"{bucket[:55]}-new")
    assert denied(lake.delete_bucket, Bucket=bucket)
    assert [b["Name"] for b in lake.list_buckets()["Buckets"]] == [bucket]  # MinIO lists only what it may use
    assert denied(lake.put_bucket_policy, Bucket=bucket, Policy=json.dumps(policy_document(bucket)))
    with pytest.raises(Exception, match="403"):
        admin_client(settings, access_key, secret_key).user_list()


def test_pipeline_runs_as_the_lake_user(secured_stream):
    """The secured run (tests/integration/secured_stream.py) wrote with the lake user's keys only."""
    from deltalake import DeltaTable

    from spark_jobs.lib.delta import storage_options

    run = secured_stream
    settings, access_key, secret_key = run.settings, run.lake_access_key, run.env["AWS_SECRET_ACCESS_KEY"]
    assert access_key == run.env["AWS_ACCESS_KEY_ID"] != root_credentials()[0]
    assert run.returncode == 0, run.log.read_text(errors="replace")[-5000:]
    records = run.records

    # Read back with the lake user too (delta-rs): it can read what it wrote.
    options = {**storage_options(settings), "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}

    def table(layer: str):
        return DeltaTable(f"s3://{settings.lake.bucket}/{layer}/trades", storage_options=options)

    bronze = table("bronze").to_pyarrow_table(columns=["partition", "offset"])
    assert bronze.num_rows == len(records) == 1000
    assert len(set(zip(bronze.column("partition").to_pylist(), bronze.column("offset").to_pylist()))) == 1000
    silver_ids = table("silver").to_pyarrow_table(columns=["event_id"]).column("event_id").to_pylist()
    valid = {r.event_id for r in records if r.kind != "malformed"}
    assert len(silver_ids) == len(valid) and set(silver_ids) == valid
    reasons = Counter(table("quarantine").to_pyarrow_table(columns=["reason"]).column("reason").to_pylist())
    assert reasons == Counter(r.expected_reason for r in records if r.kind == "malformed")
    assert Counter(r.kind for r in records)["duplicate"] == 1000 - len(silver_ids) - sum(reasons.values())

    # The checkpoints are in the lake bucket too, and the job never wrote the secret to its output.
    lake = s3_client(settings, access_key, secret_key)
    assert lake.list_objects_v2(Bucket=settings.lake.bucket, Prefix="_checkpoints/")["KeyCount"] > 0
    assert secret_key not in run.log.read_text(errors="replace")
