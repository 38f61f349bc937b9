"""`sm replay`: attempt now instead of waiting for the slot, report stored / still failing.

Through the CLI, against moto's server behind the fault proxy.
"""

from __future__ import annotations

import json
import time
from typing import Any

from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.clock import FakeClock
from stored_messages_cli.message import parse_message
from stored_messages_cli.retry import RetryPolicy
from stored_messages_cli.spool import Spool
from tests.support.fixtures.core import jsonl
from tests.support.fixtures.faults import ACCESS_DENIED, PASS

PROJECT = "12345"
WEEK = 7 * 86400.0


def connect(cli: Any, faults: Any, bucket: str) -> None:
    """`sm connect` the test project to the bucket, through the fault proxy."""
    result = cli("connect", f"s3://{bucket}/", "--project", PROJECT, "--endpoint-url",
                 faults.url, "--allow-insecure-endpoint")
    assert result.exit_code == 0, result.output


def ingest(cli: Any, make_message: Any, count: int) -> list[dict[str, Any]]:
    """Ingest `count` confirmed emails through the CLI."""
    messages = [make_message(message_id=f"m{n}") for n in range(count)]
    assert cli("ingest", "-", input=jsonl(*messages)).exit_code == 0
    return messages


def stored_keys(s3_client: Any, bucket: str) -> set[str]:
    """Every key in the bucket except the connect check's test objects."""
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"] for item in listed if not item["Key"].startswith("_sm/")}


def test_replay_attempts_now_and_reports_per_reason(
        cli, faults, s3_bucket, s3_client, make_message) -> None:
    connect(cli, faults, s3_bucket)
    messages = ingest(cli, make_message, 3)
    faults.mode = ACCESS_DENIED
    assert cli("run", "--once").exit_code == 1  # the pass ended unreachable
    assert json.loads(cli("--json", "status").stdout)["counts"]["retry_wait"] == 3

    before = faults.count("PUT")
    still_down = cli("replay")  # no waiting for the 8-hour slot, but still one probe only
    assert still_down.exit_code == 1
    assert faults.count("PUT") - before == 1
    assert "Replayed 3: stored 0, still failing 3 (unreachable 3)" in still_down.stdout

    faults.mode = PASS
    result = cli("--json", "replay")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"replayed": 3, "stored": 3, "still_failing": 0,
                                         "in_progress_elsewhere": 0, "by_reason": {},
                                         "failures": []}
    assert stored_keys(s3_client, s3_bucket) == {parse_message(m).key for m in messages}
    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"]["stored"] == 3
    assert status["destinations"][0]["health"] == "ok"


def test_replay_json_lists_what_still_fails(cli, faults, s3_bucket, make_message) -> None:
    connect(cli, faults, s3_bucket)
    ingest(cli, make_message, 2)
    faults.mode = ACCESS_DENIED
    assert cli("run", "--once").exit_code == 1  # the pass ended unreachable

    result = cli("--json", "replay", "--project", PROJECT)

    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert {k: document[k] for k in ("replayed", "stored", "still_failing", "by_reason")} == {
        "replayed": 2, "stored": 0, "still_failing": 2, "by_reason": {"unreachable": 2}}
    assert [(f["message_id"], f["state"], f["reason"]) for f in document["failures"]] == [
        ("m0", "retry_wait", "unreachable"), ("m1", "retry_wait", "unreachable")]
    assert all("AccessDenied" in f["error"] and f["next_attempt_at"].endswith("Z")
               for f in document["failures"])


def test_replay_one_message_attempts_only_that_one(
        cli, faults, s3_bucket, make_message) -> None:
    connect(cli, faults, s3_bucket)
    ingest(cli, make_message, 3)
    faults.mode = ACCESS_DENIED
    assert cli("run", "--once").exit_code == 1  # the pass ended unreachable
    faults.mode = PASS
    before = len(faults.requests)

    result = cli("--json", "replay", "--message-id", "m1")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["replayed"] == 1
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in faults.requests[before:]
            if "/_sm/" not in r.path] == [("PUT", "m1.json.gz")]  # and its manifest, checkpoint
    assert json.loads(cli("--json", "status").stdout)["counts"]["retry_wait"] == 2


def test_replay_expired_only_when_asked(
        cli, sm_home, faults, s3_bucket, s3_client, make_message, proxied_s3) -> None:
    connect(cli, faults, s3_bucket)
    messages = ingest(cli, make_message, 2)
    clock = FakeClock(time.time())
    faults.mode = ACCESS_DENIED
    with Spool.open(home=sm_home, clock=clock) as spool:  # a week of outage in fake time
        # A two-slot window: expiry needs its probes to fail, not the calendar (SPEC 8).
        policy = RetryPolicy(retry_window=2 * 8 * 3600, recovery_probes=())
        archiver = Archiver(spool, [ProjectTarget(PROJECT, proxied_s3())], clock=clock,
                            policy=policy)
        archiver.run(once=True)
        for _ in range(policy.probes_to_expire):  # every 8-hour probe of the window fails
            clock.advance(8 * 3600)
            archiver.run(once=True)
        assert spool.status()["counts"]["expired"] == 2
    faults.mode = PASS
    before = faults.count("PUT")

    nothing = cli("replay")
    assert nothing.exit_code == 0
    assert "Nothing to replay" in nothing.stdout
    assert faults.count("PUT") == before

    result = cli("--json", "replay", "--expired")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stored"] == 2
    assert stored_keys(s3_client, s3_bucket) == {parse_message(m).key for m in messages}
    assert json.loads(cli("--json", "status").stdout)["counts"]["expired"] == 0


def test_replay_failed_after_the_conflict_is_resolved(
        cli, faults, s3_bucket, s3_client, make_message) -> None:
    connect(cli, faults, s3_bucket)
    (message,) = ingest(cli, make_message, 1)
    key = parse_message(message).key
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"someone else's bytes",
                         Metadata={"sm-payload-sha256": "0" * 64})
    assert cli("run", "--once").exit_code == 1
    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"]["failed"] == 1

    assert cli("replay").exit_code == 0  # failed ones only with --failed
    assert json.loads(cli("--json", "status").stdout)["counts"]["failed"] == 1

    s3_client.delete_object(Bucket=s3_bucket, Key=key)  # the operator resolves it
    result = cli("--json", "replay", "--failed")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stored"] == 1
    head = s3_client.head_object(Bucket=s3_bucket, Key=key)
    assert head["Metadata"]["sm-payload-sha256"] != "0" * 64


def test_replay_of_a_project_without_destination_is_an_error(cli) -> None:
    result = cli("replay", "--project", "999")
    assert result.exit_code == 1
    assert "Error: project 999 has no destination" in result.stderr
    assert "Try: sm connect URL --project 999" in result.stderr


def test_progress_is_shown_on_a_terminal_only() -> None:
    import io

    from rich.console import Console

    from stored_messages_cli.cli.archiving import progress_for
    from stored_messages_cli.cli.common import Output

    screen = io.StringIO()
    terminal = Output(stderr=Console(file=screen, force_terminal=True, width=100))
    progress, on_outcome = progress_for(terminal, "replaying", 2)
    with progress:
        on_outcome("stored")
        on_outcome("unreachable")
        progress.refresh()
    assert "replaying" in screen.getvalue()
    assert "2/2" in screen.getvalue()
    assert "stored 1, unreachable 1" in screen.getvalue()

    pipe = Output(stderr=Console(file=io.StringIO(), force_terminal=False))
    assert progress_for(pipe, "replaying", 2) == (None, None)
