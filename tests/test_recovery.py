"""An outage is over when the bucket is back (SPEC 8, Outage and Time).

Recovery probes after the first failure, health shared by projects on one store, fair
claims across projects, and a clock that jumps cannot expire or postpone anything. Faults are
injected on the wire between boto3 and moto's server by the fault proxy; time is a FakeClock.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.retry import RetryPolicy
from stored_messages_cli.spool import Spool
from stored_messages_cli.states import HealthState
from tests.support.fixtures.core import connected_folder, jsonl
from tests.support.fixtures.faults import ACCESS_DENIED, PASS, RESET, SLOWDOWN

A, B = "12345", "67890"
SLOT = 8 * 3600.0
WEEK = 7 * 86400.0


def record(spool: Spool, make_message: Any, count: int, project: str = A, start: int = 0
           ) -> list[str]:
    ids = [f"{project}-{n:04d}" for n in range(start, start + count)]
    spool.record_many([make_message(message_id=i, project_id=int(project),
                                    recipient={"email": f"Person.{i}@Example.com"})
                       for i in ids])
    return ids


def states(spool: Spool, project: str, ids: list[str]) -> Counter[str]:
    return Counter(spool.message_state(project, i)["state"] for i in ids)


def test_a_one_minute_outage_recovers_at_the_first_recovery_probe(
        spool, clock, faults, proxied_s3, make_message) -> None:
    ids = record(spool, make_message, 5)
    faults.mode = RESET
    archiver = Archiver(spool, [ProjectTarget(A, proxied_s3())], clock=clock, concurrency=2)
    t0 = clock.now()
    archiver.run(once=True)
    assert states(spool, A, ids) == {"retry_wait": 5}
    assert spool.health.get(A).next_probe_at == t0 + 60  # the first recovery probe

    faults.mode = PASS  # the bucket is back a minute later
    clock.set(t0 + 59)
    before = faults.count("PUT")
    archiver.run(once=True)
    assert faults.count("PUT") == before  # not yet: nothing goes out before the probe
    clock.set(t0 + 60)
    archiver.run(once=True)
    assert states(spool, A, ids) == {"stored": 5}
    assert spool.health.get(A).health == HealthState.OK


def test_recovery_probes_then_every_interval_one_request_per_slot(
        spool, clock, faults, proxied_s3, make_message) -> None:
    record(spool, make_message, 4)
    faults.mode = ACCESS_DENIED
    archiver = Archiver(spool, [ProjectTarget(A, proxied_s3())], clock=clock, concurrency=4)
    t0 = clock.now()
    archiver.run(once=True)
    slots = [spool.health.get(A).next_probe_at]
    for _ in range(5):
        clock.set(slots[-1])
        before = faults.count("PUT")
        archiver.run(once=True)
        assert faults.count("PUT") - before == 1  # one probe, not one request per message
        slots.append(spool.health.get(A).next_probe_at)
    assert [s - t0 for s in slots] == [60, 300, 1800, 7200, SLOT, 2 * SLOT]


def test_strict_schedule_when_recovery_probes_are_off(
        spool, clock, faults, proxied_s3, make_message) -> None:
    record(spool, make_message, 2)
    faults.mode = ACCESS_DENIED
    archiver = Archiver(spool, [ProjectTarget(A, proxied_s3())], clock=clock,
                        policy=RetryPolicy(recovery_probes=()))
    t0 = clock.now()
    archiver.run(once=True)
    assert spool.health.get(A).next_probe_at == t0 + SLOT


def test_two_projects_on_one_bucket_share_the_outage_and_the_recovery(
        spool, clock, faults, proxied_s3, make_message) -> None:
    a_ids = record(spool, make_message, 3, A)
    b_ids = record(spool, make_message, 3, B)
    faults.mode = ACCESS_DENIED  # answered at once (a reset would be retried by the SDK)
    targets = [ProjectTarget(A, proxied_s3("a/")), ProjectTarget(B, proxied_s3("b/"))]
    archiver = Archiver(spool, targets, clock=clock, concurrency=1)
    t0 = clock.now()
    archiver.run(once=True)
    # One failure parks both projects: the second is not rediscovered request by request.
    assert faults.count("PUT") == 1
    assert states(spool, A, a_ids) == states(spool, B, b_ids) == {"retry_wait": 3}
    assert spool.health.get(A).health == spool.health.get(B).health == HealthState.UNREACHABLE
    assert spool.health.get(B).next_probe_at == t0 + 60

    faults.mode = PASS
    clock.set(t0 + 60)
    before = faults.count("PUT")
    archiver.run(once=True)
    assert states(spool, A, a_ids) == states(spool, B, b_ids) == {"stored": 3}
    assert faults.count("PUT") - before == 6  # one probe woke both: every message once
    assert spool.health.get(B).health == HealthState.OK


def test_the_window_expires_only_after_its_probes_failed_not_on_a_clock_jump(
        spool, clock, faults, proxied_s3, make_message) -> None:
    ids = record(spool, make_message, 2)
    faults.mode = ACCESS_DENIED
    # A three-slot window keeps the walk short; the rule is the same as a week's 21 slots.
    archiver = Archiver(spool, [ProjectTarget(A, proxied_s3())], clock=clock,
                        policy=RetryPolicy(retry_window=3 * SLOT, recovery_probes=()))
    t0 = clock.now()
    archiver.run(once=True)
    clock.set(t0 + 8 * 86400)  # the wall clock leaps past the window: one probe, which fails
    report = archiver.run(once=True)
    assert report.expired == 0
    assert states(spool, A, ids) == {"retry_wait": 2}

    # The destination keeps failing every probe for a week: then they expire.
    policy = archiver.policy
    failed = spool.health.get(A).failed_probes
    while failed < policy.probes_to_expire:
        clock.set(spool.health.get(A).next_probe_at)
        archiver.run(once=True)
        failed = spool.health.get(A).failed_probes
    assert states(spool, A, ids) == {"expired": 2}


def test_a_clock_that_went_back_does_not_postpone_the_probe_for_weeks(
        spool, clock, faults, proxied_s3, make_message) -> None:
    ids = record(spool, make_message, 2)
    faults.mode = ACCESS_DENIED
    archiver = Archiver(spool, [ProjectTarget(A, proxied_s3())], clock=clock)
    t0 = clock.now()
    archiver.run(once=True)
    faults.mode = PASS
    clock.set(t0 - 30 * 86400)  # the clock is set back a month: the slot is now far ahead
    archiver.run(once=True)
    assert states(spool, A, ids) == {"stored": 2}


def test_a_retry_scheduled_beyond_the_policy_is_due(spool, clock, tmp_path: Path,
                                                     make_message) -> None:
    (message_id,) = record(spool, make_message, 1)
    destination = connected_folder(f"file://{tmp_path}/archive/")
    claimed = spool.queue.claim("me", A, 1, lease_seconds=60)
    from stored_messages_cli.spool import Retry
    from stored_messages_cli.states import RetryClass

    spool.queue.settle("me", [Retry(claimed[0].row_id, RetryClass.RATE_LIMITED,
                                    clock.now() + 90 * 86400, "SlowDown")])  # written ahead
    Archiver(spool, [ProjectTarget(A, destination)], clock=clock).run(once=True)
    assert spool.message_state(A, message_id)["state"] == "stored"


class _Recording:
    """A real folder destination that remembers the order of its writes."""

    def __init__(self, root: Path, order: list[str]) -> None:
        self._inner = connected_folder(f"file://{root}/")
        self.url, self.prefix, self.order = self._inner.url, self._inner.prefix, order

    def put(self, key: str, body: bytes, payload_sha256: str) -> Any:
        self.order.append(key.rsplit("/", 1)[-1].removesuffix(".json.gz"))
        return self._inner.put(key, body, payload_sha256)

    def close(self) -> None:
        self._inner.close()


def test_a_busy_project_does_not_starve_another(spool, clock, tmp_path: Path,
                                                make_message) -> None:
    older = record(spool, make_message, 5, B)
    clock.advance(10)
    record(spool, make_message, 300, A)  # a campaign's worth, recorded after B's five
    order: list[str] = []
    targets = [ProjectTarget(A, _Recording(tmp_path / "a", order)),  # type: ignore[arg-type]
               ProjectTarget(B, _Recording(tmp_path / "b", order))]  # type: ignore[arg-type]
    concurrency = 4
    Archiver(spool, targets, clock=clock, concurrency=concurrency).run(once=True)
    assert len(order) == 305
    assert older[0] in order[:2 * concurrency]
    assert min(order.index(f"{A}-0000"), order.index(older[0])) < 2


def test_run_once_exits_0_when_the_pass_is_only_rate_limited(
        cli, sm_home, faults, s3_bucket, make_message, instant_sdk_retries) -> None:
    connected = cli("connect", f"s3://{s3_bucket}/", "--project", A, "--endpoint-url",
                    faults.url, "--allow-insecure-endpoint")
    assert connected.exit_code == 0, connected.output
    assert cli("ingest", "-", input=jsonl(make_message(message_id="m1"))).exit_code == 0
    faults.mode = SLOWDOWN
    throttled = cli("run", "--once")
    assert throttled.exit_code == 0, throttled.output  # rate limiting retries on its own
    assert "rate limited (will retry) 1" in throttled.stdout
    with Spool.open(home=sm_home) as spool:
        row = spool.message_state(A, "m1")
    assert (row["state"], row["retry_reason"]) == ("retry_wait", "rate_limited")
    faults.mode = PASS
    replayed = cli("--json", "replay")
    assert replayed.exit_code == 0, replayed.output


def test_run_once_exits_1_when_the_pass_ends_unreachable(
        cli, faults, s3_bucket, make_message) -> None:
    connected = cli("connect", f"s3://{s3_bucket}/", "--project", A, "--endpoint-url",
                    faults.url, "--allow-insecure-endpoint")
    assert connected.exit_code == 0, connected.output
    assert cli("ingest", "-", input=jsonl(make_message())).exit_code == 0
    faults.mode = ACCESS_DENIED
    down = cli("run", "--once")
    assert down.exit_code == 1
    assert "unreachable (will retry) 1" in down.stdout
    assert "next probe at" in down.stderr and "Try: sm replay" in down.stderr


def test_recovery_probes_come_from_the_settings(cli, sm_home: Path, monkeypatch) -> None:
    from stored_messages_cli.cli.archiving import policy_from
    from stored_messages_cli.config.settings import load_settings

    sm_home.mkdir(parents=True, exist_ok=True)
    config = sm_home / "config.toml"
    config.write_text('recovery_probes = ["30s", "10m"]\n')
    assert policy_from(load_settings(config)).recovery_probes == (30.0, 600.0)
    config.write_text("recovery_probes = []\n")
    assert policy_from(load_settings(config)).next_probe(1000.0, 1000.0) == 1000.0 + SLOT
    monkeypatch.setenv("SM_RECOVERY_PROBES", '["0s"]')
    refused = cli("run", "--once")
    assert refused.exit_code == 1
    assert "SM_RECOVERY_PROBES" in refused.stderr
