"""`sm run` picks up config.toml changes and SIGHUP without a restart (a real daemon process)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.spool_contract.test_crash_safety import start_sm
from tests.support.fixtures.core import jsonl


def wait_until(check, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def stored(cli) -> int:
    return json.loads(cli("--json", "status").stdout)["counts"]["stored"]


def test_a_destination_connected_while_the_daemon_runs_is_archived_without_a_restart(
        cli, sm_home: Path, tmp_path: Path, make_message) -> None:
    assert cli("connect", f"file://{tmp_path}/a/", "--project", "12345").exit_code == 0
    log = tmp_path / "run.log"
    daemon = start_sm(sm_home, log, "run")
    try:
        late = make_message(message_id="for-b", project_id=67890)
        assert cli("ingest", "-", input=jsonl(make_message(), late)).exit_code == 0
        assert wait_until(lambda: stored(cli) == 1)  # project 67890 has no destination yet

        connected = cli("connect", f"file://{tmp_path}/b/", "--project", "67890")
        assert connected.exit_code == 0, connected.output
        assert f"The running sm run (pid {daemon.pid} on " in connected.stderr
        assert "picks this up within a few seconds" in connected.stderr
        assert wait_until(lambda: stored(cli) == 2)
        assert list((tmp_path / "b").rglob("for-b.json.gz"))
        assert daemon.poll() is None
        assert "configuration reloaded" in log.read_text()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)
    assert daemon.returncode == 0


def test_sighup_reloads_and_never_stops_the_daemon(
        cli, sm_home: Path, tmp_path: Path, make_message) -> None:
    assert cli("connect", f"file://{tmp_path}/a/", "--project", "12345").exit_code == 0
    log = tmp_path / "run.log"
    daemon = start_sm(sm_home, log, "run")
    try:
        assert wait_until(lambda: "started" in log.read_text())
        daemon.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "configuration reloaded" in log.read_text())
        assert daemon.poll() is None  # still running (SIGHUP's default action would end it)

        assert cli("ingest", "-", input=jsonl(make_message())).exit_code == 0
        assert wait_until(lambda: stored(cli) == 1)

        config = sm_home / "config.toml"
        good = config.read_text()
        config.write_text(good + "\nthis is [not toml\n")
        assert wait_until(lambda: "cannot be used" in log.read_text())
        assert daemon.poll() is None  # a broken file keeps the running configuration
        config.write_text(good)
        second = make_message(message_id="after-the-fix")
        assert cli("ingest", "-", input=jsonl(second)).exit_code == 0
        assert wait_until(lambda: stored(cli) == 2)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)
    assert daemon.returncode == 0


def test_reconnecting_elsewhere_warns_where_the_earlier_objects_stay(
        cli, tmp_path: Path) -> None:
    assert cli("connect", f"file://{tmp_path}/old/", "--project", "12345").exit_code == 0
    moved = cli("connect", f"file://{tmp_path}/new/", "--project", "12345")
    assert moved.exit_code == 0, moved.output
    said = " ".join(moved.stderr.split())
    assert f"Warning: objects archived before stay in file://{tmp_path}/old/" in said
    assert f"sm --home DIR connect file://{tmp_path}/old/ --project 12345 --read-only" in said
    assert "No sm run is running on this spool: start one with `sm run`." in said
