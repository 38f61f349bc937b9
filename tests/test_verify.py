"""`sm verify`: a pass/warn/fail table (or `--json`) of the destination and bucket checks;
exit 1 exactly when a check fails."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.fixtures.s3 import block_public_access
from tests.support.s3_wire import wire_proxy


@pytest.fixture
def endpoint_args(moto_endpoint: str) -> list[str]:
    return ["--endpoint-url", moto_endpoint, "--allow-insecure-endpoint"]


@pytest.fixture
def safe_bucket(cli, endpoint_args) -> str:
    """A bucket made by `sm bucket create`, connected as project 12345."""
    bucket = f"sm-verify-{uuid.uuid4().hex[:10]}"
    assert cli("bucket", "create", f"s3://{bucket}/", *endpoint_args).exit_code == 0
    connect = cli("connect", f"s3://{bucket}/archive/", "--project", "12345",
                  "--expected-owner", "123456789012", *endpoint_args)
    assert connect.exit_code == 0, connect.stderr
    return bucket


def verify_json(cli, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("--json", "verify", *args)
    return result.exit_code, json.loads(result.stdout)


def by_name(document: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in document["checks"]}


def test_verify_passes_on_a_bucket_made_by_sm(cli, safe_bucket, s3_client) -> None:
    code, document = verify_json(cli, "--project", "12345")
    assert code == 0
    assert document["ok"] is True
    assert set(document) == {"ok", "checks"}
    assert all(set(c) == {"name", "status", "detail"} for c in document["checks"])
    statuses = {name: c["status"] for name, c in by_name(document).items()}
    assert statuses == {"reachable": "pass", "write": "pass", "read": "pass",
                        "create_only": "pass", "cleanup": "pass",
                        "owner_condition": "pass", "public_access": "pass",
                        "encryption": "pass", "versioning": "pass", "tls": "warn"}
    assert "loopback" in by_name(document)["tls"]["detail"]
    listing = s3_client.list_objects_v2(Bucket=safe_bucket)
    assert listing.get("KeyCount") == 0  # the test object was removed again


def test_verify_fails_when_public_access_is_open(cli, safe_bucket, s3_client) -> None:
    s3_client.put_public_access_block(Bucket=safe_bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False})
    code, document = verify_json(cli)
    assert code == 1
    assert document["ok"] is False
    checks = by_name(document)
    assert checks["public_access"]["status"] == "fail"
    assert "BlockPublicPolicy, RestrictPublicBuckets off" in checks["public_access"]["detail"]
    assert [c["name"] for c in document["checks"] if c["status"] == "fail"] == ["public_access"]


def test_verify_fails_when_the_public_access_block_is_gone(cli, safe_bucket, s3_client) -> None:
    s3_client.delete_public_access_block(Bucket=safe_bucket)
    result = cli("verify")
    assert result.exit_code == 1
    assert "public_access" in result.stdout
    assert "Error: 1 check(s) failed; first: public_access: no public access block" in (
        result.stderr)
    assert "Try: aws s3api put-public-access-block" in result.stderr


def test_missing_encryption_and_versioning_only_warn(cli, s3_client, endpoint_args) -> None:
    bucket = f"sm-plain-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True})
    assert cli("connect", f"s3://{bucket}/", "--project", "7", *endpoint_args).exit_code == 0
    code, document = verify_json(cli, "--project", "7")
    assert code == 0
    assert document["ok"] is True
    checks = by_name(document)
    assert checks["versioning"]["status"] == "warn"
    assert checks["owner_condition"]["status"] == "warn"  # no --expected-owner given
    assert checks["encryption"] == {"name": "encryption", "status": "warn",
                                    "detail": "no default encryption configured"}
    assert [c for c in document["checks"] if c["status"] == "fail"] == []


def test_verify_with_retention_checks_object_lock(cli, s3_client, endpoint_args) -> None:
    bucket = f"sm-vlock-{uuid.uuid4().hex[:10]}"
    assert cli("bucket", "create", f"s3://{bucket}/", "--object-lock", *endpoint_args
               ).exit_code == 0
    assert cli("connect", f"s3://{bucket}/", "--project", "8", "--retention-days", "1",
               *endpoint_args).exit_code == 0
    code, document = verify_json(cli, "--project", "8")
    assert code == 0
    checks = by_name(document)
    assert checks["object_lock"]["status"] == "pass"
    assert checks["versioning"]["status"] == "pass"
    assert "kept" in checks["cleanup"]["detail"]


def test_verify_fails_when_the_bucket_is_gone(cli, sm_home, s3_client, endpoint_args) -> None:
    bucket = f"sm-gone-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    block_public_access(s3_client, bucket)
    assert cli("connect", f"s3://{bucket}/", "--project", "9", *endpoint_args).exit_code == 0
    s3_client.delete_bucket(Bucket=bucket)
    code, document = verify_json(cli, "--project", "9")
    assert code == 1
    assert document == {"ok": False, "checks": [
        {"name": "reachable", "status": "fail",
         "detail": f"cannot list s3://{bucket}: NoSuchBucket / HTTP 404"}]}


def test_verify_a_folder_destination(cli, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    assert cli("connect", f"file://{archive}/", "--project", "12345").exit_code == 0
    code, document = verify_json(cli)
    assert code == 0
    statuses = {c["name"]: c["status"] for c in document["checks"]}
    assert statuses["write"] == statuses["read"] == statuses["private"] == "pass"
    os.chmod(archive, 0o777)
    code, document = verify_json(cli)
    assert code == 1
    assert {c["name"]: c["status"] for c in document["checks"]}["private"] == "fail"


def test_verify_an_unknown_project(cli) -> None:
    result = cli("verify", "--project", "404")
    assert result.exit_code == 1
    assert "Error: project 404 has no destination" in result.stderr
    assert "Try: sm connect URL --project 404" in result.stderr


def test_settings_the_identity_may_not_read_are_warnings(cli, s3_client, moto_endpoint) -> None:
    proxy = wire_proxy(moto_endpoint)
    through_proxy = ["--endpoint-url", proxy.url, "--allow-insecure-endpoint"]
    bucket = f"sm-denied-{uuid.uuid4().hex[:10]}"
    assert cli("bucket", "create", f"s3://{bucket}/", *through_proxy).exit_code == 0
    assert cli("connect", f"s3://{bucket}/", "--project", "5", *through_proxy).exit_code == 0
    # a narrower policy than `sm policy` prints: no GetEncryptionConfiguration
    proxy.deny = lambda request: request.method == "GET" and request.path.endswith(
        "?encryption")
    code, document = verify_json(cli, "--project", "5")
    assert code == 0
    assert document["ok"] is True
    assert by_name(document)["encryption"] == {
        "name": "encryption", "status": "warn",
        "detail": "cannot read default encryption (AccessDenied / HTTP 403)"}


def test_verify_fails_a_store_that_starts_ignoring_create_only_writes(cli, safe_bucket,
                                                                     moto_endpoint,
                                                                     sm_home: Path) -> None:
    from tests.test_connect import _IgnoresCreateOnly

    relay = _IgnoresCreateOnly(moto_endpoint)
    try:
        config = sm_home / "config.toml"
        config.write_text(config.read_text().replace(moto_endpoint, relay.url))
        result = cli("--json", "verify", "--project", "12345")
    finally:
        relay.close()
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False
    check = by_name(document)["create_only"]
    assert check["status"] == "fail"
    assert "the store accepted a second create-only write" in check["detail"]
    assert "Error: 1 check(s) failed; first: create_only: the store accepted" in result.stderr
