"""Legal holds by case on moto's S3 with object lock (SPEC 9.4): the native hold, object by
object, as `get_object_legal_hold` reports it; a held version that cannot be deleted; a later
message held at upload; overlapping cases released correctly; the log's hold/release entries;
audit's `hold_missing`; a bucket without object lock refused."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.fixtures.core import jsonl, mixed_messages
from tests.support.fixtures.s3 import block_public_access

PROJECT = "12345"
Invoke = Callable[..., Any]


@pytest.fixture
def locked_bucket(s3_client: Any) -> str:
    """A new bucket with object lock (and so versioning), public access blocked."""
    name = f"sm-hold-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    block_public_access(s3_client, name)
    return name


def connect(cli: Invoke, bucket: str, endpoint: str) -> None:
    connected = cli("connect", f"s3://{bucket}/archive/", "--project", PROJECT,
                    "--endpoint-url", endpoint, "--allow-insecure-endpoint")
    assert connected.exit_code == 0, connected.output


def messages() -> list[dict[str, Any]]:
    """Six messages: Ann's three (two of campaign spring), Bob's three (one of spring)."""
    made = mixed_messages(6, lambda i: f"m-{i}")
    for index, message in enumerate(made):
        who = "ann" if index < 3 else "bob"
        message["recipient"] = dict(message["recipient"], user_id=who)
        message["campaign_id"] = "spring" if index in (0, 1, 3) else "autumn"
    return made


@pytest.fixture
def archived(cli: Invoke, locked_bucket: str, moto_endpoint: str) -> dict[str, str]:
    """The six messages stored in the locked bucket; message id -> key."""
    connect(cli, locked_bucket, moto_endpoint)
    assert cli("ingest", input=jsonl(*messages())).exit_code == 0
    ran = cli("--json", "run", "--once")
    assert ran.exit_code == 0, ran.output
    found = json.loads(cli("--json", "find", "--project", PROJECT).stdout)
    assert len(found) == 6
    return {f["message_id"]: f["key"] for f in found}


def native_holds(s3_client: Any, bucket: str) -> dict[str, bool]:
    """Each message object's legal hold as S3 reports it, by key, version by version."""
    held = {}
    versions = s3_client.list_object_versions(Bucket=bucket, Prefix="archive/")["Versions"]
    for version in versions:
        if "/_sm/" in version["Key"] or version["Key"].startswith("archive/_sm/"):
            continue
        answer = s3_client.get_object_legal_hold(Bucket=bucket, Key=version["Key"],
                                                 VersionId=version["VersionId"])
        held[version["Key"]] = answer.get("LegalHold", {}).get("Status") == "ON"
    return held


def held_ids(holds: dict[str, bool], keys: dict[str, str]) -> set[str]:
    return {message_id for message_id, key in keys.items() if holds[key]}


def log_entries(s3_client: Any, bucket: str) -> list[dict[str, Any]]:
    """Every entry of the project's manifest segments in the bucket, in order."""
    import gzip

    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=f"archive/_sm/manifests/{PROJECT}/")
    entries = []
    for item in sorted(listed.get("Contents", []), key=lambda i: i["Key"]):
        body = s3_client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        lines = gzip.decompress(body).decode().splitlines()
        entries += [json.loads(line) for line in lines[1:]]
    return entries


def test_a_case_holds_each_matching_version_and_a_held_version_cannot_be_deleted(
        cli: Invoke, archived: dict[str, str], s3_client: Any, locked_bucket: str) -> None:
    created = cli("--json", "hold", "create", "case-ann", "--project", PROJECT,
                  "--recipient", "ann", "--note", "Doe v. Acme")
    assert created.exit_code == 0, created.output
    holds = native_holds(s3_client, locked_bucket)
    assert held_ids(holds, archived) == {"m-0", "m-1", "m-2"}
    key = archived["m-0"]
    version = s3_client.head_object(Bucket=locked_bucket, Key=key)["VersionId"]
    with pytest.raises(Exception) as refused:
        s3_client.delete_object(Bucket=locked_bucket, Key=key, VersionId=version)
    assert "AccessDenied" in str(refused.value)
    assert s3_client.head_object(Bucket=locked_bucket, Key=key, VersionId=version)
    shown = json.loads(cli("--json", "hold", "show", "case-ann").stdout)
    assert list(shown) == ["case_id", "project_id", "filters", "note", "created_at",
                           "released_at", "objects", "pending"]
    assert (shown["case_id"], shown["project_id"], shown["note"], shown["objects"],
            shown["pending"], shown["released_at"]) == (
        "case-ann", PROJECT, "Doe v. Acme", 3, 0, None)
    assert "ann" not in json.dumps(shown["filters"])  # the recipient is kept as hashes only
    hold_entries = [e for e in log_entries(s3_client, locked_bucket) if e["outcome"] == "hold"]
    assert sorted(e["message_id"] for e in hold_entries) == ["m-0", "m-1", "m-2"]
    assert {e["case_id"] for e in hold_entries} == {"case-ann"}
    assert all(e["version_id"] for e in hold_entries)
    audit = cli("--json", "audit")
    assert audit.exit_code == 0, audit.output
    project = json.loads(audit.stdout)["projects"][0]
    assert (project["stored"], project["holds"], project["releases"]) == (6, 3, 0)
    assert project["entries"] == 9
    shown_message = json.loads(cli("--json", "show", "m-1").stdout)
    assert shown_message["holds"] == ["case-ann"]
    assert json.loads(cli("--json", "show", "m-4").stdout)["holds"] == []


@pytest.mark.usefixtures("spool_backend")  # the settle hook on SQLite and PostgreSQL
def test_a_later_message_matching_an_open_case_is_held_at_upload(
        cli: Invoke, archived: dict[str, str], s3_client: Any, locked_bucket: str,
        make_message: Callable[..., dict[str, Any]]) -> None:
    assert cli("hold", "create", "case-ann", "--project", PROJECT,
               "--recipient", "ann").exit_code == 0
    later = [make_message(message_id="later-ann", recipient={"user_id": "ann"}),
             make_message(message_id="later-bob", recipient={"user_id": "bob"})]
    assert cli("ingest", input=jsonl(*later)).exit_code == 0
    ran = cli("--json", "run", "--once")
    assert ran.exit_code == 0, ran.output
    keys = {f["message_id"]: f["key"] for f in json.loads(cli("--json", "find").stdout)}
    holds = native_holds(s3_client, locked_bucket)
    assert held_ids(holds, keys) == {"m-0", "m-1", "m-2", "later-ann"}
    shown = json.loads(cli("--json", "hold", "show", "case-ann").stdout)
    assert (shown["objects"], shown["pending"]) == (4, 0)
    hold_entries = [e["message_id"] for e in log_entries(s3_client, locked_bucket)
                    if e["outcome"] == "hold"]
    assert sorted(hold_entries) == ["later-ann", "m-0", "m-1", "m-2"]


def test_overlapping_cases_release_only_what_no_open_case_holds(
        cli: Invoke, archived: dict[str, str], s3_client: Any, locked_bucket: str,
        tmp_path: Path) -> None:
    assert cli("hold", "create", "ann", "--project", PROJECT, "--recipient", "ann"
               ).exit_code == 0
    assert cli("hold", "create", "spring", "--project", PROJECT, "--campaign", "spring"
               ).exit_code == 0
    assert held_ids(native_holds(s3_client, locked_bucket), archived) == {
        "m-0", "m-1", "m-2", "m-3"}
    released = cli("--json", "hold", "release", "ann")
    assert released.exit_code == 0, released.output
    assert json.loads(released.stdout)["released_at"] is not None
    # m-0 and m-1 are spring's too: their hold stays; m-2 was Ann's alone
    assert held_ids(native_holds(s3_client, locked_bucket), archived) == {
        "m-0", "m-1", "m-3"}
    assert cli("hold", "release", "spring").exit_code == 0
    assert held_ids(native_holds(s3_client, locked_bucket), archived) == set()
    entries = log_entries(s3_client, locked_bucket)
    releases = sorted((e["case_id"], e["message_id"]) for e in entries
                      if e["outcome"] == "release")
    assert releases == [("ann", "m-0"), ("ann", "m-1"), ("ann", "m-2"),
                        ("spring", "m-0"), ("spring", "m-1"), ("spring", "m-3")]
    listed = json.loads(cli("--json", "hold", "list").stdout)
    assert listed == []
    every = json.loads(cli("--json", "hold", "list", "--all").stdout)
    assert [c["case_id"] for c in every] == ["ann", "spring"]
    audit = cli("--json", "audit")
    assert audit.exit_code == 0, audit.output
    project = json.loads(audit.stdout)["projects"][0]
    assert (project["holds"], project["releases"], project["stored"]) == (6, 6, 6)
    assert json.loads(cli("--json", "show", "m-0").stdout)["holds"] == []
    # the hold and release entries are leaves of the log too: proofs still find the stored one
    proved = cli("--json", "prove", "m-0")
    assert proved.exit_code == 0, proved.output
    proof = json.loads(proved.stdout)
    assert json.loads(proof["entry"])["outcome"] == "stored"
    assert proof["tree_size"] == 6 + 6 + 6
    saved = tmp_path / "proof.json"
    saved.write_text(proved.stdout)
    key = cli("key", "show").stdout.strip()
    checked = cli("verify-proof", str(saved), "--trust", key)
    assert checked.exit_code == 0, checked.output


def test_a_released_case_stays_closed_and_other_filters_are_refused(
        cli: Invoke, archived: dict[str, str]) -> None:
    assert cli("hold", "create", "c1", "--project", PROJECT, "--recipient", "ann"
               ).exit_code == 0
    other = cli("hold", "create", "c1", "--project", PROJECT, "--recipient", "bob")
    assert other.exit_code == 2
    assert "other filters" in other.output
    again = cli("--json", "hold", "create", "c1", "--project", PROJECT, "--recipient", "ann")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["objects"] == 3
    assert cli("hold", "release", "c1").exit_code == 0
    closed = cli("hold", "create", "c1", "--project", PROJECT, "--recipient", "ann")
    assert closed.exit_code == 2
    assert "released" in closed.output
    nothing = cli("hold", "create", "c2", "--project", PROJECT)
    assert nothing.exit_code == 2
    unknown = cli("hold", "show", "nope")
    assert unknown.exit_code == 1


def test_audit_reports_a_held_object_whose_native_hold_is_missing(
        cli: Invoke, archived: dict[str, str], s3_client: Any, locked_bucket: str) -> None:
    assert cli("hold", "create", "case-ann", "--project", PROJECT, "--recipient", "ann"
               ).exit_code == 0
    key = archived["m-2"]
    version = s3_client.head_object(Bucket=locked_bucket, Key=key)["VersionId"]
    # someone with s3:PutObjectLegalHold lifts it behind the ledger's back
    s3_client.put_object_legal_hold(Bucket=locked_bucket, Key=key, VersionId=version,
                                    LegalHold={"Status": "OFF"})
    audit = cli("--json", "audit")
    assert audit.exit_code == 1
    findings = json.loads(audit.stdout)["projects"][0]["findings"]
    assert [(f["type"], f["message_id"], f["key"]) for f in findings] == [
        ("hold_missing", "m-2", key)]


def test_a_bucket_without_object_lock_is_refused_naming_why(
        cli: Invoke, s3_bucket: str, moto_endpoint: str,
        make_message: Callable[..., dict[str, Any]]) -> None:
    connect(cli, s3_bucket, moto_endpoint)
    assert cli("ingest", input=jsonl(make_message())).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    refused = cli("hold", "create", "c1", "--project", PROJECT, "--campaign", "1234567")
    assert refused.exit_code == 1
    assert "object lock" in refused.output
    assert json.loads(cli("--json", "hold", "list", "--all").stdout) == []


def test_policy_with_holds_grants_the_hold_and_retention_actions_on_the_prefix(
        cli: Invoke) -> None:
    printed = cli("--json", "policy", "s3://acme-archive/messages/", "--holds")
    assert printed.exit_code == 0, printed.output
    statements = json.loads(printed.stdout)["Statement"]
    [holds] = [s for s in statements if s["Sid"] == "LegalHoldsAndRetention"]
    assert holds["Action"] == ["s3:PutObjectLegalHold", "s3:GetObjectLegalHold",
                               "s3:PutObjectRetention", "s3:GetObjectRetention",
                               "s3:GetObjectVersion"]
    assert holds["Resource"] == "arn:aws:s3:::acme-archive/messages/*"
    plain = json.loads(cli("--json", "policy", "s3://acme-archive/messages/").stdout)
    assert "LegalHoldsAndRetention" not in {s["Sid"] for s in plain["Statement"]}
    refused = cli("policy", "s3://acme-archive/messages/", "--holds", "--read-only")
    assert refused.exit_code == 2
