"""An unreachable destination (SPEC 5): one probe per slot, parked messages, exact expiry,
recovery, fresh credentials, a schedule that survives restarts, and what status and logs show.

Faults are injected on the wire between boto3 and moto's server by the fault proxy.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.retry import RetryPolicy
from stored_messages_cli.spool import Spool
from stored_messages_cli.states import HealthState
from tests.support.fixtures.core import jsonl
from tests.support.fixtures.faults import ACCESS_DENIED, NO_SUCH_BUCKET, PASS, RESET, STALL

PROJECT = "12345"
SLOT = 8 * 3600.0
WEEK = 7 * 86400.0


def record(spool: Spool, make_message: Any, count: int, start: int = 0) -> list[str]:
    """Record `count` confirmed emails to distinct recipients; returns their message ids."""
    ids = [f"msg-{n:04d}" for n in range(start, start + count)]
    spool.record_many([make_message(message_id=i, recipient={"email": f"Person.{i}@Example.com"})
                       for i in ids])
    return ids


def archiver_for(spool: Spool, destination: Any, clock: Any, **options: Any) -> Archiver:
    """An archiver for the one test project, on the fake clock.

    These tests pin Iterable's strict schedule (a probe every 8 hours, no recovery probes);
    tests/test_recovery.py covers the recovery probes.
    """
    options.setdefault("concurrency", 4)
    options.setdefault("policy", RetryPolicy(recovery_probes=()))
    return Archiver(spool, [ProjectTarget(PROJECT, destination)], clock=clock, **options)


def walk_slots(archiver: Archiver, clock: Any, first: float, end: float, step: float) -> None:
    """Run the archiver at every probe slot in [first, end): the destination fails each one."""
    slot = first
    while slot < end:
        clock.set(slot)
        archiver.run(once=True)
        slot += step


def states(spool: Spool, ids: list[str]) -> Counter[str]:
    """How many of `ids` are in each state."""
    return Counter(spool.message_state(PROJECT, i)["state"] for i in ids)


def test_403_outage_sends_one_probe_per_slot_and_parks_every_message(
        spool, clock, faults, proxied_s3, make_message) -> None:
    ids = record(spool, make_message, 20)
    faults.mode = ACCESS_DENIED
    archiver = archiver_for(spool, proxied_s3(), clock, concurrency=4)
    t0 = clock.now()

    archiver.run(once=True)

    first = faults.count("PUT")
    assert 1 <= first <= 4  # only what was already in flight when the outage showed
    for message_id in ids:
        row = spool.message_state(PROJECT, message_id)
        assert (row["state"], row["retry_reason"]) == ("retry_wait", "unreachable")
        assert row["next_attempt_at"] == t0 + SLOT
        assert row["first_failure_at"] == t0
    health = spool.health.get(PROJECT)
    assert (health.health, health.next_probe_at) == (HealthState.UNREACHABLE, t0 + SLOT)
    assert "AccessDenied" in health.last_error

    for slot in range(1, 4):
        clock.set(t0 + slot * SLOT - 1)
        archiver.run(once=True)
        assert faults.count("PUT") == first + slot - 1  # nothing between slots
        clock.set(t0 + slot * SLOT)
        archiver.run(once=True)
        assert faults.count("PUT") == first + slot  # exactly one probe in the slot
        assert {spool.message_state(PROJECT, i)["next_attempt_at"] for i in ids} == {
            t0 + (slot + 1) * SLOT}
    assert faults.count() == faults.count("PUT")  # no other request went out either
    assert states(spool, ids) == {"retry_wait": 20}


@pytest.mark.parametrize(("fault", "requests_per_probe"), [
    (NO_SUCH_BUCKET, 1),  # a client error: botocore does not retry it
    (RESET, 3),  # a dropped connection: botocore's own quick retries (3 attempts) first
    (STALL, 3),  # a read timeout, likewise
])
def test_other_outages_also_mark_the_destination_unreachable(
        spool, clock, faults, proxied_s3, make_message, instant_sdk_retries, monkeypatch,
        fault, requests_per_probe) -> None:
    monkeypatch.setenv("SM_S3_READ_TIMEOUT", "0.2")
    faults.stall_seconds = 1.0
    ids = record(spool, make_message, 6)
    faults.mode = fault
    archiver = archiver_for(spool, proxied_s3(), clock, concurrency=2)
    t0 = clock.now()
    archiver.run(once=True)
    assert faults.count() <= 2 * requests_per_probe
    assert spool.health.get(PROJECT).health == HealthState.UNREACHABLE
    assert states(spool, ids) == {"retry_wait": 6}
    assert {spool.message_state(PROJECT, i)["retry_reason"] for i in ids} == {"unreachable"}

    before = faults.count()
    clock.set(t0 + SLOT)
    archiver.run(once=True)
    assert faults.count() - before == requests_per_probe
    assert len({r.path for r in faults.requests[before:]}) == 1  # all for the one probe


def test_credentials_are_resolved_afresh_before_each_probe(
        spool, clock, faults, proxied_s3, make_message, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "revoked-key")
    faults.rule = lambda seen: ACCESS_DENIED if seen.access_key == "revoked-key" else PASS
    ids = record(spool, make_message, 5)
    archiver = archiver_for(spool, proxied_s3(), clock)
    t0 = clock.now()
    archiver.run(once=True)
    assert spool.health.get(PROJECT).health == HealthState.UNREACHABLE

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rotated-key")  # the operator rotates the key
    clock.set(t0 + SLOT)
    before = len(faults.requests)
    archiver.run(once=True)  # same Archiver and destination objects as before

    assert faults.requests[before].access_key == "rotated-key"  # the probe
    assert {r.access_key for r in faults.requests[before:]} == {"rotated-key"}
    assert states(spool, ids) == {"stored": 5}
    assert spool.health.get(PROJECT).health == HealthState.OK


def test_a_successful_probe_makes_every_waiting_message_due_and_stores_it(
        spool, clock, faults, proxied_s3, make_message, s3_client, s3_bucket) -> None:
    ids = record(spool, make_message, 30)
    faults.mode = NO_SUCH_BUCKET
    archiver = archiver_for(spool, proxied_s3("archive/"), clock)
    t0 = clock.now()
    archiver.run(once=True)
    clock.set(t0 + SLOT)
    ids += record(spool, make_message, 5, start=30)  # arrived during the outage
    faults.mode = PASS
    before = faults.count("PUT")

    report = archiver.run(once=True)

    assert faults.count("PUT") - before == 35  # the probe, then every other message once
    assert report.stored == 35
    assert states(spool, ids) == {"stored": 35}
    keys = {spool.message_state(PROJECT, i)["stored_key"] for i in ids}
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="archive/")["Contents"]
    assert {item["Key"] for item in listed} == keys
    assert all(key.startswith("archive/email/12345/") for key in keys)
    assert spool.health.get(PROJECT).health == HealthState.OK
    assert spool.status()["next_retry_at"] is None


def test_expiry_falls_exactly_on_each_messages_own_seven_day_boundary(
        spool, clock, faults, proxied_s3, make_message, cli) -> None:
    faults.mode = ACCESS_DENIED
    early = record(spool, make_message, 3)
    archiver = archiver_for(spool, proxied_s3(), clock)
    t0 = clock.now()
    archiver.run(once=True)  # first failure of `early`: t0
    clock.set(t0 + SLOT / 2)
    late = record(spool, make_message, 2, start=3)  # queued behind the outage, never tried
    archiver.run(once=True)
    assert states(spool, late) == {"queued": 2}
    clock.set(t0 + SLOT)  # the first slot's failed probe parks `late` too
    archiver.run(once=True)
    assert {spool.message_state(PROJECT, i)["first_failure_at"] for i in late} == {t0 + SLOT}

    walk_slots(archiver, clock, t0 + 2 * SLOT, t0 + WEEK, SLOT)  # every probe fails
    clock.set(t0 + WEEK - 0.001)  # one tick before the boundary
    report = archiver.run(once=True)  # no slot is due: nothing goes out, nothing expires
    assert states(spool, early + late) == {"retry_wait": 5}
    assert report.expired == 0
    assert spool.health.get(PROJECT).next_probe_at == t0 + WEEK  # slots stay on their grid

    clock.set(t0 + WEEK)  # the boundary: the slot's probe fails, then `early` expires
    before = faults.count("PUT")
    report = archiver.run(once=True)
    assert faults.count("PUT") - before == 1
    assert report.expired == 3
    assert states(spool, early) == {"expired": 3}
    assert states(spool, late) == {"retry_wait": 2}
    reason = spool.message_state(PROJECT, early[0])["final_reason"]
    assert reason == "expired_unreachable"  # a code; the last error stays in last_error
    assert "AccessDenied" in spool.message_state(PROJECT, early[0])["last_error"]

    clock.set(t0 + SLOT + WEEK - 0.001)
    archiver.run(once=True)
    assert states(spool, late) == {"retry_wait": 2}
    clock.set(t0 + SLOT + WEEK)
    archiver.run(once=True)
    assert states(spool, late) == {"expired": 2}

    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"]["expired"] == 5
    assert status["final_reasons"] == {"expired": {reason: 5}}
    assert f"Expired 5: {reason}" in cli("status").stdout


def test_the_schedule_survives_a_restart(
        sm_home, clock, faults, proxied_s3, make_message) -> None:
    faults.mode = ACCESS_DENIED
    with Spool.open(home=sm_home, clock=clock) as spool:
        ids = record(spool, make_message, 8)
        t0 = clock.now()
        archiver_for(spool, proxied_s3(), clock).run(once=True)
    sent = faults.count("PUT")

    with Spool.open(home=sm_home, clock=clock) as spool:  # a new process, as far as state goes
        archiver = archiver_for(spool, proxied_s3(), clock)
        clock.set(t0 + SLOT - 1)
        archiver.run(once=True)
        assert faults.count("PUT") == sent
        faults.mode = PASS
        clock.set(t0 + SLOT)
        archiver.run(once=True)
        assert states(spool, ids) == {"stored": 8}


def connect_through_proxy(cli: Any, faults: Any, bucket: str) -> None:
    """`sm connect` the test project to the bucket, through the fault proxy."""
    result = cli("connect", f"s3://{bucket}/", "--project", PROJECT, "--endpoint-url",
                 faults.url, "--allow-insecure-endpoint")
    assert result.exit_code == 0, result.output


def test_status_and_json_logs_during_an_outage_never_show_an_address(
        cli, faults, s3_bucket, make_message) -> None:
    connect_through_proxy(cli, faults, s3_bucket)
    messages = [make_message(message_id=f"m{n}") for n in range(3)]
    assert cli("ingest", "-", input=jsonl(*messages)).exit_code == 0
    faults.mode = ACCESS_DENIED

    result = cli("-v", "--log-format", "json", "run", "--once")

    assert result.exit_code == 1, result.output  # SPEC 8: a pass that left messages unreachable
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert any(line["level"] == "error" and "unreachable" in line["message"]
               for line in lines)
    for text in (result.stderr, result.stdout):
        assert "ann.lee@example.com" not in text.lower()
        assert "Your order shipped" not in text

    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"]["retry_wait"] == 3
    assert status["retry_reasons"] == {"unreachable": 3}
    assert status["next_retry_at"].endswith("Z")
    assert status["oldest_unarchived_age_seconds"] >= 0
    (destination,) = status["destinations"]
    assert destination["health"] == "unreachable"
    assert destination["next_probe_at"] == status["next_retry_at"]

    human = cli("status")
    assert "unreachable" in human.stdout
    assert status["next_retry_at"] in human.stdout


def test_a_new_destination_makes_the_waiting_messages_due(
        spool, clock, faults, proxied_s3, make_message) -> None:
    ids = record(spool, make_message, 4)
    faults.mode = ACCESS_DENIED
    archiver_for(spool, proxied_s3("old/"), clock).run(once=True)
    assert states(spool, ids) == {"retry_wait": 4}
    faults.mode = PASS

    archiver_for(spool, proxied_s3("new/"), clock).run(once=True)  # reconnected elsewhere

    assert states(spool, ids) == {"stored": 4}
    assert {spool.message_state(PROJECT, i)["stored_key"][:4] for i in ids} == {"new/"}


def test_recovery_is_logged_as_a_json_line(cli, faults, s3_bucket, make_message) -> None:
    connect_through_proxy(cli, faults, s3_bucket)
    assert cli("ingest", "-", input=jsonl(make_message())).exit_code == 0
    faults.mode = ACCESS_DENIED
    assert cli("run", "--once").exit_code == 1  # the pass left its message unreachable
    faults.mode = PASS

    result = cli("--log-format", "json", "replay")

    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert [line["message"] for line in lines if "healthy" in line["message"]] == [
        f"destination s3://{s3_bucket}/ of project {PROJECT} is healthy again"]
    assert "ann.lee@example.com" not in result.stderr.lower()


def test_a_window_off_the_slot_grid_expires_at_its_own_end_without_a_probe(
        spool, clock, faults, proxied_s3, make_message) -> None:
    window = 2 * 86400.0  # 48 h of 5-hour slots: the last slot (45 h) misses the end
    policy = RetryPolicy(retry_interval=5 * 3600, retry_window=window, recovery_probes=())
    ids = record(spool, make_message, 2)
    faults.mode = ACCESS_DENIED
    archiver = archiver_for(spool, proxied_s3(), clock, policy=policy)
    t0 = clock.now()
    archiver.run(once=True)
    walk_slots(archiver, clock, t0 + 5 * 3600, t0 + window, 5 * 3600)  # to 45 h, the last slot
    sent = faults.count("PUT")

    clock.set(t0 + window - 0.001)
    archiver.run(once=True)
    assert states(spool, ids) == {"retry_wait": 2}
    clock.set(t0 + window)
    archiver.run(once=True)
    assert states(spool, ids) == {"expired": 2}
    assert faults.count("PUT") == sent  # no probe was due: expiry needs none


def test_a_running_archiver_honours_a_replay_made_elsewhere(
        spool, clock, faults, proxied_s3, make_message) -> None:
    ids = record(spool, make_message, 3)
    faults.mode = ACCESS_DENIED
    archiver = archiver_for(spool, proxied_s3(), clock)
    archiver.run(once=True)
    faults.mode = PASS
    clock.advance(60)
    assert len(spool.queue.make_due(project_id=PROJECT)) == 3  # what `sm replay` does to the spool

    archiver.run(once=True)  # the same archiver, long before its own next slot

    assert states(spool, ids) == {"stored": 3}
