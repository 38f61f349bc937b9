"""`sm connect` checks the destination for real and saves nothing unless it can take the
archive; `sm disconnect` removes it and keeps the spool."""

from __future__ import annotations

import json
import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.fixtures.core import jsonl
from tests.support.s3_wire import OWNER_HEADER, wire_proxy

OWNER = "123456789012"  # the account moto's default credentials belong to
SOMEONE_ELSE = "210987654321"


def saved_projects(home: Path) -> dict[str, Any]:
    config = home / "config.toml"
    if not config.exists():
        return {}
    return tomllib.loads(config.read_text()).get("projects", {})


def keys(s3_client: Any, bucket: str, prefix: str = "") -> list[str]:
    listing = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def assert_one_line_error(result: Any) -> None:
    """A refusal is `Error: …` (+ `Try: …`) with exit 1, never a traceback."""
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr
    assert result.stderr.count("Error:") == 1


@pytest.fixture
def endpoint_args(moto_endpoint: str) -> list[str]:
    return ["--endpoint-url", moto_endpoint, "--allow-insecure-endpoint"]


def test_connect_saves_after_a_clean_round_trip(cli, sm_home, s3_client, s3_bucket,
                                                endpoint_args) -> None:
    result = cli("--json", "connect", f"s3://{s3_bucket}/archive/", "--project", "12345",
                 "--expected-owner", OWNER, *endpoint_args)
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["saved"] is True
    statuses = {c["name"]: c["status"] for c in document["checks"]}
    assert statuses["write"] == statuses["read"] == statuses["cleanup"] == "pass"
    assert keys(s3_client, s3_bucket) == []  # the test object was removed
    saved = saved_projects(sm_home)["12345"]
    assert saved["url"] == f"s3://{s3_bucket}/archive/"
    assert saved["expected_owner"] == OWNER
    assert "testing" not in (sm_home / "config.toml").read_text()  # no credentials saved


def test_connect_refuses_a_missing_bucket(cli, sm_home, endpoint_args) -> None:
    bucket = f"sm-missing-{uuid.uuid4().hex[:10]}"
    result = cli("connect", f"s3://{bucket}/", "--project", "12345", *endpoint_args)
    assert_one_line_error(result)
    assert "NoSuchBucket" in result.stderr and "nothing was saved" in result.stderr
    assert f"Try: sm bucket create s3://{bucket}/" in result.stderr
    assert saved_projects(sm_home) == {}


def test_connect_refuses_a_bucket_owned_by_another_account(cli, sm_home, s3_client, s3_bucket,
                                                           moto_endpoint) -> None:
    proxy = wire_proxy(moto_endpoint)
    result = cli("connect", f"s3://{s3_bucket}/archive/", "--project", "12345",
                 "--endpoint-url", proxy.url, "--allow-insecure-endpoint",
                 "--expected-owner", SOMEONE_ELSE)
    assert_one_line_error(result)
    assert "AccessDenied" in result.stderr
    assert f"Try: sm policy s3://{s3_bucket}/archive/" in result.stderr
    assert SOMEONE_ELSE in result.stderr  # the hint names the owner to check
    assert saved_projects(sm_home) == {}
    assert keys(s3_client, s3_bucket) == []
    assert not proxy.seen(s3_bucket, "PUT")  # refused before any write was tried


@pytest.mark.parametrize(("extra", "message"), [
    ([], "is plain http; archives must travel over TLS"),
    (["--allow-insecure-endpoint"],
     "--allow-insecure-endpoint is only accepted for loopback hosts, not s3.example.com"),
])
def test_connect_refuses_plain_http_to_a_remote_host(cli, sm_home, extra, message) -> None:
    result = cli("connect", "s3://acme-archive/", "--project", "12345",
                 "--endpoint-url", "http://s3.example.com", *extra)
    assert_one_line_error(result)
    assert message in result.stderr
    assert "Try: use an https:// endpoint" in result.stderr
    assert saved_projects(sm_home) == {}


def test_plain_http_to_loopback_needs_the_flag(cli, sm_home, s3_bucket, moto_endpoint) -> None:
    result = cli("connect", f"s3://{s3_bucket}/", "--project", "12345",
                 "--endpoint-url", moto_endpoint)
    assert_one_line_error(result)
    assert saved_projects(sm_home) == {}


def test_connect_refuses_retention_on_a_bucket_without_object_lock(cli, sm_home, s3_client,
                                                                  s3_bucket,
                                                                  endpoint_args) -> None:
    result = cli("connect", f"s3://{s3_bucket}/", "--project", "12345", "--retention-days",
                 "30", *endpoint_args)
    assert_one_line_error(result)
    assert "retention of 30 days is configured but the bucket has no object lock" in (
        result.stderr)
    assert "Try: sm bucket create s3://NEW-BUCKET/ --object-lock --retention-days 30" in (
        result.stderr)
    assert saved_projects(sm_home) == {}
    assert keys(s3_client, s3_bucket) == []  # no test object left behind


def test_usage_errors_exit_2(cli, sm_home) -> None:
    assert cli("connect", "s3://b-b-b/", "--project", "1", "--external-id", "xy").exit_code == 2
    assert cli("connect", "s3://b-b-b/", "--project", "1", "--role-arn",
               "arn:aws:iam::123456789012:role/r", "--external-id", "x").exit_code == 2
    assert cli("connect", "s3://b-b-b/", "--project", "1", "--expected-owner",
               "12345").exit_code == 2
    assert cli("connect", "s3://b-b-b/", "--project", "1", "--role-arn",
               "not-an-arn").exit_code == 2
    assert cli("connect", "s3://b-b-b/", "--project", "1", "--retention-days", "3",
               "--retention-mode", "forever").exit_code == 2
    assert saved_projects(sm_home) == {}


def test_every_request_carries_the_expected_owner(cli, s3_client, moto_endpoint,
                                                  make_message) -> None:
    proxy = wire_proxy(moto_endpoint)
    bucket = f"sm-owned-{uuid.uuid4().hex[:10]}"
    through_proxy = ["--endpoint-url", proxy.url, "--allow-insecure-endpoint",
                     "--expected-owner", OWNER]
    assert cli("bucket", "create", f"s3://{bucket}/", *through_proxy).exit_code == 0
    connect = cli("connect", f"s3://{bucket}/archive/", "--project", "12345", *through_proxy)
    assert connect.exit_code == 0, connect.stderr
    messages = [make_message(message_id=f"m-{n}") for n in range(3)]
    assert cli("ingest", "-", input=jsonl(*messages)).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    assert cli("verify").exit_code == 0
    stored = keys(s3_client, bucket, "archive/email/")
    assert len(stored) == 3
    object_puts = [r for r in proxy.seen(bucket, "PUT")
                   if "/archive/" in r.path and "/_sm/manifests/" not in r.path
                   and "/_sm/checkpoints/" not in r.path]
    # connect writes a test object and tries a second create-only write to it (refused: the
    # create_only check); sm run proves create-only alike before its first upload (nothing
    # stored yet: a test object and a refused rewrite); then the three messages; verify
    # writes no test object (sm run stored messages within a day) and only tries a refused
    # create-only rewrite of one
    assert len(object_puts) == 8
    seen = proxy.seen(bucket)
    assert {r.method for r in seen} == {"HEAD", "PUT", "GET", "DELETE"}
    # every request but CreateBucket (whose API has no owner condition) carries it
    assert [(r.method, r.path) for r in seen if r.headers.get(OWNER_HEADER) != OWNER] == [
        ("PUT", f"/{bucket}")]


def test_objects_under_retention_carry_mode_and_retain_until(cli, s3_client, endpoint_args,
                                                             make_message) -> None:
    bucket = f"sm-locked-{uuid.uuid4().hex[:10]}"
    made = cli("bucket", "create", f"s3://{bucket}/", "--object-lock", *endpoint_args)
    assert made.exit_code == 0, made.stderr
    before = datetime.now(UTC)
    connect = cli("connect", f"s3://{bucket}/", "--project", "12345", "--retention-days", "3",
                  "--retention-mode", "compliance", *endpoint_args)
    assert connect.exit_code == 0, connect.stderr
    assert cli("ingest", "-", input=jsonl(make_message())).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    after = datetime.now(UTC)
    test_objects = keys(s3_client, bucket, "_sm/connect-test")
    assert len(test_objects) == 1  # kept: object lock forbids deleting it
    (stored,) = keys(s3_client, bucket, "email/")
    for key in (stored, test_objects[0]):
        # HeadObject shows the retention (moto's server fails GetObjectRetention with a 500)
        head = s3_client.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        until = head["ObjectLockRetainUntilDate"]
        assert before + timedelta(days=3) - timedelta(seconds=1) <= until
        assert until <= after + timedelta(days=3) + timedelta(seconds=1)


def test_disconnect_removes_the_destination_and_keeps_the_spool(cli, sm_home, tmp_path,
                                                                make_message) -> None:
    archive = tmp_path / "archive"
    assert cli("connect", f"file://{archive}/", "--project", "12345").exit_code == 0
    assert cli("ingest", "-", input=jsonl(make_message())).exit_code == 0
    result = cli("--json", "disconnect", "--project", "12345")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"project_id": "12345", "removed": True}
    assert saved_projects(sm_home) == {}
    assert json.loads(cli("--json", "destinations").stdout) == []
    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"]["queued"] == 1  # the message waits for the next destination
    again = cli("--json", "disconnect", "--project", "12345")
    assert again.exit_code == 0
    assert json.loads(again.stdout) == {"project_id": "12345", "removed": False}


class _IgnoresCreateOnly:
    """A relay in front of moto that drops `If-None-Match`, like a store (or proxy) that does
    not implement conditional writes: every PUT silently overwrites."""

    def __init__(self, upstream: str) -> None:
        import threading
        from http.server import ThreadingHTTPServer
        from urllib.parse import urlsplit

        from tests.support.http_relay import RelayHandler

        parts = urlsplit(upstream)
        target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.stripped = 0
        relay = self

        class Handler(RelayHandler):
            def _handle(self) -> None:
                body = self._body()
                if self.headers.get("If-None-Match") is not None:
                    del self.headers["If-None-Match"]
                    relay.stripped += 1
                self._relay(target, body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def overwriting_store(moto_endpoint: str) -> Any:
    relay = _IgnoresCreateOnly(moto_endpoint)
    yield relay
    relay.close()


def test_connect_refuses_a_store_that_ignores_create_only_writes(
        cli, sm_home, s3_client, s3_bucket, overwriting_store) -> None:
    result = cli("--json", "connect", f"s3://{s3_bucket}/archive/", "--project", "12345",
                 "--endpoint-url", overwriting_store.url, "--allow-insecure-endpoint")
    assert_one_line_error(result)
    assert overwriting_store.stripped >= 2  # both conditional writes lost their condition
    document = json.loads(result.stdout)
    assert document["saved"] is False
    statuses = {c["name"]: c["status"] for c in document["checks"]}
    assert (statuses["write"], statuses["read"], statuses["create_only"]) == (
        "pass", "pass", "fail")
    assert (f"Error: s3://{s3_bucket}/archive/ failed the create_only check: the store accepted"
            " a second create-only write to") in result.stderr
    assert "Try: use a store (or a proxy in front of it) that honours conditional writes" in (
        result.stderr)
    assert saved_projects(sm_home) == {}


def test_connect_passes_create_only_on_every_real_store(cli, sm_home, s3_bucket, moto_endpoint,
                                                        tmp_path) -> None:
    for url, extra in ((f"s3://{s3_bucket}/archive/", ["--endpoint-url", moto_endpoint,
                                                       "--allow-insecure-endpoint"]),
                       (f"file://{tmp_path / 'folder'}/", [])):
        result = cli("--json", "connect", url, "--project", "12345", *extra)
        assert result.exit_code == 0, result.stderr
        checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
        assert checks["create_only"] == {
            "name": "create_only", "status": "pass",
            "detail": "a second create-only write to the test key was refused"}
