"""End to end through the CLI on a local folder: connect, ingest, run, status."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tests.fixtures.core import jsonl


def test_connect_ingest_run_status_on_a_folder(cli, tmp_path: Path, make_message) -> None:
    archive = tmp_path / "archive"
    assert cli("connect", f"file://{archive}/", "--project", "12345").exit_code == 0
    message = make_message()
    result = cli("--json", "ingest", "-", input=jsonl(message) + "not json\n")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "accepted": 1, "duplicate": 0, "rejected": 1, "discarded": 0,
        "errors": [{"line": 2, "reason": "not valid JSON (Expecting value)"}],
    }
    assert cli("run", "--once").exit_code == 0
    key = ("email/12345/b7e0d8372a47f54bbefeb251ab9ac1e9e6b2d1983263de10196101be3961ed23/"
           "1234567/9c438a20d26e4e9f8ad4edea23f811cd.json.gz")
    body = (archive / key).read_bytes()
    payload = json.loads(gzip.decompress(body))
    expected = dict(message, project_id="12345", campaign_id="1234567", template_id="42",
                    schema_version=1)
    assert payload == expected
    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"]["stored"] == 1
    assert status["rejected_lines"] == 1
    assert status["destinations"][0]["health"] == "ok"
