"""Broken disks and files give one-line errors and lose nothing (a real SQLite, real files)."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.message import gzip_body, parse_message
from stored_messages_cli.spool import Spool
from stored_messages_cli.spool.bodies import payload_of
from stored_messages_cli.spool.db import spool_error
from stored_messages_cli.spool.store import SpoolFull
from tests.spool_contract.test_crash_safety import start_sm
from tests.support.fixtures.core import connected_folder, jsonl


def one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Error: ") and fragment in lines[0], result.stderr
    assert len(lines) == 2 and lines[1].startswith("Try: "), result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_a_corrupt_spool_is_one_error_line(cli, sm_home: Path) -> None:
    sm_home.mkdir(parents=True, mode=0o700)
    (sm_home / "spool.db").write_bytes(b"this is not a database, it is a grocery list\n" * 200)
    one_line_error(cli("status"), "is not a readable spool")


def test_a_truncated_spool_is_one_error_line(cli, sm_home: Path, make_message) -> None:
    assert cli("ingest", "-", input=jsonl(*[make_message(message_id=f"m{n}")
                                            for n in range(300)])).exit_code == 0
    path = sm_home / "spool.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    one_line_error(cli("status"), "is not a readable spool")


def test_a_zero_length_spool_is_a_new_empty_one(cli, sm_home: Path) -> None:
    sm_home.mkdir(parents=True, mode=0o700)
    (sm_home / "spool.db").write_bytes(b"")
    result = cli("--json", "status")
    assert result.exit_code == 0, result.output


def test_sqlite_read_only_and_full_errors_read_as_next_steps(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    Spool(path).close()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as raised:
        conn.execute("INSERT INTO rejected (source, line) VALUES ('x', 1)")
    error = spool_error(raised.value, path)
    assert str(error) == f"{path} is read-only for this user"
    assert error.hint == f"check the permissions of {tmp_path} (SM_HOME)"


def test_run_waits_while_the_disk_is_full_and_loses_nothing(
        spool: Spool, make_message, tmp_path: Path, caplog) -> None:
    ids = [f"m{n:03d}" for n in range(40)]
    spool.record_many([make_message(message_id=i) for i in ids])
    with spool.lock:  # the disk is full: the file may not grow by one page
        pages = spool.conn.execute("PRAGMA page_count").fetchone()[0]
        spool.conn.execute(f"PRAGMA max_page_count = {pages}")
    stop = threading.Event()
    archiver = Archiver(spool, [ProjectTarget("12345", connected_folder(f"file://{tmp_path}/a/"))],
                        stop=stop, poll_interval=0.05)
    archiver.disk_full_wait = 0.1
    worker = threading.Thread(target=archiver.run)
    with caplog.at_level(logging.ERROR, logger="sm.archiver"):
        worker.start()
        deadline = time.monotonic() + 20
        while "is full" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "is full" in caplog.text
        assert worker.is_alive()  # it waits; it does not die
        with spool.lock:  # room again
            spool.conn.execute("PRAGMA max_page_count = 1073741823")
        while spool.status()["counts"]["stored"] < len(ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        worker.join(timeout=20)
    assert spool.status()["counts"]["stored"] == len(ids)
    assert sorted(p.name for p in (tmp_path / "a").rglob("*.json.gz")) == [
        f"{i}.json.gz" for i in ids]


def test_a_spool_deleted_under_the_daemon_stops_it_with_an_error(
        cli, sm_home: Path, tmp_path: Path) -> None:
    assert cli("connect", f"file://{tmp_path}/a/", "--project", "12345").exit_code == 0
    log = tmp_path / "run.log"
    daemon = start_sm(sm_home, log, "run")
    deadline = time.monotonic() + 20
    while "started" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{sm_home / 'spool.db'}{suffix}").unlink(missing_ok=True)
    daemon.communicate(timeout=30)
    assert daemon.returncode == 1
    assert "spool.db was deleted while this process had it open" in log.read_text()



def kept_body(spool: Spool, message_id: str) -> bytes:
    return bytes(spool.conn.execute(
        "SELECT payload FROM message_bodies WHERE id = (SELECT id FROM messages"
        " WHERE message_id = ?)", (message_id,)).fetchone()[0])


def keep_body(spool: Spool, message_id: str, body: bytes) -> None:
    spool.conn.execute("UPDATE message_bodies SET payload = ? WHERE id = (SELECT id FROM"
                       " messages WHERE message_id = ?)", (body, message_id))


def test_a_payload_altered_in_the_spool_is_never_uploaded(
        spool: Spool, make_message, tmp_path: Path) -> None:
    """Bit rot in a kept body, in the compressed stream, in its gzip header, or in a plain
    body an earlier sm kept: that message fails as corrupt, the others are archived with the
    exact bytes (an earlier sm's plain body compressed at upload)."""
    names = ("rotten", "rotten-header", "legacy-rotten", "legacy-sound", "sound")
    for name in names:
        spool.record(make_message(message_id=name))
    with spool.lock:  # one byte of a kept body changes under the spool
        body = kept_body(spool, "rotten")
        middle = len(body) // 2
        keep_body(spool, "rotten", body[:middle] + bytes([body[middle] ^ 0x01])
                  + body[middle + 1:])
        body = kept_body(spool, "rotten-header")
        keep_body(spool, "rotten-header", body[:4] + b"\x01" + body[5:])  # mtime no longer 0
        for name in ("legacy-rotten", "legacy-sound"):  # plain payloads, as before gzip
            keep_body(spool, name, payload_of(kept_body(spool, name)))
        keep_body(spool, "legacy-rotten",
                  kept_body(spool, "legacy-rotten").replace(b"shipped", b"shippe!"))
    report = Archiver(spool, [ProjectTarget("12345", connected_folder(
        f"file://{tmp_path}/a/"))]).run(once=True)
    assert (report.stored, report.failed) == (3, 2)
    for name in ("rotten", "legacy-rotten"):
        row = spool.message_state("12345", name)
        assert (row["state"], row["final_reason"]) == ("failed", "corrupt_in_spool")
    # A header changed (here the mtime) is not the gzip ingest made: the upload makes it again.
    for name in ("rotten-header", "legacy-sound", "sound"):
        (path,) = (tmp_path / "a").rglob(f"{name}.json.gz")
        expected = gzip_body(parse_message(make_message(message_id=name)).payload())
        assert path.read_bytes() == expected
    assert sorted(p.name for p in (tmp_path / "a").rglob("*.json.gz")) == sorted(
        f"{n}.json.gz" for n in ("rotten-header", "legacy-sound", "sound"))


def test_a_body_lost_from_the_spool_fails_its_message_and_nothing_else(
        spool: Spool, make_message, tmp_path: Path) -> None:
    spool.record(make_message(message_id="lost"))
    spool.record(make_message(message_id="sound"))
    with spool.lock:  # a queued message whose body row is gone (a hand-edited spool)
        spool.conn.execute("DELETE FROM message_bodies WHERE id = (SELECT id FROM messages"
                           " WHERE message_id = 'lost')")
    report = Archiver(spool, [ProjectTarget("12345", connected_folder(
        f"file://{tmp_path}/a/"))]).run(once=True)
    assert (report.stored, report.failed) == (1, 1)
    row = spool.message_state("12345", "lost")
    assert (row["state"], row["final_reason"]) == ("failed", "corrupt_in_spool")
    assert not list((tmp_path / "a").rglob("lost.json.gz"))
    assert "no longer matches the hash recorded at ingest" in row["last_error"]
    assert [p.name for p in (tmp_path / "a").rglob("*.json.gz")] == ["sound.json.gz"]


def test_ingest_on_a_full_disk_says_how_many_lines_were_committed(
        spool: Spool, make_message) -> None:
    def lines():
        for n in range(1, 1501):
            if n == 1001:  # two batches of 500 are in: now the file may not grow by a page
                with spool.lock:
                    pages = spool.conn.execute("PRAGMA page_count").fetchone()[0]
                    spool.conn.execute(f"PRAGMA max_page_count = {pages}")
            yield jsonl(make_message(message_id=f"m{n:04d}"))

    with pytest.raises(SpoolFull) as raised:
        spool.ingest_lines(lines(), source="sent.jsonl")
    message = str(raised.value)
    assert "nothing was written" not in message
    assert message.endswith(": sent.jsonl was committed up to line 1000 (1000 line(s): accepted"
                            " 1000, duplicate 0, rejected 0); line 1001 on was not written")
    assert raised.value.hint is not None and "sm spool prune" in raised.value.hint
    with spool.lock:
        spool.conn.execute("PRAGMA max_page_count = 1073741823")
    assert spool.status()["counts"]["queued"] == 1000
