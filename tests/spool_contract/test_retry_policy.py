"""The retry policy (SPEC 5): classification of real SDK errors from the wire, backoff from
1 s capped at 5 min, throttled messages that never expire, and concurrency that follows
what the bucket accepts.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import boto3
import pytest
from botocore.config import Config

from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.errors import DestinationError
from stored_messages_cli.retry import RATE_LIMITED, UNREACHABLE, RetryPolicy, classify
from stored_messages_cli.spool import Spool
from stored_messages_cli.states import HealthState
from tests.support.fixtures.faults import (
    ACCESS_DENIED,
    NO_SUCH_BUCKET,
    PASS,
    RESET,
    SLOWDOWN,
    STALL,
)

PROJECT = "12345"
DAY = 86400.0


def record(spool: Spool, make_message: Any, count: int, start: int = 0) -> list[str]:
    """Record `count` confirmed emails; returns their message ids."""
    ids = [f"msg-{n:04d}" for n in range(start, start + count)]
    spool.record_many([make_message(message_id=i) for i in ids])
    return ids


def states(spool: Spool, ids: list[str]) -> Counter[str]:
    """How many of `ids` are in each state."""
    return Counter(spool.message_state(PROJECT, i)["state"] for i in ids)


FAULT_CLASSES = [
    (SLOWDOWN, RATE_LIMITED, "SlowDown"),
    (ACCESS_DENIED, UNREACHABLE, "AccessDenied"),
    (NO_SUCH_BUCKET, UNREACHABLE, "NoSuchBucket"),
    (RESET, UNREACHABLE, None),
    (STALL, UNREACHABLE, None),
]


@pytest.mark.parametrize(("fault", "expected", "code"), FAULT_CLASSES)
def test_real_botocore_errors_from_the_wire_are_classified(
        faults, s3_bucket, fault, expected, code) -> None:
    faults.mode = fault
    faults.stall_seconds = 1.0
    client = boto3.client(
        "s3", endpoint_url=faults.url, region_name="us-east-1",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, read_timeout=0.2,
                      connect_timeout=1, s3={"addressing_style": "path"}))
    with pytest.raises(Exception) as caught:
        client.put_object(Bucket=s3_bucket, Key="k", Body=b"x", IfNoneMatch="*")
    if fault == STALL:
        assert type(caught.value).__name__ == "ReadTimeoutError"
    if code:
        assert caught.value.response["Error"]["Code"] == code
    assert classify(caught.value) == expected


@pytest.mark.parametrize(("fault", "expected", "code"), FAULT_CLASSES)
def test_the_s3_destination_reports_the_same_class(
        faults, proxied_s3, instant_sdk_retries, monkeypatch, fault, expected, code) -> None:
    monkeypatch.setenv("SM_S3_READ_TIMEOUT", "0.2")
    faults.stall_seconds = 1.0
    faults.mode = fault
    with pytest.raises(DestinationError) as caught:
        proxied_s3().put("email/k.json.gz", b"x", "0" * 64)
    assert caught.value.retry_class == expected
    assert classify(caught.value) == expected
    if code:
        assert code in str(caught.value)


def test_other_sdks_shapes_are_classified_without_importing_them() -> None:
    from azure.core.exceptions import HttpResponseError
    from google.api_core import exceptions as google

    busy = HttpResponseError(message="The server is busy.")
    busy.status_code, busy.error_code = 503, "ServerBusy"  # what azure-core reads off a reply
    down = HttpResponseError(message="Service unavailable")
    down.status_code, down.error_code = 503, "ServiceUnavailable"
    assert classify(busy) == RATE_LIMITED
    assert classify(down) == UNREACHABLE
    assert classify(google.TooManyRequests("slow down")) == RATE_LIMITED
    assert classify(google.ServiceUnavailable("backend error")) == UNREACHABLE
    assert classify(google.Forbidden("no access")) == UNREACHABLE
    assert classify(ConnectionRefusedError(111, "refused")) == UNREACHABLE
    assert classify(TimeoutError("timed out")) == UNREACHABLE
    assert classify(ValueError("something nobody foresaw")) == UNREACHABLE
    try:  # a backend that wraps the SDK error keeps it as the cause
        try:
            raise google.TooManyRequests("slow down")
        except Exception as inner:
            raise RuntimeError("upload failed") from inner
    except RuntimeError as outer:
        assert classify(outer) == RATE_LIMITED


def test_backoff_starts_at_one_second_doubles_with_jitter_and_caps_at_five_minutes() -> None:
    policy = RetryPolicy()
    rng = random.Random(3)
    assert {policy.rate_limited_delay(1, rng) for _ in range(20)} == {1.0}
    for attempts in range(2, 40):
        step = min(300.0, 2.0 ** (attempts - 1))
        draws = [policy.rate_limited_delay(attempts, rng) for _ in range(50)]
        assert all(max(1.0, step / 2) <= d <= step for d in draws), attempts
        assert len(set(draws)) > 1  # jitter: waiting messages do not retry in lockstep
    assert max(policy.rate_limited_delay(1000, rng) for _ in range(200)) <= 300.0


def test_probe_slots_stay_on_their_grid() -> None:
    policy = RetryPolicy()
    assert policy.next_slot(1000.0) == 1000.0 + 8 * 3600
    assert policy.next_slot(1000.0 + 8 * 3600 + 5, 1000.0 + 8 * 3600) == 1000.0 + 16 * 3600
    assert policy.next_slot(1000.0 + 50 * 3600, 1000.0 + 8 * 3600) == 1000.0 + 56 * 3600


def test_throttled_messages_back_off_per_message_and_never_expire(
        sm_home, clock, faults, proxied_s3, make_message, instant_sdk_retries) -> None:
    faults.mode = SLOWDOWN
    spool = Spool.open(home=sm_home, clock=clock)
    ids = record(spool, make_message, 3)
    archiver = Archiver(spool, [ProjectTarget(PROJECT, proxied_s3())], clock=clock,
                        concurrency=2, rng=random.Random(11))
    t0 = clock.now()
    for attempt in range(1, 13):  # follow each message's own schedule through the doubling
        archiver.run(once=True)
        rows = [spool.message_state(PROJECT, i) for i in ids]
        step = min(300.0, 2.0 ** (attempt - 1))
        for row in rows:
            assert (row["state"], row["retry_reason"]) == ("retry_wait", "rate_limited")
            assert row["first_failure_at"] is None  # nothing to expire from
            assert max(1.0, step / 2) <= row["next_attempt_at"] - clock.now() <= step
        if attempt < 12:
            clock.set(max(row["next_attempt_at"] for row in rows))
    spool.close()

    spool = Spool.open(home=sm_home, clock=clock)  # a restart keeps each message's schedule
    archiver = Archiver(spool, [ProjectTarget(PROJECT, proxied_s3())], clock=clock)
    first_due = min(spool.message_state(PROJECT, i)["next_attempt_at"] for i in ids)
    assert first_due > clock.now()
    clock.set(first_due - 0.001)
    sent = faults.count("PUT")
    archiver.run(once=True)
    assert faults.count("PUT") == sent  # none due yet: nothing goes out
    clock.set(first_due)
    archiver.run(once=True)
    assert faults.count("PUT") > sent
    while clock.now() < t0 + 8.5 * DAY:  # eight and a half days of throttling
        clock.advance(DAY)
        archiver.run(once=True)
        assert states(spool, ids) == {"retry_wait": 3}
    assert spool.status()["counts"]["expired"] == 0
    assert spool.health.get(PROJECT).health == HealthState.RATE_LIMITED

    faults.mode = PASS
    clock.advance(300)
    archiver.run(once=True)
    assert states(spool, ids) == {"stored": 3}
    spool.close()


def test_concurrency_halves_when_throttled_and_grows_back_after_clean_responses(
        spool, clock, faults, proxied_s3, make_message, instant_sdk_retries) -> None:
    faults.mode = SLOWDOWN
    faults.delay = 0.005
    record(spool, make_message, 20)  # enough for three windows: 8, then 4, then 2 at once
    archiver = Archiver(spool, [ProjectTarget(PROJECT, proxied_s3())], clock=clock,
                        concurrency=8)
    archiver.run(once=True)
    assert archiver.concurrency_limit == 1

    faults.max_in_flight = 0
    clock.advance(2)  # every message's first backoff (1 s) has passed
    archiver.run(once=True)
    assert faults.max_in_flight == 1  # on the wire: one upload at a time while throttled

    faults.mode = PASS
    record(spool, make_message, 40, start=20)
    clock.advance(600)
    report = archiver.run(once=True)
    assert report.stored == 60
    assert archiver.concurrency_limit == 4  # one more after every 20 clean responses
    assert faults.max_in_flight <= 4


def test_a_brief_blip_is_absorbed_by_the_sdk_and_never_reaches_the_schedule(
        spool, clock, faults, proxied_s3, make_message, instant_sdk_retries) -> None:
    ids = record(spool, make_message, 1)
    seen: list[str] = []

    def first_put_resets(request: Any) -> str:
        seen.append(request.method)
        return RESET if seen.count("PUT") == 1 and request.method == "PUT" else PASS

    faults.rule = first_put_resets
    Archiver(spool, [ProjectTarget(PROJECT, proxied_s3())], clock=clock).run(once=True)
    assert states(spool, ids) == {"stored": 1}
    assert spool.message_state(PROJECT, ids[0])["attempts"] == 1  # one attempt for the spool
    assert faults.count("PUT") == 2  # the reset one and botocore's quick retry


def test_a_wrapper_with_the_default_class_is_read_through_to_its_cause() -> None:
    from google.api_core import exceptions as google

    try:
        try:
            raise google.TooManyRequests("slow down")
        except Exception as inner:
            raise DestinationError("upload of k failed") from inner  # class left at default
    except DestinationError as outer:
        assert classify(outer) == RATE_LIMITED
    try:  # an error met while handling another is judged on its own
        try:
            raise google.TooManyRequests("slow down")
        except Exception:
            raise PermissionError("denied")  # noqa: B904 - implicit context on purpose
    except PermissionError as later:
        assert classify(later) == UNREACHABLE
