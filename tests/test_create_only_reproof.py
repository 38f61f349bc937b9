"""Create-only re-proven while `sm run` archives (SPEC 9.2): at start, on reload and daily.

A store (or a proxy in front of it) that stops honouring `If-None-Match` after `sm connect`
would let every upload replace an object already in the bucket and be reported `stored`. The
proxy here forwards to moto's S3 server and, once told to, drops the condition from every PUT;
the bucket's real bytes are read with boto3 past the proxy.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli import Spool
from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.destinations.base import DestinationOptions
from stored_messages_cli.destinations.s3 import S3Destination
from stored_messages_cli.setup.checks import prove_create_only
from stored_messages_cli.states import HealthState
from tests.support.daemon import (
    PROJECT,
    free_port,
    http_get,
    record,
    sm,
    sms,
    start_run,
    wait_for,
)
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


def health_of(home: Path) -> dict[str, Any]:
    result = sm(home, "--json", "status")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["destinations"][0]


def test_a_store_that_stops_honouring_create_only_is_unsafe_and_gets_nothing(
        sm_home: Path, tmp_path: Path, cli: Any, s3_client: Any, s3_bucket: str,
        proxy: OverwritingProxy) -> None:
    connected = cli("connect", f"s3://{s3_bucket}/archive/", "--project", PROJECT,
                    "--endpoint-url", proxy.url, "--allow-insecure-endpoint")
    assert connected.exit_code == 0, connected.output
    record(sm_home, 2, "m")
    first = sm(sm_home, "run", "--once")
    assert first.returncode == 0, first.stderr
    archived = bucket_bytes(s3_client, s3_bucket)
    assert len(archived) == 2 and all("/_sm/" not in k for k in archived)  # no proof litter
    # The key of the next message is taken by other bytes: a create-only write must not
    # replace them (it would be a conflict), whatever the store does with the condition.
    taken = next(iter(archived)).rsplit("/", 1)[0] + "/n-0.json.gz"
    s3_client.put_object(Bucket=s3_bucket, Key=taken, Body=b"someone else's bytes")
    record(sm_home, 3, "n")

    proxy.strip = True  # from now on the store overwrites whatever it is sent
    proxy.puts.clear()
    port = free_port()
    daemon = start_run(sm_home, tmp_path / "run.log", "--metrics-addr", str(port))
    try:
        unsafe = wait_for(lambda: (h := health_of(sm_home))["health"] == "unsafe" and h,
                          what="the destination to be unsafe")
        assert unsafe["reason"] == "create_only_not_honoured"
        checked = sm(sm_home, "status", "--check")
        assert checked.returncode == 1
        assert f"destination_unsafe: project {PROJECT}: s3://{s3_bucket}/archive/" \
            in checked.stdout
        ready = http_get(f"http://127.0.0.1:{port}/readyz")
        assert ready[0] == 503 and f"{PROJECT} unsafe" in ready[1]
        metrics = http_get(f"http://127.0.0.1:{port}/metrics")[1]
        assert f'sm_destination_health{{project="{PROJECT}",state="unsafe"}} 1.0' in metrics
        assert f'sm_destination_up{{project="{PROJECT}"}} 0.0' in metrics
        # Nothing of the waiting messages went out; the bytes in the bucket are as they were.
        assert not [k for k in proxy.put_keys() if "/n-" in k]
        after = bucket_bytes(s3_client, s3_bucket)
        assert {k: after[k] for k in archived} == archived
        assert after[taken] == b"someone else's bytes"
        assert set(after) == {*archived, taken}

        proxy.strip = False  # the store behaves again; the operator reloads
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: health_of(sm_home)["health"] == "ok", what="the proof to pass")
        wait_for(lambda: {f"{taken.rsplit('/', 1)[0]}/n-{i}.json.gz" for i in (1, 2)}
                 <= set(bucket_bytes(s3_client, s3_bucket)), what="the waiting uploads")
        assert http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    final = bucket_bytes(s3_client, s3_bucket)
    assert final[taken] == b"someone else's bytes"  # a conflict, left exactly as it was
    assert {k: final[k] for k in archived} == archived


def test_once_exits_1_and_sends_nothing_to_an_unsafe_store(
        sm_home: Path, cli: Any, s3_client: Any, s3_bucket: str,
        proxy: OverwritingProxy) -> None:
    connected = cli("connect", f"s3://{s3_bucket}/archive/", "--project", PROJECT,
                    "--endpoint-url", proxy.url, "--allow-insecure-endpoint")
    assert connected.exit_code == 0, connected.output
    record(sm_home, 2)
    proxy.strip = True
    result = sm(sm_home, "run", "--once")
    assert result.returncode == 1
    assert "create-only" in result.stderr
    assert bucket_bytes(s3_client, s3_bucket) == {}  # the proof's test object is gone too
    assert health_of(sm_home)["health"] == "unsafe"


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
