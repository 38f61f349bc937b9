"""`sm find`: every filter and combinations, recipient normalisation, --limit, empty results,
and `--remote` on a fresh home, on a local folder and on S3 (moto over HTTP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.spool import Spool
from tests.support.investigation_support import (
    ArchiveTarget,
    Invoke,
    archive,
    cli_for,
    connect,
    email,
    gunzip,
    push,
    sha256_hex,
    sms,
    target_for,
)

ANN_HASH = sha256_hex(b"ann.lee@example.com")
MESSAGES = [
    email("a-1", sent_at="2026-11-01T09:00:00Z"),
    email("b-2", to="ann.lee@example.com", campaign=222, message_type="triggered",
          sent_at="2026-11-15T12:00:00Z"),
    email("c-3", project=777, sent_at="2026-11-10T00:00:00Z"),
    sms("d-4"),
    push("e-5"),
    email("f-6", to="bo@example.org", sent_at="2026-11-02T10:00:00Z"),
]


@pytest.fixture(scope="module", params=["file", "s3"])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Invoke, ArchiveTarget]:
    """The six messages above stored through the real pipeline, once per backend.

    Only tests that leave the bucket and this home as they found them use it.
    """
    folder = tmp_path_factory.mktemp(f"find-{request.param}")
    archived = target_for(request, folder)
    invoke = cli_for(folder / "home")
    archive(invoke, archived, MESSAGES)
    return invoke, archived


@pytest.fixture(params=["file", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> ArchiveTarget:
    """A fresh local folder or moto S3 bucket, for a test that alters what is stored."""
    return target_for(request, tmp_path)


@pytest.fixture
def cli(shared: tuple[Invoke, ArchiveTarget]) -> Invoke:
    """`sm` on the home that archived the messages."""
    return shared[0]


@pytest.fixture
def archived(shared: tuple[Invoke, ArchiveTarget]) -> ArchiveTarget:
    """Where the messages were archived."""
    return shared[1]


def found(cli, *args: str) -> list[str]:
    """Message ids `sm --json find ARGS` prints, in order."""
    result = cli("--json", "find", *args)
    assert result.exit_code == 0, result.output
    return [item["message_id"] for item in json.loads(result.stdout)]


def test_each_filter_and_combinations(cli, archived: ArchiveTarget) -> None:
    assert found(cli) == ["e-5", "d-4", "b-2", "c-3", "f-6", "a-1"]  # newest first
    assert found(cli, "--recipient", "ann.lee@example.com") == ["b-2", "c-3", "a-1"]
    assert found(cli, "--recipient", "ann.lee@example.com", "--project", "12345") == [
        "b-2", "a-1"]
    assert found(cli, "--message-id", "d-4") == ["d-4"]
    assert found(cli, "--campaign", "111") == ["e-5", "c-3", "f-6", "a-1"]
    assert found(cli, "--campaign", "111", "--project", "12345", "--medium", "email") == [
        "f-6", "a-1"]
    assert found(cli, "--medium", "sms") == ["d-4"]
    assert found(cli, "--medium", "push") == ["e-5"]
    assert found(cli, "--project", "777") == ["c-3"]
    assert found(cli, "--recipient", "u-9") == ["d-4"]  # an sms keyed by user id
    assert found(cli, "--recipient", " ABCDEF0123 ") == ["e-5"]  # tokens hash lowercased
    assert found(cli, "--recipient", "ann.lee@example.com", "--campaign", "222",
                 "--since", "2026-11-01", "--until", "2026-11-30") == ["b-2"]
    assert found(cli, "--message-id", "a-1", "--project", "777") == []


def test_since_and_until_accept_dates_and_rfc3339(cli, archived: ArchiveTarget) -> None:
    assert found(cli, "--since", "2026-11-15") == ["e-5", "d-4", "b-2"]
    # A plain --until date includes that whole day (c-3 was sent at its first instant).
    assert found(cli, "--until", "2026-11-10") == ["c-3", "f-6", "a-1"]
    assert found(cli, "--since", "2026-11-02", "--until", "2026-11-15T11:59:59Z") == [
        "c-3", "f-6"]
    # d-4 was sent at 08:30:00.5: the bounds are exact to the fraction of a second.
    assert found(cli, "--since", "2026-11-20T08:30:00Z", "--medium", "sms") == ["d-4"]
    assert found(cli, "--until", "2026-11-20T08:30:00Z", "--medium", "sms") == []
    assert found(cli, "--since", "2026-11-20T08:30:00.6Z", "--medium", "sms") == []
    assert found(cli, "--until", "2026-11-20T08:30:00.5Z", "--medium", "sms") == ["d-4"]
    assert found(cli, "--since", "2026-11-20T09:30:00.5+01:00", "--until",
                 "2026-11-20T09:30:00.5+01:00") == ["d-4"]
    bad = cli("find", "--since", "last tuesday")
    assert bad.exit_code == 2
    assert "RFC 3339" in bad.output


def test_recipient_is_normalised_like_the_key(cli, archived: ArchiveTarget) -> None:
    result = cli("--json", "find", "--recipient", "  Ann.Lee@EXAMPLE.com ", "--project",
                 "12345")
    assert result.exit_code == 0
    key = f"{archived.key_prefix}email/12345/{ANN_HASH}/111/a-1.json.gz"
    stored_sha = sha256_hex(gunzip(archived.read(key)))
    assert json.loads(result.stdout) == [
        {"message_id": "b-2", "project_id": "12345", "medium": "email",
         "message_type": "triggered", "campaign_id": "222", "sent_at": "2026-11-15T12:00:00Z",
         "key": f"{archived.key_prefix}email/12345/{ANN_HASH}/222/b-2.json.gz",
         "payload_sha256": sha256_hex(gunzip(archived.read(
             f"{archived.key_prefix}email/12345/{ANN_HASH}/222/b-2.json.gz")))},
        {"message_id": "a-1", "project_id": "12345", "medium": "email",
         "message_type": "blast", "campaign_id": "111", "sent_at": "2026-11-01T09:00:00Z",
         "key": key, "payload_sha256": stored_sha},
    ]


def test_limit_keeps_the_newest_and_says_so(cli, archived: ArchiveTarget) -> None:
    result = cli("--json", "find", "--limit", "2")
    assert [m["message_id"] for m in json.loads(result.stdout)] == ["e-5", "d-4"]
    assert "showing the newest 2" in result.stderr
    assert found(cli, "--limit", "0") == ["e-5", "d-4", "b-2", "c-3", "f-6", "a-1"]
    exact = cli("--json", "find", "--limit", "6")
    assert len(json.loads(exact.stdout)) == 6
    assert "showing the newest" not in exact.stderr


def test_nothing_found_is_an_empty_array_and_exit_0(cli, archived: ArchiveTarget) -> None:
    result = cli("--json", "find", "--recipient", "nobody@example.com")
    assert (result.exit_code, result.stdout) == (0, "[]\n")
    human = cli("find", "--recipient", "nobody@example.com")
    assert human.exit_code == 0
    assert human.stdout == ""
    assert "No stored message matches." in human.stderr


def test_table_on_a_terminal_lists_whole_ids_and_times(cli, archived: ArchiveTarget) -> None:
    result = cli("find", "--recipient", "ann.lee@example.com")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [ln.split()[-1] for ln in lines[2:]] == ["b-2", "c-3", "a-1"]
    assert "2026-11-15T12:00:00Z" in lines[2]
    assert "3 messages" in result.stderr


def test_remote_find_on_a_fresh_home_matches_the_index(cli, archived: ArchiveTarget,
                                                        tmp_path: Path) -> None:
    fresh = cli_for(tmp_path / "laptop")
    connect(fresh, archived, "12345")
    connect(fresh, archived, "777")

    def remote(*args: str) -> list[dict[str, Any]]:
        result = fresh("--json", "find", "--remote", *args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    for args in (["--recipient", "  Ann.Lee@EXAMPLE.com "],
                 ["--recipient", "u-9", "--medium", "sms"],
                 ["--recipient", "ann.lee@example.com", "--since", "2026-11-10",
                  "--campaign", "111"],
                 ["--recipient", "nobody@example.com", "--project", "777"]):
        local = json.loads(cli("--json", "find", *args).stdout)
        assert remote(*args) == local, args
    assert [m["message_id"] for m in remote("--recipient", "ann.lee@example.com",
                                            "--limit", "2")] == ["b-2", "c-3"]


def test_remote_find_needs_a_recipient_and_a_project(cli, archived: ArchiveTarget,
                                                      tmp_path: Path) -> None:
    no_recipient = cli("find", "--remote", "--project", "12345")
    assert no_recipient.exit_code == 2
    assert "Error: --remote needs --recipient" in no_recipient.stderr
    no_spool = cli_for(tmp_path / "empty")("find", "--remote", "--recipient", "x@y.z")
    assert no_spool.exit_code == 1
    assert f"Error: no spool at {tmp_path / 'empty' / 'spool.db'}" in no_spool.stderr
    assert not (tmp_path / "empty").exists()
    with Spool.open(home=tmp_path / "empty"):
        pass  # a spool, but no project connected
    nothing_connected = cli_for(tmp_path / "empty")("find", "--remote", "--recipient", "x@y.z")
    assert nothing_connected.exit_code == 2
    assert "Error: no project has a destination to search" in nothing_connected.stderr
    unknown = cli("find", "--remote", "--recipient", "x@y.z", "--project", "999")
    assert unknown.exit_code == 1
    assert "Error: project 999 has no destination" in unknown.stderr


def test_remote_find_reports_an_altered_object_and_exits_1(target: ArchiveTarget,
                                                            tmp_path: Path) -> None:
    original_home = cli_for(tmp_path / "home")
    archive(original_home, target, [MESSAGES[0], MESSAGES[1]])
    key = f"{target.key_prefix}email/12345/{ANN_HASH}/111/a-1.json.gz"
    original = target.read(key)
    # Cut the gzip trailer short; keep the metadata claiming the original payload.
    target.overwrite(key, original[:-9] + b"corrupted",
                     payload_sha256=sha256_hex(gunzip(original)))
    fresh = cli_for(tmp_path / "laptop")
    connect(fresh, target, "12345")
    result = fresh("--json", "find", "--remote", "--recipient", "ann.lee@example.com")
    assert result.exit_code == 1
    assert [m["message_id"] for m in json.loads(result.stdout)] == ["b-2"]
    assert f"Error: checksum mismatch for {key}: the object is not valid gzip" in result.stderr
    assert "1 object(s) under this recipient failed verification" in result.stderr


def test_relative_times_unassociated_campaign_and_an_inverted_range(
        cli, archived: ArchiveTarget) -> None:
    # Every message was sent in 2026-11; "2000w" ago reaches back before them all.
    assert found(cli, "--since", "2000w", "--medium", "sms") == ["d-4"]
    assert found(cli, "--until", "1s", "--medium", "sms") == ["d-4"]
    assert found(cli, "--since", "1s", "--medium", "sms") == []
    assert found(cli, "--campaign", "unassociated") == ["d-4"]  # the sms has no campaign
    inverted = cli("find", "--since", "2026-11-20", "--until", "2026-11-01")
    assert inverted.exit_code == 2
    assert ("Error: --since 2026-11-20 is after --until 2026-11-01: the range is empty"
            in inverted.stderr)
    bad = cli("find", "--since", "7 days")
    assert bad.exit_code == 2
    assert "or a time ago (7d, 2h, 30m)" in bad.stderr


def test_nothing_found_points_to_sm_show_for_a_message_id(cli, archived: ArchiveTarget
                                                          ) -> None:
    result = cli("find", "--message-id", "never-stored", "--project", "12345")
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr.splitlines() == [
        "No stored message matches.",
        "Message never-stored is not stored (or not in this index); the spool may know why:"
        " discarded, failed or still waiting. Try: sm show never-stored --project 12345"]
    quiet = cli("--json", "find", "--message-id", "never-stored")
    assert (quiet.exit_code, quiet.stdout) == (0, "[]\n")
    assert "sm show" not in quiet.stderr  # --json: the documented array, no hints
    found_one = cli("find", "--message-id", "a-1")
    assert "sm show" not in found_one.stderr


def test_nothing_found_in_a_partial_index_points_to_the_bucket(cli, archived: ArchiveTarget,
                                                               tmp_path: Path) -> None:
    laptop = cli_for(tmp_path / "laptop")
    connect(laptop, archived, "12345")
    assert laptop("find", "--remote", "--recipient", "u-9", "--medium", "sms").exit_code == 0
    result = laptop("find", "--recipient", "bo@example.org")
    assert (result.exit_code, result.stdout) == (0, "")
    hint = ("The local index of project(s) 12345 is partial, so the message may still be in"
            " the bucket. Try: sm find --remote (with the same filters), or sm index rebuild"
            " --project 12345")
    assert result.stderr.splitlines()[0] == "No stored message matches."
    assert result.stderr.splitlines()[-1] == hint
    by_campaign = laptop("find", "--campaign", "999", "--project", "12345")
    assert by_campaign.stderr.splitlines()[-1] == hint.replace(
        "sm find --remote (", "sm find --remote --project 12345 --recipient R (")
    remote = laptop("find", "--remote", "--recipient", "bo@example.org", "--message-id", "x")
    assert remote.exit_code == 0
    assert "Try: sm show x" in remote.stderr
    assert "is partial, so" not in remote.stderr
    # the archiving home's index is complete: no such hint there
    assert "is partial" not in cli("find", "--recipient", "nobody@example.com").stderr
