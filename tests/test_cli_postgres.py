"""The reading and repairing commands on a PostgreSQL spool, beside the same on SQLite
(issue 16: "the same contract on both: … every CLI command").

One arrangement for the module: the same input (four messages stored, one failed as a
conflict, one awaiting confirmation, one rejected line) goes through `sm ingest` and
`sm run --once` to a folder twice, once with a SQLite spool and once with a PostgreSQL one.
Each test runs one command on both homes and checks its exact outcome, and that PostgreSQL
gives what SQLite gives. The replay test changes the state, so it comes last.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.message import parse_message
from tests.support.daemon import free_port, http_get, start_run, wait_for
from tests.support.fixtures.core import jsonl
from tests.support.investigation_support import (
    Invoke,
    cli_for,
    email,
    push,
    sha256_hex,
    sms,
)
from tests.support.postgres import PostgresServer
from tests.test_export import tree
from tests.test_metrics import scrape, value

PROJECT = "12345"
STORED = [
    email("a-1", sent_at="2026-11-01T09:00:00Z"),
    email("b-2", to="bo@example.org", campaign=None, sent_at="2026-11-02T10:00:00Z"),
    sms("d-4"),
    push("e-5"),
]
CONFLICT = email("x-9", to="cy@example.net", sent_at="2026-11-03T11:00:00Z")
AWAITING = {key: value for key, value in email("w-1").items() if key != "sent_at"}
TAKEN = b"other bytes under x-9's key"  # what already sits under the conflict's key


@dataclass
class Home:
    """One SM_HOME archiving to its own folder; `cli` runs `sm` on it in-process."""

    folder: Path
    archive: Path
    cli: Invoke
    spool_url: str | None = None

    def json(self, *args: str, exit_code: int = 0) -> Any:
        """`sm --json ARGS`, expected to exit with `exit_code`; its parsed stdout."""
        result = self.cli("--json", *args)
        assert result.exit_code == exit_code, result.output
        return json.loads(result.stdout)


def make_home(folder: Path, spool_url: str | None) -> Home:
    """A home on SQLite (no URL) or on the PostgreSQL spool `spool_url`, with the input above
    archived (and the conflict's key taken beforehand)."""
    archive = folder / "archive"
    archive.mkdir(parents=True, mode=0o700)
    taken = archive / parse_message(CONFLICT).key
    taken.parent.mkdir(parents=True)
    taken.write_bytes(TAKEN)
    base = cli_for(folder / "home")
    cli = base if spool_url is None else (lambda *a, **k: base("--spool", spool_url, *a, **k))
    home = Home(folder, archive, cli, spool_url)
    assert cli("connect", f"file://{archive}/", "--project", PROJECT).exit_code == 0
    result = cli("--json", "ingest", "-",
                 input=jsonl(*STORED, CONFLICT, AWAITING) + "not json\n")
    assert result.exit_code == 1, result.output  # the one bad line
    ingested = json.loads(result.stdout)
    assert (ingested["accepted"], ingested["rejected"]) == (6, 1)
    ran = home.json("run", "--once", exit_code=1)  # a message of the pass failed
    assert (ran["stored"], ran["failed"]) == (4, 1), ran
    return home


@pytest.fixture(scope="module")
def homes(postgres_server: PostgresServer, postgres_spool_template: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Home, Home]]:
    """(SQLite home, PostgreSQL home), archived once for the whole module."""
    folder = tmp_path_factory.mktemp("cli-postgres")
    database = postgres_server.create_database(template=postgres_spool_template)
    try:
        yield (make_home(folder / "sqlite", None),
               make_home(folder / "postgresql", postgres_server.url(database)))
    finally:
        postgres_server.drop_database(database)


def stored_bytes(home: Home, message: dict[str, Any]) -> bytes:
    """The payload in the folder (gunzipped), read without sm."""
    return gzip.decompress((home.archive / parse_message(message).key).read_bytes())


# --------------------------------------------------------------------------- reading


def test_find_answers_every_filter_exactly_as_on_sqlite(homes: tuple[Home, Home]) -> None:
    sqlite, postgres = homes
    everything = postgres.json("find")
    assert [m["message_id"] for m in everything] == ["e-5", "d-4", "b-2", "a-1"]
    for found in everything:
        message = next(m for m in STORED if m["message_id"] == found["message_id"])
        assert found["key"] == parse_message(message).key
        assert found["payload_sha256"] == sha256_hex(stored_bytes(postgres, message))
    queries = {
        ("--recipient", "  Ann.Lee@EXAMPLE.com "): ["a-1"],
        ("--recipient", "u-9"): ["d-4"],
        ("--campaign", "unassociated"): ["d-4", "b-2"],
        ("--campaign", "111", "--medium", "push"): ["e-5"],
        ("--since", "2026-11-02", "--until", "2026-11-20T08:30:00.5Z"): ["d-4", "b-2"],
        ("--message-id", "x-9"): [],  # failed: never indexed
        ("--project", "777"): [],
    }
    for query, ids in queries.items():
        answer = postgres.json("find", *query)
        assert [m["message_id"] for m in answer] == ids, query
        assert answer == sqlite.json("find", *query), query
    assert everything == sqlite.json("find")


def test_fetch_gives_the_stored_bytes_and_verifies_them(homes: tuple[Home, Home],
                                                        tmp_path: Path) -> None:
    sqlite, postgres = homes
    for message in STORED:
        fetched = postgres.cli("fetch", message["message_id"], "--part", "json")
        assert fetched.exit_code == 0, fetched.output
        assert fetched.stdout_bytes == stored_bytes(postgres, message)
    html = postgres.cli("fetch", "a-1", "--part", "html", "--output", str(tmp_path / "a.html"))
    assert html.exit_code == 0, html.output
    assert (tmp_path / "a.html").read_text() == STORED[0]["content"]["html"]
    described = postgres.json("fetch", "d-4", "--output", str(tmp_path / "d.json"))
    assert described == sqlite.json("fetch", "d-4", "--output", str(tmp_path / "d2.json")) | {
        "output": str(tmp_path / "d.json")}
    unknown = postgres.cli("fetch", "x-9")
    assert unknown.exit_code == 1
    assert unknown.stderr == sqlite.cli("fetch", "x-9").stderr


def test_export_writes_the_same_bytes(homes: tuple[Home, Home], tmp_path: Path) -> None:
    sqlite, postgres = homes
    for home, out in ((sqlite, tmp_path / "sqlite"), (postgres, tmp_path / "postgresql")):
        assert home.json("export", "--format", "eml", "--output", str(out))["exported"] == 4
    exported = tree(tmp_path / "postgresql")
    assert exported == tree(tmp_path / "sqlite")
    assert sorted(exported) == ["SHA256SUMS", "exceptions.csv", "loadfile.csv", *sorted(
        name for name in exported if name.startswith("messages/"))]


def test_audit_accounts_for_every_outcome(homes: tuple[Home, Home]) -> None:
    sqlite, postgres = homes
    report = postgres.json("audit", exit_code=1)
    assert report["ok"] is False
    (project,) = report["projects"]
    assert {k: project[k] for k in ("project_id", "entries", "stored", "failed", "pending",
                                    "findings")} == {
        "project_id": PROJECT, "entries": 5, "stored": 4, "failed": 1, "pending": 0,
        "findings": [{  # the bytes that were under x-9's key before it was sent
            "type": "unexpected_object", "message_id": "x-9",
            "key": parse_message(CONFLICT).key,
            "detail": "an object in the message layout that no manifest lists"}]}
    assert same_log_apart(report) == same_log_apart(sqlite.json("audit", exit_code=1))
    assert same_log_apart(postgres.json("audit", "--deep", exit_code=1)) == same_log_apart(
        sqlite.json("audit", "--deep", exit_code=1))


def same_log_apart(report: dict[str, Any]) -> dict[str, Any]:
    """An audit's document without what names each home's own log: its origin (the folder),
    root (over entries settled at other moments) and `complete_through` (when that home
    sealed: the two homes seal moments apart, sometimes across a second); the tree's size
    stays."""
    own = ("origin", "root", "complete_through")
    return {**report, "projects": [{k: v for k, v in p.items() if k not in own}
                                   for p in report["projects"]]}


def comparable(status: dict[str, Any]) -> dict[str, Any]:
    """A status document without what differs between two homes run moments apart."""
    drop = {"oldest_unarchived_age_seconds", "recent_rejections", "destinations", "daemons"}
    return {k: v for k, v in status.items() if k not in drop}


def test_status_and_check_count_every_state(homes: tuple[Home, Home]) -> None:
    sqlite, postgres = homes
    status = postgres.json("status")
    assert status["counts"] == {"awaiting_confirmation": 1, "queued": 0, "in_flight": 0,
                                "retry_wait": 0, "stored": 4, "expired": 0, "failed": 1,
                                "discarded": 0}
    assert status["final_reasons"] == {"failed": {"conflict": 1}}
    assert status["rejected_lines"] == 1
    assert [d["health"] for d in status["destinations"]] == ["ok"]
    assert comparable(status) == comparable(sqlite.json("status"))
    check = postgres.json("status", "--check", exit_code=1)
    assert [p["kind"] for p in check["problems"]] == ["no_live_daemon", "messages_failed"]
    assert check == sqlite.json("status", "--check", exit_code=1)
    same = ("message_id", "project_id", "state", "final_reason", "attempts", "key",
            "payload_sha256", "body_in_spool")
    for message_id, state, body in (("a-1", "stored", False), ("x-9", "failed", True),
                                    ("w-1", "awaiting_confirmation", True)):
        shown = postgres.json("show", message_id)
        assert (shown["state"], shown["body_in_spool"]) == (state, body)
        assert {k: shown[k] for k in same} == {k: v for k, v in sqlite.json(
            "show", message_id).items() if k in same}


def test_index_rebuild_on_a_fresh_postgresql_spool_answers_like_the_original(
        homes: tuple[Home, Home], postgres_server: PostgresServer,
        postgres_spool_template: str, tmp_path: Path) -> None:
    _, postgres = homes
    database = postgres_server.create_database(template=postgres_spool_template)
    try:
        laptop = Home(tmp_path, postgres.archive, lambda *a, **k: cli_for(tmp_path / "home")(
            "--spool", postgres_server.url(database), *a, **k))
        assert laptop.cli("connect", f"file://{postgres.archive}/", "--project",
                          PROJECT).exit_code == 0
        assert laptop.json("find") == []
        report = laptop.json("index", "rebuild", exit_code=1)  # x-9's key holds junk
        assert [(p["project_id"], p["listed"], p["indexed"], p["failed"],
                 [f["key"] for f in p["failures"]]) for p in report["projects"]] == [
            (PROJECT, 5, 4, 1, [parse_message(CONFLICT).key])]
        assert laptop.json("find") == postgres.json("find")
        assert laptop.json("find", "--recipient", "bo@example.org") == postgres.json(
            "find", "--recipient", "bo@example.org")
    finally:
        postgres_server.drop_database(database)


def test_a_scrape_and_the_check_see_the_live_worker(homes: tuple[Home, Home],
                                                    tmp_path: Path) -> None:
    _, postgres = homes
    assert postgres.spool_url is not None
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daemon = start_run(postgres.folder / "home", tmp_path / "run.log", "--metrics-addr",
                       f"127.0.0.1:{port}", SM_SPOOL_URL=postgres.spool_url)
    try:
        wait_for(lambda: http_get(base + "/readyz")[0] == 200, what="/readyz")
        samples = scrape(base)
        status = postgres.json("status")
        for state, count in status["counts"].items():
            assert value(samples, "sm_messages", state=state) == count, state
        assert value(samples, "sm_destination_up", project=PROJECT) == 1
        check = postgres.json("status", "--check", exit_code=1)
        assert [p["kind"] for p in check["problems"]] == ["messages_failed"]
        assert [(d["pid"], d["alive"]) for d in status["daemons"]] == [(daemon.pid, True)]
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, (tmp_path / "run.log").read_text()[-2000:]


# --------------------------------------------------------------------------- repairing


def test_replay_stores_the_failed_message_once_its_key_is_free(homes: tuple[Home, Home]
                                                               ) -> None:
    for home in homes:
        os.unlink(home.archive / parse_message(CONFLICT).key)
        replayed = home.json("replay", "--failed")
        assert (replayed["stored"], replayed["still_failing"]) == (1, 0), replayed
        assert stored_bytes(home, CONFLICT) == parse_message(CONFLICT).payload()
        assert [m["message_id"] for m in home.json("find", "--message-id", "x-9")] == ["x-9"]
        assert home.json("status")["counts"]["failed"] == 0
