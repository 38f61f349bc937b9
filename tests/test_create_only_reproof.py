"""Create-only re-proven while `sm run` archives (SPEC 9.2): at start, on reload and daily.

A store (or a proxy in front of it) that stops honouring `If-None-Match` after `sm connect`
would let every upload replace an object already in the bucket and be reported `stored`. The
proxy here forwards to moto's S3 server and, once told to, drops the condition from every PUT;
the bucket's real bytes are read with boto3 past the proxy.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.setup.checks import prove_create_only
from tests.support.daemon import (
    PROJECT,
    free_port,
    http_get,
    record,
    sm,
    start_run,
    wait_for,
)
from tests.support.overwriting_proxy import OverwritingProxy


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[OverwritingProxy]:
    relay = OverwritingProxy(moto_endpoint)
    yield relay
    relay.close()


def bucket_bytes(s3_client: Any, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket but the manifests and their checkpoints (the signed log),
    with its bytes, read past the proxy."""
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3_client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for o in listed if "/_sm/manifests/" not in o["Key"]
            and "/_sm/checkpoints/" not in o["Key"]}


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


BACKENDS = ["file", "s3", "gcs", "azure"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_destination")


def test_the_proof_passes_on_every_store_and_leaves_nothing_behind(backend: Any) -> None:
    empty = prove_create_only(backend)  # nothing stored yet: a test object, then deleted
    assert (empty.status, empty.name) == ("pass", "create_only"), empty.detail
    assert list(backend.list(backend.prefix)) == []
    payload = b'{"message":"archived"}'
    body = gzip.compress(payload, mtime=0)
    key = backend.prefix + "sms/12345/abc/unassociated/m-1.json.gz"
    backend.put(key, body, hashlib.sha256(payload).hexdigest())
    again = prove_create_only(backend, key)  # its own bytes again, under the condition
    assert again.status == "pass", again.detail
    assert [o.key for o in backend.list(backend.prefix)] == [key]
    assert backend.get(key).body == body
    missing = prove_create_only(backend, backend.prefix + "gone.json.gz")
    assert missing.status == "pass"  # an object no longer there: the test object instead
    assert [o.key for o in backend.list(backend.prefix)] == [key]


def test_replay_sends_nothing_to_an_unsafe_store_and_does_not_wait_for_it(
        sm_home: Path, cli: Any, s3_client: Any, s3_bucket: str,
        proxy: OverwritingProxy) -> None:
    connected = cli("connect", f"s3://{s3_bucket}/archive/", "--project", PROJECT,
                    "--endpoint-url", proxy.url, "--allow-insecure-endpoint")
    assert connected.exit_code == 0, connected.output
    record(sm_home, 2)
    proxy.strip = True
    assert sm(sm_home, "run", "--once").returncode == 1  # unsafe: its messages wait
    proxy.puts.clear()
    started = time.monotonic()
    replayed = sm(sm_home, "--json", "replay")  # follows for up to 60 s what it made due
    assert time.monotonic() - started < 30
    assert replayed.returncode == 1
    document = json.loads(replayed.stdout)
    assert document["stored"] == 0 and document["still_failing"] == 2
    assert proxy.put_keys() == []
    assert bucket_bytes(s3_client, s3_bucket) == {}


def test_replay_beside_the_daemon_has_the_store_proven_again_at_once(
        sm_home: Path, tmp_path: Path, cli: Any, s3_client: Any, s3_bucket: str,
        proxy: OverwritingProxy) -> None:
    connected = cli("connect", f"s3://{s3_bucket}/archive/", "--project", PROJECT,
                    "--endpoint-url", proxy.url, "--allow-insecure-endpoint")
    assert connected.exit_code == 0, connected.output
    record(sm_home, 2)
    proxy.strip = True
    daemon = start_run(sm_home, tmp_path / "run.log")
    try:
        wait_for(lambda: health_of(sm_home)["health"] == "unsafe", what="unsafe")
        proxy.strip = False  # fixed; the operator replays instead of reloading
        assert sm(sm_home, "replay", "--wait", "0").returncode == 1  # nothing sent by replay
        wait_for(lambda: health_of(sm_home)["health"] == "ok", what="the proof to pass")
        wait_for(lambda: len(bucket_bytes(s3_client, s3_bucket)) == 2, what="the uploads")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
