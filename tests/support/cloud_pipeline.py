"""The investigation half of the GCS and Azure end-to-end tests: once `sm run` has stored the
sample email, find (local and --remote), fetch, verify and index rebuild must all see it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from stored_messages_cli.cli.app import app


def assert_investigation_works(cli: Any, url: str, message: dict[str, Any], full_key: str,
                               payload: bytes, fresh_home: Path) -> None:
    """find, find --remote, fetch, verify on the archiving home; index rebuild on a new one."""
    message_id = message["message_id"]
    local = cli("--json", "find", "--message-id", message_id)
    assert local.exit_code == 0, local.output
    found = json.loads(local.stdout)
    assert [(f["key"], f["project_id"]) for f in found] == [(full_key, "12345")]
    remote = cli("--json", "find", "--remote", "--recipient", "ann.lee@example.com",
                 "--project", "12345")
    assert remote.exit_code == 0, remote.output
    assert [f["key"] for f in json.loads(remote.stdout)] == [full_key]
    fetched = cli("fetch", message_id)
    assert fetched.exit_code == 0, fetched.output
    assert fetched.stdout_bytes == payload
    verified = cli("--json", "verify")
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["ok"] is True

    runner = CliRunner()

    def other(*args: str) -> Any:
        return runner.invoke(app, ["--home", str(fresh_home), *args])

    assert other("connect", url, "--project", "12345", "--allow-insecure-endpoint").exit_code == 0
    rebuilt = other("--json", "index", "rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert json.loads(rebuilt.stdout)["projects"][0]["indexed"] == 1
    again = json.loads(other("--json", "find", "--message-id", message_id).stdout)
    assert [f["payload_sha256"] for f in again] == [found[0]["payload_sha256"]]
