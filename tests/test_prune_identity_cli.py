"""The attack on `sm spool prune` (SPEC 9.2), end to end through the CLI on a folder.

Once a stored message's row is pruned, re-ingesting its id with other content used to be
accepted and archived under a second key; `find` by the original recipient then found
nothing and `fetch` served the new text. Now: ingest → run → prune → the same file again
is all `duplicate`; one id with other content is rejected naming the stored copy, and the
bucket's files stay exactly as they were. Runs on both spool backends.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from stored_messages_cli.clock import SystemClock
from stored_messages_cli.message import parse_message
from tests.support.fixtures.core import jsonl
from tests.support.investigation_support import build_target, connect, email

pytestmark = pytest.mark.usefixtures("spool_backend")

ORIGINALS = [email(f"mail-{n}", to=f"Person{n}@Example.com") for n in range(4)]


def bucket(root: Path) -> dict[str, bytes]:
    """Every file in the folder destination, by its path (manifests and checkpoints too)."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def ingested(cli, path: Path) -> dict:
    result = cli("--json", "ingest", str(path))
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def test_a_pruned_message_cannot_be_replaced_through_ingest(cli, tmp_path: Path) -> None:
    target = build_target("file", tmp_path)
    assert target.root is not None
    target.root.mkdir(mode=0o700)
    connect(cli, target)
    sent = tmp_path / "sent.jsonl"
    sent.write_text(jsonl(*ORIGINALS))
    assert ingested(cli, sent)["accepted"] == 4
    ran = cli("--json", "run", "--once")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["stored"] == 4
    with pytest.MonkeyPatch.context() as later:  # 1.1 s on, without waiting for it:
        later.setattr(SystemClock, "now", lambda self: time.time() + 1.1)  # rows old enough
        pruned = cli("--json", "spool", "prune", "--older-than", "1s")
    assert pruned.exit_code == 0, pruned.output
    assert json.loads(pruned.stdout)["stored"] == 4
    archived = bucket(target.root)
    key = parse_message(ORIGINALS[0]).key

    # The same file again: nothing new (docs/format.md: a duplicate is a no-op).
    again = ingested(cli, sent)
    assert {k: again[k] for k in ("accepted", "duplicate", "rejected")} == {
        "accepted": 0, "duplicate": 4, "rejected": 0}

    # One id with other content: rejected, naming the stored copy.
    forged = email("mail-0", to="mallory@evil.example", text="Pay here", html="<p>Pay</p>")
    attack = tmp_path / "attack.jsonl"
    attack.write_text(jsonl(forged))
    refused = ingested(cli, attack)
    assert (refused["accepted"], refused["duplicate"], refused["rejected"]) == (0, 0, 1)
    reason = refused["errors"][0]["reason"]
    assert reason.startswith(f"conflict: message mail-0 of project 12345 was stored at {key}"
                             f" (payload_sha256 {parse_message(ORIGINALS[0]).payload_sha})")
    ran = cli("--json", "run", "--once")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["stored"] == 0
    objects = {name for name in bucket(target.root) if not name.startswith("_sm/")}
    assert objects == {name for name in archived if not name.startswith("_sm/")}
    assert {name: data for name, data in bucket(target.root).items() if name in objects} == {
        name: data for name, data in archived.items() if name in objects}

    # The investigators still see the original.
    found = cli("--json", "find", "--recipient", "person0@example.com")
    assert found.exit_code == 0, found.output
    assert [(m["message_id"], m["key"]) for m in json.loads(found.stdout)] == [("mail-0", key)]
    shown = cli("--json", "show", "mail-0")
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.stdout)
    assert {k: record[k] for k in ("state", "key", "payload_sha256", "body_in_spool")} == {
        "state": "stored", "key": key,
        "payload_sha256": parse_message(ORIGINALS[0]).payload_sha, "body_in_spool": False}
    fetched = cli("fetch", "mail-0", "--part", "json")
    assert fetched.exit_code == 0, fetched.output
    assert fetched.stdout_bytes == gzip.decompress(archived[key])
    assert b"mallory" not in fetched.stdout_bytes
