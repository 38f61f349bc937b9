"""Intake never depends on a valid config.toml (SPEC 9.2).

One misplaced key must not stop a sender: `sm ingest` and `Spool.record` record with the last
good configuration (or, with none yet, the defaults: every message kept), while `sm status`,
`--check`, `/readyz` and the `sm_config_valid` gauge show the problem. A reload applies every
changed setting it can and names the others as needing a restart.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from stored_messages_cli import Spool
from stored_messages_cli.config.last_good import LAST_GOOD_FILE
from tests.support.daemon import (
    PROJECT,
    free_port,
    http_get,
    prepare_home,
    sm,
    sm_env,
    sms,
    start_run,
    wait_for,
)
from tests.support.fixtures.core import jsonl

TYPO = 'retry_intervall = "8h"\n'  # one misplaced key (retry_interval)


def ingest(home: Path, text: str) -> subprocess.CompletedProcess[str]:
    """`sm ingest -` with `text` on standard input, as a sender runs it."""
    return subprocess.run([sys.executable, "-m", "stored_messages_cli.cli.app", "ingest", "-"],
                          input=text, env=sm_env(home), capture_output=True, text=True,
                          timeout=60)


def break_config(home: Path) -> str:
    """Put the typo at the top of config.toml; return the good text."""
    config = home / "config.toml"
    good = config.read_text()
    config.write_text(TYPO + good)
    return good


def states(home: Path) -> dict[str, str]:
    with Spool.open(home=home) as spool:
        return {m: spool.message_state(PROJECT, m)["state"] for m in
                ("sender-1", "sender-2", "api-1")}


def test_with_no_good_config_yet_senders_record_every_message_with_the_defaults(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text(TYPO + f'[projects."{PROJECT}"]\nurl = "file:///x/"\n'
                                      'mediums = ["email"]\n')
    result = ingest(home, jsonl(sms(1, "sender")))
    assert result.returncode == 0, result.stderr
    assert "accepted 1" in result.stdout
    assert "Warning: config.toml is not valid" in result.stderr
    assert "retry_intervall" in result.stderr and "the defaults" in result.stderr
    with Spool.open(home=home) as spool:  # the Python API of a sender, in process
        assert str(spool.record(sms(1, "api"))) == "accepted"
        # the defaults archive every medium: nothing is discarded for want of a config
        assert spool.message_state(PROJECT, "sender-1")["state"] == "queued"
        assert spool.message_state(PROJECT, "api-1")["state"] == "queued"
    assert not (home / LAST_GOOD_FILE).exists()  # a broken file is never kept as "good"


def test_senders_keep_the_last_good_configuration(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text(f'[projects."{PROJECT}"]\nurl = "file:///x/"\n'
                                      'mediums = ["email"]\n')
    assert ingest(home, jsonl(sms(1, "sender"))).returncode == 0
    kept = home / LAST_GOOD_FILE
    assert kept.read_text() == (home / "config.toml").read_text()
    assert kept.stat().st_mode & 0o777 == 0o600
    break_config(home)
    result = ingest(home, jsonl(sms(2, "sender")))
    assert result.returncode == 0, result.stderr
    assert "the last good configuration" in result.stderr
    with Spool.open(home=home) as spool:
        spool.record(sms(1, "api"))
    # the last good configuration archives email only: SMS is discarded as it was before
    found = states(home)
    assert found == {"sender-1": "discarded", "sender-2": "discarded", "api-1": "discarded"}
    assert kept.read_text().startswith("[projects.")  # the broken text never replaced it


def scrape_config_valid(base: str) -> str:
    code, text = http_get(base + "/metrics")
    assert code == 200
    return next(line for line in text.splitlines() if line.startswith("sm_config_valid "))


def test_a_broken_config_shows_everywhere_and_stops_no_sender(tmp_path: Path) -> None:
    home, archive = tmp_path / "home", tmp_path / "archive"
    prepare_home(home, archive, 0)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daemon = start_run(home, tmp_path / "run.log", "--metrics-addr", str(port))
    try:
        wait_for(lambda: http_get(base + "/readyz")[0] == 200, what="/readyz")
        assert scrape_config_valid(base) == "sm_config_valid 1.0"
        good = break_config(home)
        assert scrape_config_valid(base) == "sm_config_valid 0.0"
        code, body = http_get(base + "/readyz")
        assert code == 503 and body.startswith("config.toml not valid:")
        assert "retry_intervall" in body
        checked = sm(home, "--json", "status", "--check")
        assert checked.returncode == 1
        kinds = [p["kind"] for p in json.loads(checked.stdout)["problems"]]
        assert kinds == ["config_invalid"]
        document = json.loads(sm(home, "--json", "status").stdout)
        assert document["config"]["valid"] is False
        assert "retry_intervall" in document["config"]["problem"]
        assert [d["project_id"] for d in document["destinations"]] == [PROJECT]

        ingested = ingest(home, jsonl(sms(1, "sender")))
        assert ingested.returncode == 0, ingested.stderr
        assert "Warning: config.toml is not valid" in ingested.stderr
        # the daemon keeps its running configuration and archives what senders recorded
        wait_for(lambda: list(archive.rglob("sender-1.json.gz")), what="the upload")

        (home / "config.toml").write_text(good)
        assert scrape_config_valid(base) == "sm_config_valid 1.0"
        wait_for(lambda: http_get(base + "/readyz")[0] == 200, what="ready again")
        assert sm(home, "status", "--check").returncode == 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)


def events(log: Path, name: str) -> list[dict[str, object]]:
    """The JSON log lines of one event written so far (a line still being written is not)."""
    found = []
    for line in log.read_text().splitlines():
        if f'"{name}"' in line:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return [f for f in found if f.get("event") == name]


def test_a_reload_applies_what_it_can_and_names_what_needs_a_restart(tmp_path: Path) -> None:
    home, archive = tmp_path / "home", tmp_path / "archive"
    prepare_home(home, archive, 0)
    log = tmp_path / "run.log"
    daemon = start_run(home, log)
    try:
        wait_for(lambda: "daemon_started" in log.read_text(), what="the start")
        config = home / "config.toml"
        edited = home / "config.toml.new"  # written whole, then renamed, as an editor does
        edited.write_text('manifest_max_age = "1m"\nconcurrency = 3\n' + config.read_text())
        edited.replace(config)
        daemon.send_signal(signal.SIGHUP)
        reloaded = wait_for(lambda: [line for line in events(log, "config_reloaded")
                                     if line["settings_applied"]], what="the reload")
        assert reloaded[0]["settings_applied"] == ["manifest_max_age"]
        assert reloaded[0]["needs_restart"] == ["concurrency"]
        warned = wait_for(lambda: events(log, "config_needs_restart"), what="the warning")
        assert "concurrency" in warned[0]["message"]
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
