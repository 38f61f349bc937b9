"""Output people copy from: tables never cut an id, key, URL or code (in a pipe or on a
narrow terminal), `-q` silences summaries, and `sm ingest` counts events apart from
messages."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from stored_messages_cli import Spool
from stored_messages_cli.cli.common import Output
from tests.support.fixtures.core import jsonl

LONG_URL = "s3://acme-archive-with-a-long-name/messages/eu-west-1/production/tenant-000042/"
LONG_ERROR = ("ConnectTimeoutError: Connect timeout on endpoint URL: "
              "https://acme-archive-with-a-long-name.s3.eu-west-1.amazonaws.com/")


def rendered(width: int, terminal: bool) -> str:
    buffer = io.StringIO()
    out = Output(stdout=Console(file=buffer, width=width, force_terminal=terminal,
                                color_system=None, soft_wrap=True))
    out.table("Destinations", ["project", "destination", "health", "last error"],
              [["12345", LONG_URL, "unreachable", LONG_ERROR]])
    return buffer.getvalue()


def test_a_narrow_terminal_wraps_other_columns_never_the_url() -> None:
    text = rendered(60, terminal=True)
    assert LONG_URL in text  # whole, on one line
    assert "unreachable" in text
    assert "ConnectTimeoutError:" in text and LONG_ERROR not in text  # the prose wrapped


def test_a_pipe_gets_every_row_on_one_line() -> None:
    text = rendered(80, terminal=False)
    row = next(line for line in text.splitlines() if "12345" in line)
    assert LONG_URL in row and LONG_ERROR in row


def test_destinations_in_a_pipe_shows_the_whole_url(cli, tmp_path: Path) -> None:
    folder = tmp_path / ("a-folder-with-a-rather-long-name-" * 3) / "archive"
    folder.mkdir(parents=True, mode=0o700)
    assert cli("connect", f"file://{folder}/", "--project", "12345").exit_code == 0
    listed = cli("destinations")
    assert f"file://{folder}/" in listed.stdout


def test_ingest_counts_events_apart_from_messages(cli, make_message) -> None:
    messages = [make_message(message_id=f"m{i}", sent_at=None) for i in range(4)]
    for message in messages:
        message.pop("sent_at", None)
    events = [{"event": "sent", "message_id": f"m{i}", "project_id": messages[i]["project_id"],
               "sent_at": "2026-11-27T17:00:00Z"} for i in range(3)]
    text = jsonl(*messages) + "".join(json.dumps(e) + "\n" for e in events)
    result = cli("ingest", input=text)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("7 lines: 4 messages, 3 send events")
    assert "accepted 7, duplicate 0, rejected 0" in result.stdout
    document = json.loads(cli("--json", "ingest", input=text).stdout)
    # SPEC 6 keys unchanged; lines, messages and events added
    assert {k: document[k] for k in ("accepted", "duplicate", "rejected", "errors")} == {
        "accepted": 0, "duplicate": 7, "rejected": 0, "errors": []}
    assert (document["lines"], document["messages"], document["events"]) == (7, 4, 3)


def test_quiet_silences_the_summary_but_not_the_rejections(cli, make_message) -> None:
    result = cli("ingest", "-q", input=jsonl(make_message()) + "oops\n")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["line 2: not valid JSON (Expecting value)"]


def test_status_reports_a_broken_config_in_one_line(cli, sm_home: Path) -> None:
    # SPEC 9.2: status still answers (senders go on recording), naming the problem once.
    sm_home.mkdir(parents=True, exist_ok=True)
    (sm_home / "config.toml").write_text('retry_intervall = "8h"\n')
    Spool.open(home=sm_home).close()
    result = cli("status")
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0].startswith("Warning: config.toml is not valid:")
    assert "unknown setting 'retry_intervall' (did you mean 'retry_interval'?)" in \
        result.stderr.splitlines()[0]
    (sm_home / "config.toml").write_text('[projects."1"]\nurl = "file:///a/"\nmedium = ["x"]\n')
    document = json.loads(cli("status", "--json").stdout)
    assert "unknown key in [projects.\"1\"] 'medium'" in document["config"]["problem"]


def test_status_knows_every_setting_name_without_pydantic_settings() -> None:
    from stored_messages_cli.config import PROJECT_KEYS, SETTING_NAMES
    from stored_messages_cli.config.projects import ProjectDestination
    from stored_messages_cli.config.settings import Settings

    assert set(Settings.model_fields) == SETTING_NAMES
    assert set(ProjectDestination.model_fields) == PROJECT_KEYS


def test_find_on_an_80_column_terminal_never_cuts_a_32_character_id() -> None:
    from stored_messages_cli.cli.find import _print_entries
    from stored_messages_cli.investigate.index import IndexEntry

    message_id = "9c438a20d26e4e9f8ad4edea23f811cd"
    entry = IndexEntry(project_id="12345", message_id=message_id, medium="email",
                       message_type="transactional", campaign_id="1234567",
                       recipient_hash="0" * 64, sent_at="2026-11-27T17:00:00Z", key="k",
                       payload_sha256=None)
    buffer = io.StringIO()
    out = Output(stdout=Console(file=buffer, width=80, force_terminal=True,
                                color_system=None, soft_wrap=True))
    _print_entries(out, [entry], False, None)
    text = buffer.getvalue()
    assert message_id in text and "2026-11-27T17:00:00Z" in text and "1234567" in text
    assert "…" not in text
