"""`sm bucket create`: a new bucket gets every safe default; an existing one of yours is
reported (its missing safe settings filled in); someone else's is refused."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.support.s3_wire import wire_proxy

ALL_BLOCKED = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
               "RestrictPublicBuckets": True}


def new_name() -> str:
    return f"sm-create-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def endpoint_args(moto_endpoint: str) -> list[str]:
    return ["--endpoint-url", moto_endpoint, "--allow-insecure-endpoint"]


def encryption_default(s3_client: Any, bucket: str) -> dict[str, Any]:
    config = s3_client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    return config["Rules"][0]["ApplyServerSideEncryptionByDefault"]


def test_create_applies_every_safe_default(cli, s3_client, endpoint_args) -> None:
    bucket = new_name()
    result = cli("--json", "bucket", "create", f"s3://{bucket}/", *endpoint_args)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["created"] is True
    assert report["url"] == f"s3://{bucket}/"
    block = s3_client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == ALL_BLOCKED
    assert encryption_default(s3_client, bucket) == {"SSEAlgorithm": "AES256"}
    assert s3_client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    ownership = s3_client.get_bucket_ownership_controls(Bucket=bucket)
    assert ownership["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["public_access"] == statuses["encryption"] == statuses["versioning"] == "pass"
    assert "object_lock" not in statuses


def test_create_with_object_lock_sets_default_retention(cli, s3_client, endpoint_args) -> None:
    bucket = new_name()
    result = cli("bucket", "create", f"s3://{bucket}/", "--object-lock", "--retention-days",
                 "30", "--retention-mode", "compliance", *endpoint_args)
    assert result.exit_code == 0, result.stderr
    lock = s3_client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    retention = lock["Rule"]["DefaultRetention"]
    assert (retention["Mode"], retention["Days"]) == ("COMPLIANCE", 30)
    assert s3_client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert "object lock with default retention compliance 30 days" in result.stderr


def test_create_with_kms_key_uses_sse_kms(cli, s3_client, endpoint_args) -> None:
    bucket = new_name()
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    result = cli("bucket", "create", f"s3://{bucket}/", "--kms-key-id", key, *endpoint_args)
    assert result.exit_code == 0, result.stderr
    assert encryption_default(s3_client, bucket) == {"SSEAlgorithm": "aws:kms",
                                                     "KMSMasterKeyID": key}


def test_running_it_again_reports_the_bucket_and_succeeds(cli, s3_client, endpoint_args) -> None:
    bucket = new_name()
    assert cli("bucket", "create", f"s3://{bucket}/", *endpoint_args).exit_code == 0
    again = cli("--json", "bucket", "create", f"s3://{bucket}/", *endpoint_args)
    assert again.exit_code == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["created"] is False
    assert report["applied"] == []
    assert any("already exists" in note for note in report["notes"])


def test_an_existing_bare_bucket_gets_its_missing_safe_settings(cli, s3_client, s3_bucket,
                                                                endpoint_args) -> None:
    result = cli("--json", "bucket", "create", f"s3://{s3_bucket}/", *endpoint_args)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["created"] is False
    block = s3_client.get_public_access_block(Bucket=s3_bucket)["PublicAccessBlockConfiguration"]
    assert block == ALL_BLOCKED
    assert s3_client.get_bucket_versioning(Bucket=s3_bucket)["Status"] == "Enabled"


def test_object_lock_is_not_forced_onto_an_existing_bucket(cli, s3_bucket, endpoint_args) -> None:
    result = cli("bucket", "create", f"s3://{s3_bucket}/", "--object-lock", "--retention-days",
                 "7", *endpoint_args)
    assert result.exit_code == 1
    assert f"Error: bucket {s3_bucket} exists without object lock" in result.stderr
    assert "Try: sm bucket create s3://NEW-BUCKET/ --object-lock --retention-days 7" in (
        result.stderr)


def test_a_bucket_owned_by_another_account_is_refused(cli, s3_bucket, moto_endpoint) -> None:
    proxy = wire_proxy(moto_endpoint)
    result = cli("bucket", "create", f"s3://{s3_bucket}/", "--endpoint-url", proxy.url,
                 "--allow-insecure-endpoint", "--expected-owner", "210987654321")
    assert result.exit_code == 1
    assert f"Error: bucket {s3_bucket} exists but is not yours" in result.stderr
    assert not proxy.seen(s3_bucket, "PUT")  # no setting was touched


def test_retention_days_without_object_lock_is_a_usage_error(cli, endpoint_args) -> None:
    result = cli("bucket", "create", f"s3://{new_name()}/", "--retention-days", "7",
                 *endpoint_args)
    assert result.exit_code == 2
    assert "needs --object-lock" in result.stderr


def test_missing_credentials_are_one_line(cli, endpoint_args, monkeypatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    result = cli("bucket", "create", f"s3://{new_name()}/", "--profile", "no-such-profile",
                 *endpoint_args)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "Error: bucket setup for s3://" in result.stderr
    assert "ProfileNotFound" in result.stderr
    assert "Try: give sm AWS credentials" in result.stderr


def test_the_next_hint_keeps_the_endpoint_and_works_as_shown(cli, s3_client,
                                                             endpoint_args) -> None:
    import shlex

    bucket = new_name()
    result = cli("bucket", "create", f"s3://{bucket}/", *endpoint_args)
    assert result.exit_code == 0, result.stderr
    [hint] = [line for line in result.stderr.splitlines() if line.startswith("Next: ")]
    connect = hint.split("   then   ", 1)[1]
    assert connect == (f"sm connect s3://{bucket}/ --project ID --endpoint-url"
                       f" {endpoint_args[1]} --allow-insecure-endpoint")
    argv = shlex.split(connect)[1:]
    connected = cli(*[("7" if word == "ID" else word) for word in argv])
    assert connected.exit_code == 0, connected.stderr  # reached the same bucket, not AWS
    assert s3_client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
