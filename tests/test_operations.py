"""The operator surface of `sm run` (issue 12): heartbeats and `sm status` daemons,
`sm status --check`, JSON log lines, sd_notify."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest

from stored_messages_cli import Spool, __version__
from stored_messages_cli.clock import FakeClock
from stored_messages_cli.config.projects import ProjectDestination
from stored_messages_cli.config.writer import save_projects
from stored_messages_cli.ops.logs import KNOWN_EVENTS, JsonLogFormatter, event_of
from stored_messages_cli.spool.daemons import Daemons
from stored_messages_cli.states import HealthState
from tests.support.daemon import PROJECT, prepare_home, record, sm, sms, start_run, wait_for
from tests.support.fixtures.core import EMAIL_MESSAGE
from tests.support.spool_db import raw_connection
from tests.support.spool_db import rows as committed_rows

TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
SOURCE = Path(__file__).parent.parent / "stored_messages_cli"


def status(home: Path) -> dict:
    result = sm(home, "--json", "status")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def check(cli, *args: str) -> tuple[int, list[str]]:
    """`sm --json status --check ARGS` (in process): exit code and the problem kinds."""
    result = cli("--json", "status", "--check", *args)
    return result.exit_code, [p["kind"] for p in json.loads(result.stdout)["problems"]]


def stored(home: Path) -> int:
    conn = sqlite3.connect(home / "spool.db", timeout=30)
    try:
        return conn.execute("SELECT COUNT(*) FROM messages WHERE state = 'stored'").fetchone()[0]
    finally:
        conn.close()


# --------------------------------------------------------------------------- liveness


def test_status_shows_the_live_daemon_then_a_dead_one_after_kill_9(tmp_path: Path) -> None:
    home, archive = tmp_path / "home", tmp_path / "archive"
    prepare_home(home, archive, 4)
    daemon = start_run(home, tmp_path / "run.log")
    try:
        wait_for(lambda: stored(home) == 4, what="4 stored")
        live = status(home)
        (entry,) = live["daemons"]
        assert (entry["host"], entry["pid"], entry["version"], entry["alive"],
                entry["in_flight"]) == (socket.gethostname(), daemon.pid, __version__, True, 0)
        assert RFC3339.fullmatch(entry["started_at"])
        assert RFC3339.fullmatch(entry["last_heartbeat"])
        assert live["in_flight_held_by_dead_daemon"] == 0
        ok = sm(home, "status", "--check")
        assert (ok.returncode, ok.stdout) == (0, "ok: 1 live daemon(s), oldest unarchived -\n")
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=30)

    # What it held in flight when it died (claimed under its lease name, as it would).
    record(home, 2, prefix="held")
    with Spool.open(home=home) as spool:
        (owner,) = spool.conn.execute("SELECT lease_owner FROM daemons").fetchone()
        assert owner.startswith(f"{socket.gethostname()}:{daemon.pid}:")
        assert len(spool.queue.claim(owner, PROJECT, 2, lease_seconds=300)) == 2

    dead = status(home)
    (entry,) = dead["daemons"]
    assert (entry["pid"], entry["alive"], entry["in_flight"]) == (daemon.pid, False, 2)
    assert dead["counts"]["in_flight"] == 2
    assert dead["in_flight_held_by_dead_daemon"] == 2
    result = sm(home, "status", "--check")
    assert result.returncode == 1
    assert result.stdout == (f"no_live_daemon: no live sm run (1 dead, last heartbeat "
                             f"{entry['last_heartbeat']}); 2 in-flight message(s) held by a dead"
                             " daemon\n")
    human = sm(home, "status").stdout
    assert "NO (dead)" in human
    assert "In flight 2: held by a dead daemon" in human

    # The next run retires the dead one, takes its messages back and stores them.
    again = sm(home, "run", "--once")
    assert again.returncode == 0, again.stderr
    after = status(home)
    assert after["daemons"] == []  # both stopped: the dead one marked, the new one exited
    assert (after["counts"]["stored"], after["counts"]["in_flight"]) == (6, 0)
    with Spool.open(home=home) as spool:
        rows = spool.conn.execute("SELECT pid, stopped_at IS NOT NULL FROM daemons"
                                  " ORDER BY id").fetchall()
    assert rows[0] == (daemon.pid, 1) and len(rows) == 2 and rows[1][1] == 1


def test_check_exits_1_for_each_problem_kind_and_0_when_healthy(
        cli, sm_home: Path, tmp_path: Path) -> None:
    home, archive = sm_home, tmp_path / "archive"
    prepare_home(home, archive, 0)
    assert check(cli) == (1, ["no_live_daemon"])

    with Spool.open(home=home) as spool:  # a live daemon: this very process
        daemons = Daemons(spool)
        daemons.register(version="test", lease_owner="x:1:y", pid=os.getpid())
    assert check(cli) == (0, [])

    # A backlog two hours old.
    with Spool.open(home=home, clock=FakeClock(time.time() - 7200)) as spool:
        spool.record(sms(0, prefix="old"))
    assert check(cli) == (1, ["oldest_unarchived_too_old"])  # default --max-age 1h
    assert check(cli, "--max-age", "3h") == (0, [])
    assert check(cli, "--max-age", "90m") == (1, ["oldest_unarchived_too_old"])

    with Spool.open(home=home) as spool:
        spool.health.set(PROJECT, f"file://{archive}/", HealthState.UNREACHABLE,
                         next_probe_at=time.time() + 600, last_error="ConnectionRefused")
    assert check(cli, "--max-age", "3h") == (1, ["destination_unreachable"])
    with Spool.open(home=home) as spool:
        spool.health.set(PROJECT, f"file://{archive}/", HealthState.RATE_LIMITED)
    assert check(cli, "--max-age", "3h") == (0, [])  # throttled is not down

    record(home, 2, prefix="final")
    with Spool.open(home=home) as spool, spool.lock:
        spool.conn.execute("UPDATE messages SET state = 'expired',"
                           " final_reason = 'expired_unreachable' WHERE message_id = 'final-0'")
        spool.conn.execute("UPDATE messages SET state = 'failed', final_reason = 'conflict'"
                           " WHERE message_id = 'final-1'")
    assert check(cli, "--max-age", "3h") == (1, ["messages_expired", "messages_failed"])
    human = cli("status", "--check", "--max-age", "3h")
    assert (human.exit_code, human.stdout.splitlines()) == (1, [
        "messages_expired: 1 message(s) expired (expired_unreachable 1); see sm replay --expired",
        "messages_failed: 1 message(s) failed (conflict 1); see sm replay --failed"])

    assert cli("status", "--check", "--max-age", "soon").exit_code == 2


def test_status_counts_discarded_messages_by_reason(cli, sm_home: Path, tmp_path: Path) -> None:
    prepare_home(sm_home, tmp_path / "archive", 0)
    save_projects(sm_home / "config.toml", {PROJECT: ProjectDestination(
        url=f"file://{tmp_path / 'archive'}/", mediums=["sms"])})
    pending = [{k: v for k, v in sms(i).items() if k != "sent_at"} for i in range(3)]
    with Spool.open(home=sm_home) as spool:
        spool.record_many(pending)
        spool.record_send_failure(PROJECT, "m-0", reason="hard bounce")
        spool.record_send_failure(PROJECT, "m-1", reason="hard bounce")
        assert spool.record(EMAIL_MESSAGE) == "discarded"
    doc = json.loads(cli("--json", "status").stdout)
    assert doc["discarded_by_reason"] == {"medium_not_archived": 1, "send_failed": 2}
    assert "Discarded: medium_not_archived 1, send_failed 2" in cli("status").stdout


# --------------------------------------------------------------------------- logs


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_log_lines_carry_ts_level_event_and_the_start_and_stop_lines(
        tmp_path: Path) -> None:
    home, archive = tmp_path / "home", tmp_path / "archive"
    prepare_home(home, archive, 3)
    result = sm(home, "--log-format", "json", "run", "--once", "--concurrency", "2")
    assert result.returncode == 0, result.stderr
    lines = json_lines(result.stderr)
    for line in lines:
        assert TS.fullmatch(line["ts"]), line
        assert line["level"] in ("debug", "info", "warning", "error")
        assert re.fullmatch(r"[a-z_]+", line["event"]), line
    events = {line["event"]: line for line in lines}
    started = events["daemon_started"]
    assert {k: started[k] for k in ("level", "version", "projects", "destinations",
                                    "concurrency", "once", "metrics_addr", "pid")} == {
        "level": "info", "version": __version__, "projects": [PROJECT],
        "destinations": [{"project_id": PROJECT, "destination": f"file://{archive}/"}],
        "concurrency": 2, "once": True, "metrics_addr": None, "pid": started["pid"]}
    assert started["spool"] == str(home / "spool.db")
    stopped = events["daemon_stopped"]
    assert (stopped["level"], stopped["stored"], stopped["failed"], stopped["expired"]) == (
        "info", 3, 0, 0)
    names = [line["event"] for line in lines]
    assert names.index("daemon_started") < names.index("daemon_stopped")
    assert "+15555550100" not in result.stderr  # never a raw address


def test_sigterm_logs_daemon_stopping_at_info(tmp_path: Path) -> None:
    home, archive = tmp_path / "home", tmp_path / "archive"
    prepare_home(home, archive, 1)
    log = tmp_path / "run.log"
    daemon = start_run(home, log)
    wait_for(lambda: stored(home) == 1, what="stored")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    lines = json_lines(log.read_text())
    stopping = [line for line in lines if line["event"] == "daemon_stopping"]
    assert [(line["level"], line["signal"]) for line in stopping] == [("info", "SIGTERM")]
    assert [line["event"] for line in lines].count("daemon_stopped") == 1


def test_older_log_calls_get_their_event_and_fields() -> None:
    template = ("destination %s of project %s is unreachable (%s); its messages wait, next probe"
                " at %s")
    record = logging.LogRecord("sm.archiver", logging.ERROR, __file__, 1, template,
                               ("s3://b/", "12345", "AccessDenied / HTTP 403",
                                "2026-11-27T17:00:00Z"), None)
    assert event_of(record) == ("destination_unreachable", {
        "destination": "s3://b/", "project_id": "12345", "error": "AccessDenied / HTTP 403"})
    line = json.loads(JsonLogFormatter().format(record))
    assert (line["level"], line["event"], line["project_id"]) == (
        "error", "destination_unreachable", "12345")
    plain = logging.LogRecord("sm.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    assert json.loads(JsonLogFormatter().format(plain))["event"] == "log"


def test_every_known_log_template_still_exists_in_the_code() -> None:
    code = "".join(p.read_text() for p in SOURCE.rglob("*.py") if p.name != "logs.py")
    flat = re.sub(r'"\s*\n\s*"', "", code)  # join implicitly concatenated string literals
    flat = re.sub(r'"\s+"', "", flat)
    missing = [t for t in KNOWN_EVENTS if t not in flat]
    assert missing == [], "rename in stored_messages_cli/logs.py KNOWN_EVENTS too"


# --------------------------------------------------------------------------- sd_notify


@pytest.fixture
def notify_socket():
    folder = tempfile.mkdtemp(prefix="sm-notify-", dir="/tmp")  # short: AF_UNIX path limit
    path = os.path.join(folder, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(folder)


def test_sd_notify_ready_watchdog_status_stopping_arrive_in_order(
        tmp_path: Path, notify_socket) -> None:
    sock, path = notify_socket
    home, archive = tmp_path / "home", tmp_path / "archive"
    prepare_home(home, archive, 3)
    daemon = start_run(home, tmp_path / "run.log", NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    received: list[str] = []
    try:
        received.append(sock.recv(4096).decode())
        wait_for(lambda: stored(home) == 3, what="3 stored")
        while received.count("WATCHDOG=1") < 3:  # every 0.2 s while the loop turns
            received.append(sock.recv(4096).decode())
    finally:
        daemon.send_signal(signal.SIGTERM)
    while received[-1] != "STOPPING=1":
        received.append(sock.recv(4096).decode())
    assert daemon.wait(timeout=30) == 0
    assert received[0] == "READY=1\nSTATUS=archiving: 3 queued, 0 in flight, 0 retry_wait"
    assert received[1] == "WATCHDOG=1"
    assert set(received[1:-1]) <= {"WATCHDOG=1"} | {
        f"STATUS=archiving: {n} queued, {f} in flight, 0 retry_wait"
        for n in range(4) for f in range(4)}
    assert received[-1] == "STOPPING=1"
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        sock.recv(4096)  # nothing after STOPPING=1


def test_no_watchdog_for_another_process(tmp_path: Path, notify_socket) -> None:
    sock, path = notify_socket
    home, archive = tmp_path / "home", tmp_path / "archive"
    prepare_home(home, archive, 0)
    result = sm(home, "run", "--once", NOTIFY_SOCKET=path, WATCHDOG_USEC="100000",
                WATCHDOG_PID="1")
    assert result.returncode == 0, result.stderr
    sock.settimeout(1)
    got = [sock.recv(4096).decode(), sock.recv(4096).decode()]
    assert got == ["READY=1\nSTATUS=archiving: 0 queued, 0 in flight, 0 retry_wait",
                   "STOPPING=1"]


# --------------------------------------------------------------------------- spool upkeep

DAY = 86400.0


def rows(spool: Spool, sql: str) -> list[tuple]:
    if spool.is_postgres:
        return committed_rows(spool, sql)
    with spool.lock:
        return spool.conn.execute(sql).fetchall()


def execute(spool: Spool, sql: str) -> None:
    """Run one statement on the spool's database, committed (no transaction of the spool's)."""
    if not spool.is_postgres:
        with spool.lock:
            spool.conn.execute(sql)
        return
    conn = raw_connection(spool)  # autocommits
    try:
        conn.execute(sql)
    finally:
        conn.close()


@pytest.mark.usefixtures("spool_backend")
def test_prune_never_touches_unsettled_rows_final_failures_or_index_rows(
        cli, sm_home: Path, tmp_path: Path) -> None:
    from stored_messages_cli.spool import Failed, Retry, Stored
    from stored_messages_cli.spool.maintenance import prune
    from stored_messages_cli.states import FinalReason, RetryClass

    prepare_home(sm_home, tmp_path / "archive", 0)
    clock = FakeClock(1_800_000_000.0)
    with Spool.open(home=sm_home, clock=clock) as spool:
        spool.record_many([sms(i, "old") for i in range(6)])
        claimed = spool.queue.claim("me", PROJECT, 5, lease_seconds=60)
        ids = [m.row_id for m in claimed]
        spool.queue.settle("me", [
            Stored(ids[0], "sms/k0", "file:///a/"), Stored(ids[1], "sms/k1", "file:///a/"),
            Failed(ids[2], FinalReason.CONFLICT, "other bytes"),
            Retry(ids[3], RetryClass.UNREACHABLE, clock.now() + DAY, "refused")])
        spool.queue.release("me", [ids[4]])  # queued again; old-5 never claimed
        spool.record({k: v for k, v in sms(0, "bounced").items() if k != "sent_at"})
        spool.record_send_failure(PROJECT, "bounced-0", reason="hard bounce")
        spool.record({k: v for k, v in sms(0, "unsent").items() if k != "sent_at"})
        clock.advance(1)
        spool.intake.discard_unconfirmed(0.0)  # never confirmed
        spool.ingest_lines(["not json\n"], source="bad.jsonl")
        spool.record({k: v for k, v in sms(0, "waiting").items() if k != "sent_at"})
        clock.advance(31 * DAY)
        spool.record(sms(0, "new"))  # recent: stays
        index_before = rows(spool, "SELECT * FROM archive_index ORDER BY message_id")
        assert len(index_before) == 2

        assert prune(spool, 30 * DAY, dry_run=True).as_dict() == {
            "stored": 0, "discarded": 2, "rejected_lines": 1, "daemons": 0}  # entries open
        # the manifest segment is sealed: its entries leave the open table
        execute(spool, "DELETE FROM manifest_entries")
        report = prune(spool, 30 * DAY)
        assert report.as_dict() == {"stored": 2, "discarded": 2, "rejected_lines": 1,
                                    "daemons": 0}
        left = dict(rows(spool, "SELECT message_id, state FROM messages"))
        assert left == {"old-2": "failed", "old-3": "retry_wait", "old-4": "queued",
                        "old-5": "queued", "waiting-0": "awaiting_confirmation",
                        "new-0": "queued"}
        assert rows(spool, "SELECT * FROM archive_index ORDER BY message_id") == index_before
        assert rows(spool, "SELECT COUNT(*) FROM rejected") == [(0,)]
        assert prune(spool, 30 * DAY).as_dict() == dict.fromkeys(
            ("stored", "discarded", "rejected_lines", "daemons"), 0)

        # A never-confirmed message keeps its row for the grace period (a late `sent` revives
        # it), whatever --older-than says; a failed send does not wait.
        spool.record({k: v for k, v in sms(0, "late").items() if k != "sent_at"})
        spool.record({k: v for k, v in sms(1, "late").items() if k != "sent_at"})
        spool.record_send_failure(PROJECT, "late-1", reason="hard bounce")
        clock.advance(1)
        spool.intake.discard_unconfirmed(0.0)
        clock.advance(3 * DAY)
        assert prune(spool, DAY).discarded == 1
        assert spool.message_state(PROJECT, "late-0")["state"] == "discarded"
        assert spool.message_state(PROJECT, "late-1") is None
        clock.advance(5 * DAY)
        assert prune(spool, DAY).discarded == 2  # late-0, and waiting-0 discarded with it

    result = cli("--json", "spool", "prune", "--older-than", "1d", "--dry-run")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dry_run"] is True
    assert cli("spool", "prune", "--older-than", "0").exit_code == 2


def test_backup_taken_while_writing_opens_as_a_consistent_spool(
        cli, sm_home: Path, tmp_path: Path) -> None:
    import threading

    prepare_home(sm_home, tmp_path / "archive", 0)
    stop = threading.Event()
    batches = []

    def write() -> None:
        with Spool.open(home=sm_home) as writer:
            n = 0
            while not stop.is_set():
                writer.record_many([sms(i, f"b{n}") for i in range(50)])  # one transaction
                batches.append(n)
                n += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        wait_for(lambda: len(batches) >= 3, what="writes")
        copies = [tmp_path / "backups" / f"spool-{i}.db" for i in range(3)]
        for copy in copies:
            result = cli("--json", "spool", "backup", str(copy))
            assert result.exit_code == 0, result.output
    finally:
        stop.set()
        thread.join(timeout=30)
    for copy in copies:
        assert copy.stat().st_mode & 0o777 == 0o600
        with Spool(copy) as restored:
            count = rows(restored, "SELECT COUNT(*) FROM messages")[0][0]
            assert count > 0 and count % 50 == 0  # whole transactions only
            assert rows(restored, "PRAGMA integrity_check") == [("ok",)]
            assert rows(restored, "SELECT COUNT(DISTINCT message_id) FROM messages") == [
                (count,)]
    again = cli("spool", "backup", str(copies[0]))
    assert again.exit_code == 1 and "already exists" in again.stderr
    assert cli("spool", "backup", str(copies[0]), "--force").exit_code == 0


def test_vacuum_gives_the_pruned_pages_back(cli, sm_home: Path, tmp_path: Path) -> None:
    prepare_home(sm_home, tmp_path / "archive", 0)
    with Spool.open(home=sm_home) as spool:
        spool.ingest_lines([f"not json {'x' * 500} {i}\n" for i in range(2000)], source="junk")
        with spool.lock:
            spool.conn.execute("DELETE FROM rejected")
    result = cli("--json", "spool", "vacuum")
    assert result.exit_code == 0, result.output
    sizes = json.loads(result.stdout)
    assert sizes["bytes_after"] < sizes["bytes_before"] - 500_000


@pytest.mark.parametrize("spool_backend", ["postgresql"], indirect=True)
def test_on_postgresql_vacuum_analyzes_the_spool_tables_and_backup_names_pg_dump(
        cli, sm_home: Path, tmp_path: Path, spool_backend: str) -> None:
    from stored_messages_cli.spool.maintenance import PG_TABLES

    prepare_home(sm_home, tmp_path / "archive", 0)
    with Spool.open(home=sm_home) as spool:
        spool.ingest_lines([f"not json {'x' * 500} {i}\n" for i in range(2000)], source="junk")
        tables = {r[0] for r in rows(spool, "SELECT tablename FROM pg_tables"
                                            " WHERE schemaname = current_schema()")}
        assert tables == set(PG_TABLES)  # a new table of the spool belongs in PG_TABLES
        execute(spool, "DELETE FROM rejected")
    result = cli("--json", "spool", "vacuum")
    assert result.exit_code == 0, result.output
    sizes = json.loads(result.stdout)
    # a plain VACUUM keeps the freed space for reuse and may add each table's free space and
    # visibility maps (a few pages), so the size after can exceed the size before: only
    # VACUUM FULL shrinks, and sm never runs it. That it ran is what pg_stat shows below.
    assert sizes["bytes_before"] > 0 and sizes["bytes_after"] > 0
    with Spool.open(home=sm_home) as spool:
        vacuumed = dict(rows(spool, "SELECT relname, last_vacuum IS NOT NULL AND"
                                    " last_analyze IS NOT NULL FROM pg_stat_user_tables"))
    assert vacuumed == dict.fromkeys(PG_TABLES, True)

    target = tmp_path / "backups" / "spool.dump"
    backup = cli("spool", "backup", str(target))
    assert backup.exit_code == 1
    url = os.environ["SM_SPOOL_URL"]
    assert backup.stderr.splitlines() == [
        f"Error: sm spool backup copies a spool.db file; this spool is the PostgreSQL database"
        f" {url}: back it up with the database",
        f"Try: pg_dump --format=custom --file={target} --dbname={url}  (or your managed"
        " service's snapshots; restore with pg_restore)"]
    assert not target.parent.exists()
