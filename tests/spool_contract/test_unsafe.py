"""An unsafe destination on every spool backend (SPEC 9.2): a store that stops honouring
create-only writes is proven again daily, gets nothing, and its messages wait and expire as
for `unreachable`; a passing proof makes them due. The proxy in front of moto's S3 server
drops `If-None-Match` from every PUT while told to; time is a FakeClock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.destinations.base import DestinationOptions
from stored_messages_cli.destinations.s3 import S3Destination
from stored_messages_cli.retry import RetryPolicy
from stored_messages_cli.setup.checks import prove_create_only
from stored_messages_cli.spool import Spool
from stored_messages_cli.states import HealthState
from tests.support.daemon import PROJECT, sms
from tests.support.fixtures.faults import ACCESS_DENIED, PASS
from tests.support.overwriting_proxy import OverwritingProxy

DAY = 86400.0


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[OverwritingProxy]:
    relay = OverwritingProxy(moto_endpoint)
    yield relay
    relay.close()


def bucket_bytes(s3_client: Any, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket but the manifests, with its bytes, read past the proxy."""
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3_client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for o in listed if "/_sm/manifests/" not in o["Key"]}


@pytest.fixture
def relayed_s3(proxy: OverwritingProxy, s3_bucket: str) -> Iterator[S3Destination]:
    destination = S3Destination(
        f"s3://{s3_bucket}/archive/",
        DestinationOptions(endpoint_url=proxy.url, allow_insecure_endpoint=True,
                           region="us-east-1", max_connections=4))
    yield destination
    destination.close()


def test_the_proof_runs_again_every_day_and_unsafe_messages_wait_as_for_unreachable(
        spool: Spool, clock: Any, proxy: OverwritingProxy, relayed_s3: S3Destination,
        s3_client: Any, s3_bucket: str) -> None:
    archiver = Archiver(spool, [ProjectTarget(PROJECT, relayed_s3)], clock=clock)
    archiver.prove_create_only(prove_create_only)
    spool.record_many([sms(i) for i in range(2)])
    archiver.run(once=True)  # proven at the first turn, then archived
    assert spool.health.get(PROJECT).health == HealthState.OK
    assert len(bucket_bytes(s3_client, s3_bucket)) == 2

    proxy.strip = True
    spool.record_many([sms(i, "later") for i in range(2)])
    clock.advance(DAY - 60)
    archiver.run(once=True)  # not a day yet: no proof, and the store overwrites unseen
    assert spool.health.get(PROJECT).health == HealthState.OK
    spool.record_many([sms(i, "next-day") for i in range(2)])
    clock.advance(60)
    before = bucket_bytes(s3_client, s3_bucket)
    proxy.puts.clear()
    archiver.run(once=True)  # a day since the last proof: proven again, and it fails
    health = spool.health.get(PROJECT)
    assert health.health == HealthState.UNSAFE
    assert not [k for k in proxy.put_keys() if "next-day" in k]
    assert bucket_bytes(s3_client, s3_bucket) == before
    waiting = spool.message_state(PROJECT, "next-day-0")
    assert waiting["state"] == "retry_wait" and waiting["retry_reason"] == "unreachable"
    first_slot = health.next_probe_at
    assert first_slot == clock.now() + 60  # the unreachable schedule's first recovery probe

    clock.advance(60)
    archiver.run(once=True)  # the slot's proof fails again: still unsafe, next slot later
    assert spool.health.get(PROJECT).health == HealthState.UNSAFE
    assert spool.health.get(PROJECT).next_probe_at > first_slot + 60
    proxy.strip = False
    clock.set(spool.health.get(PROJECT).next_probe_at)
    archiver.run(once=True)
    assert spool.health.get(PROJECT).health == HealthState.OK
    assert spool.message_state(PROJECT, "next-day-1")["state"] == "stored"


def test_unsafe_messages_expire_after_the_window_like_unreachable_ones(
        spool: Spool, clock: Any, proxy: OverwritingProxy, relayed_s3: S3Destination) -> None:
    archiver = Archiver(spool, [ProjectTarget(PROJECT, relayed_s3)], clock=clock)
    archiver.prove_create_only(prove_create_only)
    spool.record_many([sms(0)])
    proxy.strip = True
    archiver.run(once=True)
    assert spool.health.get(PROJECT).health == HealthState.UNSAFE
    for _ in range(40):  # every slot of the 7-day window, each proof failing
        slot = spool.health.get(PROJECT).next_probe_at
        clock.set(slot)
        archiver.run(once=True)
        if spool.message_state(PROJECT, "m-0")["state"] == "expired":
            break
    state = spool.message_state(PROJECT, "m-0")
    assert state["state"] == "expired" and state["final_reason"] == "expired_unreachable"
    assert clock.now() >= spool.health.get(PROJECT).since + 7 * DAY


def test_a_down_store_gets_only_its_probe_and_is_proven_once_it_answers(
        spool: Spool, clock: Any, faults: Any, proxied_s3: Any) -> None:
    archiver = Archiver(spool, [ProjectTarget(PROJECT, proxied_s3())], clock=clock,
                        policy=RetryPolicy(recovery_probes=()))
    archiver.prove_create_only(prove_create_only)
    spool.record_many([sms(0)])
    faults.mode = ACCESS_DENIED
    archiver.run(once=True)  # the proof gets no answer; the upload marks the store down
    health = spool.health.get(PROJECT)
    assert health.health == HealthState.UNREACHABLE
    clock.set(health.next_probe_at)
    before = faults.count()
    archiver.run(once=True)
    assert faults.count() - before == 1  # the slot's one probe, no proof beside it
    faults.mode = PASS
    clock.set(spool.health.get(PROJECT).next_probe_at)
    puts = faults.count("PUT", path_contains="/m-0.json.gz")
    archiver.run(once=True)
    assert spool.message_state(PROJECT, "m-0")["state"] == "stored"
    assert spool.health.get(PROJECT).health == HealthState.OK
    # the store answered: the proof it still owed followed, rewriting the object just stored
    # under the condition (refused), so the key saw the probe's upload and the proof's write
    assert faults.count("PUT", path_contains="/m-0.json.gz") - puts == 2
