"""Setup that respects the bucket: failed safety checks are not a success, investigators
connect read-only, and `sm verify` leaves no test objects in a bucket that keeps them."""

from __future__ import annotations

import json
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.destinations.base import Check
from stored_messages_cli.setup.checks import accept_failures, blocking_failure
from tests.support.fixtures.core import jsonl


@pytest.fixture
def endpoint_args(moto_endpoint: str) -> list[str]:
    return ["--endpoint-url", moto_endpoint, "--allow-insecure-endpoint"]


def saved(home: Path) -> dict[str, Any]:
    path = home / "config.toml"
    return tomllib.loads(path.read_text()).get("projects", {}) if path.exists() else {}


def versions_under(s3_client: Any, bucket: str, prefix: str) -> int:
    listing = s3_client.list_object_versions(Bucket=bucket, Prefix=prefix)
    return len(listing.get("Versions", [])) + len(listing.get("DeleteMarkers", []))


# ----------------------------------------------------------------- failed safety checks


@pytest.fixture
def public_bucket(s3_client: Any) -> str:
    bucket = f"sm-public-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_bucket_acl(Bucket=bucket, ACL="public-read")
    return bucket


def test_a_public_bucket_is_a_fail_and_connect_refuses_it(cli, sm_home, public_bucket,
                                                          endpoint_args) -> None:
    result = cli("--json", "connect", f"s3://{public_bucket}/", "--project", "1",
                 *endpoint_args)
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    check = {c["name"]: c for c in document["checks"]}["public_access"]
    assert check["status"] == "fail"
    assert "its ACL grants READ to everyone" in check["detail"]
    assert document["saved"] is False and saved(sm_home) == {}
    assert "--accept-failed-check public_access" in result.stderr.splitlines()[-1]


def test_an_accepted_failure_is_saved_with_a_warning_everywhere(cli, sm_home, public_bucket,
                                                                endpoint_args) -> None:
    result = cli("connect", f"s3://{public_bucket}/", "--project", "1",
                 "--accept-failed-check", "public_access", *endpoint_args)
    assert result.exit_code == 0, result.stderr
    assert "Warning: saved although the public_access check failed" in result.stderr
    assert saved(sm_home)["1"]["accepted_failed_checks"] == ["public_access"]
    listed = cli("destinations")
    assert "accepted failed check: public_access" in listed.stdout
    assert "Warning:" in listed.stderr
    assert json.loads(cli("--json", "destinations").stdout)[0][
        "accepted_failed_checks"] == ["public_access"]
    verified = cli("--json", "verify")
    assert verified.exit_code == 0
    check = {c["name"]: c for c in json.loads(verified.stdout)["checks"]}["public_access"]
    assert check["status"] == "warn" and check["detail"].startswith("accepted failure")
    assert "public_access check was accepted as failed" in verified.stderr


def test_a_check_that_keeps_the_archive_cannot_be_accepted(cli) -> None:
    result = cli("connect", "file:///srv/archive/", "--project", "1",
                 "--accept-failed-check", "write")
    assert result.exit_code == 2
    assert "cannot be accepted" in result.stderr


@pytest.mark.parametrize("name", ["object_lock", "retention", "immutability", "write"])
def test_retention_failures_block_on_every_store_even_when_accepted(name: str) -> None:
    checks = [Check("public_access", "fail", "open"), Check(name, "fail", "not kept")]
    assert blocking_failure(checks, accepted=[name, "public_access"]).name == name
    assert accept_failures(checks, [name])[1].status == "fail"


# ----------------------------------------------------------------- read-only investigators


def test_connect_read_only_writes_nothing_and_run_refuses_it(cli, sm_home, s3_client,
                                                             s3_bucket, endpoint_args,
                                                             make_message) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="archive/email/1/x.json.gz", Body=b"x")
    before = versions_under(s3_client, s3_bucket, "")
    result = cli("--json", "connect", f"s3://{s3_bucket}/archive/", "--project", "12345",
                 "--read-only", *endpoint_args)
    assert result.exit_code == 0, result.stderr
    statuses = {c["name"]: c["status"] for c in json.loads(result.stdout)["checks"]}
    assert statuses["list"] == statuses["read"] == "pass"
    assert "write" not in statuses
    assert versions_under(s3_client, s3_bucket, "") == before  # no test object, ever
    assert saved(sm_home)["12345"]["read_only"] is True
    assert cli("ingest", "-", input=jsonl(make_message())).exit_code == 0
    run = cli("run", "--once")
    assert run.exit_code == 1
    assert "connected read-only" in run.stderr and "Try: sm connect" in run.stderr
    assert "read-only" in cli("destinations").stdout


def test_policy_read_only_grants_no_write(cli) -> None:
    document = json.loads(cli("policy", "s3://acme-archive/messages/", "--read-only",
                              "--kms-key-arn", "arn:aws:kms:eu-west-1:111122223333:key/"
                              "1234abcd-12ab-34cd-56ef-1234567890ab").stdout)
    actions = {a for s in document["Statement"] for a in
               ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert "s3:GetObject" in actions and "s3:ListBucket" in actions
    assert "kms:Decrypt" in actions
    assert not {"s3:PutObject", "s3:DeleteObject", "s3:PutObjectRetention",
                "kms:GenerateDataKey"} & actions


# ----------------------------------------------------------------- no litter


def test_verify_proves_writing_with_recent_real_writes(cli, s3_client, endpoint_args,
                                                       make_message) -> None:
    bucket = f"sm-litter-{uuid.uuid4().hex[:10]}"
    assert cli("bucket", "create", f"s3://{bucket}/", *endpoint_args).exit_code == 0  # versioned
    assert cli("connect", f"s3://{bucket}/archive/", "--project", "12345",
               *endpoint_args).exit_code == 0
    tests_before = versions_under(s3_client, bucket, "archive/_sm/connect-test")
    assert cli("ingest", "-", input=jsonl(make_message())).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    archived = versions_under(s3_client, bucket, "archive/email/")
    verified = cli("--json", "verify")
    assert verified.exit_code == 0, verified.stderr
    checks = {c["name"]: c for c in json.loads(verified.stdout)["checks"]}
    assert "no test object written" in checks["write"]["detail"]
    assert checks["read"]["status"] == checks["create_only"]["status"] == "pass"
    assert versions_under(s3_client, bucket, "archive/_sm/connect-test") == tests_before
    assert versions_under(s3_client, bucket, "archive/email/") == archived  # nothing rewritten
    forced = cli("--json", "verify", "--write-test")
    assert forced.exit_code == 0
    assert versions_under(s3_client, bucket, "archive/_sm/connect-test") > tests_before


def test_verify_without_recent_writes_writes_a_test_object(cli, s3_client, s3_bucket,
                                                           endpoint_args) -> None:
    assert cli("connect", f"s3://{s3_bucket}/", "--project", "5", *endpoint_args).exit_code == 0
    verified = cli("--json", "verify")
    assert verified.exit_code == 0
    checks = {c["name"]: c for c in json.loads(verified.stdout)["checks"]}
    assert checks["write"]["detail"].startswith("wrote ")
