"""End to end through the CLI on a local folder: connect, ingest, run, status."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tests.support.fixtures.core import jsonl


def test_connect_ingest_run_status_on_a_folder(cli, tmp_path: Path, make_message) -> None:
    archive = tmp_path / "archive"
    assert cli("connect", f"file://{archive}/", "--project", "12345").exit_code == 0
    message = make_message()
    result = cli("--json", "ingest", "-", input=jsonl(message) + "not json\n")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "accepted": 1, "duplicate": 0, "rejected": 1, "discarded": 0,
        "errors": [{"line": 2, "reason": "not valid JSON (Expecting value)"}],
        "lines": 2, "messages": 1, "events": 0,
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


def test_connect_ingest_run_on_s3_gives_the_exact_object(
        cli, moto_endpoint, s3_bucket, s3_client, make_message) -> None:
    import base64
    import hashlib

    url = f"s3://{s3_bucket}/archive/"
    connected = cli("connect", url, "--project", "12345", "--endpoint-url", moto_endpoint,
                    "--allow-insecure-endpoint")
    assert connected.exit_code == 0, connected.output
    messages = [make_message(), make_message("sms"), make_message("push")]
    assert cli("ingest", input=jsonl(*messages)).exit_code == 0
    ran = cli("--json", "run", "--once", "--concurrency", "4")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["stored"] == 3

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    expected_keys = {
        f"archive/email/12345/{sha('ann.lee@example.com')}/1234567/"
        "9c438a20d26e4e9f8ad4edea23f811cd.json.gz",
        f"archive/sms/12345/{sha('+15555550100')}/unassociated/sms-1.json.gz",
        f"archive/push/12345/{sha('abcdef')}/spring/push-1.json.gz",
    }
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="archive/")
    keys = {item["Key"] for item in listed["Contents"] if "/_sm/" not in item["Key"]}
    assert keys == expected_keys
    for message in messages:
        key = next(k for k in keys if k.endswith(f"/{message['message_id']}.json.gz"))
        response = s3_client.get_object(Bucket=s3_bucket, Key=key, ChecksumMode="ENABLED")
        body = response["Body"].read()
        payload = gzip.decompress(body)
        document = dict(message, schema_version=1)
        for name in ("project_id", "campaign_id", "template_id", "journey_id"):
            if document.get(name) is not None:
                document[name] = str(document[name])
        assert payload == json.dumps(document, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()
        assert body[3] == 0 and body[4:8] == b"\0\0\0\0"  # no file name, mtime 0
        assert response["Metadata"] == {"sm-payload-sha256": hashlib.sha256(payload).hexdigest()}
        assert response["ChecksumSHA256"] == base64.b64encode(
            hashlib.sha256(body).digest()).decode()
    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"]["stored"] == 3
    assert status["destinations"] == [{
        "project_id": "12345", "url": url, "health": "ok", "reason": None,
        "since": status["destinations"][0]["since"], "next_probe_at": None, "last_error": None}]
