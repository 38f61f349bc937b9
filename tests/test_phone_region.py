"""SPEC 9.2 `default_phone_region` where messages are recorded: a message whose recipient is a
national phone number (`(555) 010-0000`) is also indexed in E.164 when the setting (in
config.toml, or `SM_DEFAULT_PHONE_REGION`) names the region, at ingest (the archive index and
the manifest entry), by `sm index rebuild` and by `sm find --remote`. The key layout is
unchanged: the key's hash is the raw stripped number's, with or without the setting. Real
folder destination, real spool, the real CLI."""

from __future__ import annotations

import gzip
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stored_messages_cli import Spool
from stored_messages_cli.clock import SystemClock
from stored_messages_cli.message import search_hashes
from tests.support.fixtures.core import jsonl
from tests.support.investigation_support import (
    ArchiveTarget,
    archive,
    build_target,
    cli_for,
    connect,
    gunzip,
    sha256_hex,
)
from tests.support.spool_db import rows

NATIONAL = "(555) 010-0000"


def sha(text: str) -> str:
    return sha256_hex(text.encode("utf-8"))


def phone_message(message_id: str, number: str) -> dict[str, object]:
    """An SMS whose recipient is known by a phone number only."""
    return {"message_id": message_id, "project_id": 12345, "medium": "sms",
            "message_type": "triggered", "recipient": {"phone_number": number},
            "sent_at": "2026-11-20T08:30:00Z",
            "content": {"from": "+15555550199", "to": number, "body": "Code 1"}}


def found(cli: Callable[..., Any], *args: str) -> list[str]:
    """Message ids `sm --json find ARGS` prints, sorted."""
    result = cli("--json", "find", *args)
    assert result.exit_code == 0, result.output
    return sorted(item["message_id"] for item in json.loads(result.stdout))


def manifest_entries(target: ArchiveTarget) -> dict[str, dict[str, Any]]:
    """Every manifest entry in the bucket (project 12345), by message id."""
    assert target.root is not None
    entries: dict[str, dict[str, Any]] = {}
    for path in sorted((target.root / "_sm" / "manifests" / "12345").rglob("*.jsonl.gz")):
        for line in gzip.decompress(path.read_bytes()).decode().splitlines():
            item = json.loads(line)
            if "message_id" in item:
                entries[item["message_id"]] = item
    return entries


def home(path: Path, source: str | None, monkeypatch: pytest.MonkeyPatch
         ) -> Callable[..., Any]:
    """The CLI of a home whose `default_phone_region` is US by `source` (config.toml or the
    environment), or unset (None)."""
    if source == "config":
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.toml").write_text('default_phone_region = "US"\n')
    elif source == "env":
        monkeypatch.setenv("SM_DEFAULT_PHONE_REGION", "US")
    return cli_for(path)


@pytest.fixture
def archived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """A national number and an international one, archived with the region `request.param`."""
    monkeypatch.setenv("SM_MANIFEST_MAX_ENTRIES", "1")  # `sm run` seals every entry at once
    target = build_target("file", tmp_path)
    cli = home(tmp_path / "home", request.param, monkeypatch)
    archive(cli, target, [phone_message("tel-1", NATIONAL),
                          phone_message("tel-2", "+44 20 7946 0000")])
    return cli, target


@pytest.mark.parametrize("archived", ["config", "env"], indirect=True)
def test_a_national_number_is_found_by_e164_and_national_spellings(archived) -> None:
    cli, target = archived
    assert found(cli, "--recipient", "+15550100000") == ["tel-1"]
    assert found(cli, "--recipient", "555 010 0000") == ["tel-1"]
    assert found(cli, "--recipient", NATIONAL) == ["tel-1"]
    assert found(cli, "--recipient", "+442079460000") == ["tel-2"]
    entry = manifest_entries(target)["tel-1"]
    assert entry["recipient_hashes"] == {"phone_number": sha(NATIONAL),
                                         "phone_number_e164": sha("+15550100000")}
    # the key keeps the hash of the stored spelling
    assert any(sha(NATIONAL) in key for key in target.keys())
    assert not any(sha("+15550100000") in key for key in target.keys())


@pytest.mark.parametrize("archived", ["config", "env"], indirect=True)
def test_prune_then_rebuild_and_remote_find_on_a_new_home_still_find_it(
        archived, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request) -> None:
    cli, target = archived
    with pytest.MonkeyPatch.context() as later:  # 1.1 s on, without waiting for it:
        later.setattr(SystemClock, "now", lambda self: time.time() + 1.1)  # rows old enough
        pruned = cli("--json", "spool", "prune", "--older-than", "1s")
    assert pruned.exit_code == 0, pruned.output
    assert json.loads(pruned.stdout)["stored"] == 2
    rebuilt = cli("index", "rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert found(cli, "--recipient", "+15550100000") == ["tel-1"]
    source = request.node.callspec.params["archived"]
    fresh = home(tmp_path / "fresh", source, monkeypatch)
    connect(fresh, target)
    assert found(fresh, "--remote", "--recipient", "+15550100000") == ["tel-1"]
    rebuilding = home(tmp_path / "rebuilding", source, monkeypatch)
    connect(rebuilding, target)
    rebuilt = rebuilding("index", "rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert found(rebuilding, "--recipient", "+15550100000") == ["tel-1"]
    assert found(rebuilding, "--recipient", "555 010 0000") == ["tel-1"]
    fetching = home(tmp_path / "fetching", source, monkeypatch)  # indexes what it fetches
    connect(fetching, target)
    assert fetching("fetch", "tel-1").exit_code == 0
    assert found(fetching, "--recipient", "+15550100000") == ["tel-1"]


@pytest.mark.parametrize("archived", [None], indirect=True)
def test_without_the_setting_nothing_changes(archived, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cli, target = archived
    assert found(cli, "--recipient", "+15550100000") == []
    assert found(cli, "--recipient", NATIONAL) == ["tel-1"]
    entry = manifest_entries(target)["tel-1"]
    assert entry["recipient_hashes"] == {"phone_number": sha(NATIONAL)}
    # the same message archived with the region: the same key, the same object bytes
    other = build_target("file", tmp_path / "other")
    regional = home(tmp_path / "regional", "env", monkeypatch)
    archive(regional, other, [phone_message("tel-1", NATIONAL)])
    [key] = [k for k in target.keys() if "tel-1" in k]
    assert [k for k in other.keys() if "tel-1" in k] == [key]
    assert other.read(key) == target.read(key)
    assert manifest_entries(other)["tel-1"]["recipient_hashes"]["phone_number"] == sha(NATIONAL)


def test_senders_keep_the_region_of_the_last_good_configuration(tmp_path: Path) -> None:
    """Intake never depends on a valid config.toml: with a typo in it, `Spool.record` reads
    the region from the last good copy, as it reads the archived mediums."""
    home_dir = tmp_path / "home"
    home_dir.mkdir(mode=0o700)
    config = home_dir / "config.toml"
    config.write_text('default_phone_region = "US"\n')
    with Spool.open(home=home_dir) as spool:
        spool.record(phone_message("tel-1", NATIONAL))
    config.write_text('retry_intervall = "8h"\n' + config.read_text())  # one misplaced key
    with Spool.open(home=home_dir) as spool:
        spool.record(phone_message("tel-2", NATIONAL))
        recorded = {row["message_id"]: json.loads(row["recipient_hashes"]) for row in rows(
            spool, "SELECT message_id, recipient_hashes FROM messages")}
    expected = {"phone_number": sha(NATIONAL), "phone_number_e164": sha("+15550100000")}
    assert recorded == {"tel-1": expected, "tel-2": expected}


def test_backfill_and_adopt_index_the_e164_form(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`sm manifest backfill` (messages archived before manifests existed) and `sm manifest
    adopt` (an object the spool never stored) write the entry's hashes with the region too."""
    target = build_target("file", tmp_path)
    cli = home(tmp_path / "home", "env", monkeypatch)
    connect(cli, target)
    assert cli("ingest", "-", input=jsonl(phone_message("tel-1", NATIONAL))).exit_code == 0
    conn = sqlite3.connect(tmp_path / "home" / "spool.db")
    conn.execute("DROP TRIGGER manifest_entry_on_settle")  # as before manifests existed
    conn.commit()
    conn.close()
    assert cli("run", "--once").exit_code == 0
    assert "tel-1" not in manifest_entries(target)
    backfilled = cli("--json", "manifest", "backfill")
    assert backfilled.exit_code == 0, backfilled.output
    expected = {"phone_number": sha(NATIONAL), "phone_number_e164": sha("+15550100000")}
    assert manifest_entries(target)["tel-1"]["recipient_hashes"] == expected
    # an object another archiver wrote, adopted with a reason
    assert target.root is not None
    [key] = [k for k in target.keys() if k.endswith("tel-1.json.gz")]
    planted = key.replace("tel-1.json.gz", "tel-9.json.gz")
    payload = gunzip(target.read(key)).replace(b'"tel-1"', b'"tel-9"')
    (target.root / planted).write_bytes(gzip.compress(payload, mtime=0))
    adopted = cli("--json", "manifest", "adopt", planted, "--reason", "the old archiver's")
    assert adopted.exit_code == 0, adopted.output
    assert manifest_entries(target)["tel-9"]["recipient_hashes"] == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="+0123456789 ()-.x", min_size=1, max_size=24), st.sampled_from(
    ["US", "GB", "DE", "FR", "JP", "BR", "IN"]))
def test_a_region_only_adds_the_e164_form(number: str, region: str) -> None:
    """Whatever the number and the region, the setting adds at most the E.164 hash: the
    hashes taken without it (the key's among them) stay as they are."""
    without = search_hashes({"phone_number": number})
    regional = search_hashes({"phone_number": number}, region)
    assert without.items() <= regional.items()
    assert set(regional) - set(without) <= {"phone_number_e164"}
