"""Every identifier finds the message (issue 14): locally, remotely with manifests (every
identifier's hash) and without them (the key prefix), after an index rebuild; and the
partial-index warning. On a local folder and on S3 (moto over HTTP)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.investigation_support import (
    ArchiveTarget,
    Invoke,
    archive,
    cli_for,
    connect,
    email,
    push,
    sha256_hex,
    target_for,
)

SMS: dict[str, Any] = {
    "message_id": "sms-42", "project_id": 12345, "medium": "sms", "message_type": "triggered",
    "recipient": {"phone_number": "+15555550042", "user_id": 42},
    "sent_at": "2026-11-20T08:30:00Z",
    "content": {"from": "+15555550199", "to": "+15555550042", "body": "Your code is 4242"}}
MAIL = email("mail-1", sent_at="2026-11-21T09:00:00Z")
MAIL["recipient"] = {"email": "Ann.Lee@Example.com", "user_id": "U-881",
                     "phone_number": " +15555550100 "}
PUSH = push("push-1", token="ABCDEF0123", sent_at="2026-11-22T10:00:00Z")
PUSH["recipient"] = {"device_token": "ABCDEF0123", "user_id": "U-881"}
MESSAGES = [SMS, MAIL, PUSH]
SMS_KEY = f"sms/12345/{sha256_hex(b'42')}/unassociated/sms-42.json.gz"
WARNING = ("Warning: the local index of project 12345 is partial (filled by remote finds and"
           " fetches): messages it never saw are not listed. Try: sm index rebuild --project"
           " 12345, or sm find --remote --project 12345 --recipient R")
KEY_PREFIX_NOTE = ("Project 12345: no manifests in the bucket; searched by key prefix, which"
                   " finds a message only by the identifier its key was made from (email,"
                   " else user id, phone number, device token)")


@pytest.fixture(params=["file", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> ArchiveTarget:
    return target_for(request, tmp_path)


@pytest.fixture
def original(target: ArchiveTarget, tmp_path: Path) -> Invoke:
    """The home whose `sm run` archived the three messages (and wrote their manifest)."""
    cli = cli_for(tmp_path / "home")
    archive(cli, target, MESSAGES)
    return cli


def ids(result: Any) -> list[str]:
    assert result.exit_code in (0, 1), result.output
    return [row["message_id"] for row in json.loads(result.stdout)]


def drop_manifests(target: ArchiveTarget) -> None:
    if target.kind == "file":
        assert target.root is not None
        shutil.rmtree(target.root / "_sm" / "manifests")
        return
    listed = target.s3_client.list_objects_v2(Bucket=target.bucket,
                                              Prefix=f"{target.key_prefix}_sm/manifests/")
    for item in listed.get("Contents", []):
        target.s3_client.delete_object(Bucket=target.bucket, Key=item["Key"])


def test_each_identifier_finds_the_message_in_the_local_index(original: Invoke,
                                                               target: ArchiveTarget) -> None:
    for term in ("+15555550042", " +15555550042 ", "42"):
        result = original("--json", "find", "--recipient", term)
        assert json.loads(result.stdout) == [json.loads(original(
            "--json", "find", "--message-id", "sms-42").stdout)[0]], term
        assert json.loads(result.stdout)[0]["key"] == target.key_prefix + SMS_KEY
        assert "Warning" not in result.stderr  # sm run filled this index from the start
    assert ids(original("--json", "find", "--recipient", "u-881")) == []  # user ids keep case
    assert ids(original("--json", "find", "--recipient", "U-881")) == ["push-1", "mail-1"]
    assert ids(original("--json", "find", "--recipient", "+15555550100")) == ["mail-1"]
    assert ids(original("--json", "find", "--recipient", "abcdef0123")) == ["push-1"]
    assert ids(original("--json", "find", "--recipient", "ann.lee@example.com")) == ["mail-1"]


def test_remote_find_uses_the_manifests_for_every_identifier(original: Invoke,
                                                             target: ArchiveTarget,
                                                             tmp_path: Path) -> None:
    laptop = cli_for(tmp_path / "laptop")
    connect(laptop, target)
    local = original("--json", "find", "--recipient", "+15555550042").stdout
    result = laptop("--json", "find", "--remote", "--recipient", "+15555550042")
    assert (result.exit_code, result.stdout) == (0, local)
    assert "Project 12345: searched 1 manifest segment(s) (every identifier; sealed through" \
        in result.stderr
    assert ids(laptop("--json", "find", "--remote", "--recipient", "U-881",
                      "--since", "2026-11-22")) == ["push-1"]
    assert ids(laptop("--json", "find", "--remote", "--recipient", "42")) == ["sms-42"]


def test_remote_find_without_manifests_uses_the_key_prefix_and_says_so(
        original: Invoke, target: ArchiveTarget, tmp_path: Path) -> None:
    drop_manifests(target)
    laptop = cli_for(tmp_path / "laptop")
    connect(laptop, target)
    by_key = laptop("--json", "find", "--remote", "--recipient", "42")
    assert ids(by_key) == ["sms-42"]
    assert KEY_PREFIX_NOTE in by_key.stderr
    by_phone = laptop("--json", "find", "--remote", "--recipient", "+15555550042")
    assert (by_phone.exit_code, by_phone.stdout) == (0, "[]\n")
    assert KEY_PREFIX_NOTE in by_phone.stderr
    # The payload read by the first find indexed every identifier of the message.
    assert ids(laptop("--json", "find", "--recipient", "+15555550042")) == ["sms-42"]


def test_a_partial_index_warns_until_a_full_rebuild(original: Invoke, target: ArchiveTarget,
                                                    tmp_path: Path) -> None:
    laptop = cli_for(tmp_path / "laptop")
    connect(laptop, target)
    assert ids(laptop("--json", "find", "--remote", "--recipient", "42")) == ["sms-42"]
    partial = laptop("--json", "find", "--medium", "sms")
    assert (partial.exit_code, json.loads(partial.stdout)) == (0, json.loads(
        original("--json", "find", "--medium", "sms").stdout))
    assert partial.stderr.splitlines() == ["1 message", WARNING]
    human = laptop("find", "--project", "12345")
    assert WARNING in human.stderr.splitlines()
    other = laptop("--json", "find", "--project", "777")  # another project: not concerned
    assert "Warning" not in other.stderr
    rebuilt = laptop("--json", "index", "rebuild", "--project", "12345")
    assert rebuilt.exit_code == 0, rebuilt.output
    complete = laptop("--json", "find", "--recipient", "+15555550042")
    assert ids(complete) == ["sms-42"]  # the rebuild indexed every identifier
    assert "Warning" not in complete.stderr
    assert ids(laptop("--json", "find", "--recipient", "U-881")) == ["push-1", "mail-1"]
