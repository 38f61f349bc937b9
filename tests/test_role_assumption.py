"""`--role-arn` + `--external-id`: S3 is reached with credentials from STS AssumeRole (moto's
STS through AWS_ENDPOINT_URL_STS), carrying the external id; the owner condition defaults to
the role's account; `refresh_credentials()` makes the next call assume the role afresh."""

from __future__ import annotations

import tomllib
import uuid
from typing import Any

import pytest

from stored_messages_cli.destinations import DestinationOptions
from stored_messages_cli.destinations.s3 import S3Destination
from tests.support.s3_wire import OWNER_HEADER, wire_proxy

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sm-archiver"


@pytest.fixture
def sts(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_endpoint)


def assumed_roles(external_id: str) -> list[Any]:
    """What moto's STS recorded for AssumeRole calls made with `external_id`."""
    from moto.sts.models import sts_backends

    return [role for role in sts_backends[ACCOUNT]["aws"].assumed_roles
            if role.external_id == external_id]


def test_connect_assumes_the_role_with_the_external_id(cli, sm_home, sts, s3_bucket,
                                                       moto_endpoint) -> None:
    external_id = f"ext-{uuid.uuid4().hex[:8]}"
    proxy = wire_proxy(moto_endpoint)
    result = cli("connect", f"s3://{s3_bucket}/archive/", "--project", "12345",
                 "--role-arn", ROLE, "--external-id", external_id,
                 "--endpoint-url", proxy.url, "--allow-insecure-endpoint")
    assert result.exit_code == 0, result.stderr
    (role,) = assumed_roles(external_id)
    assert role.role_arn == ROLE
    assert role.session_name.startswith("sm-")
    seen = proxy.seen(s3_bucket)
    assert seen  # the round trip went through the proxy
    assert {r.access_key for r in seen} == {role.access_key_id}  # signed as the role
    assert {r.headers.get(OWNER_HEADER) for r in seen} == {ACCOUNT}  # owner from the ARN
    config = (sm_home / "config.toml").read_text()
    saved = tomllib.loads(config)["projects"]["12345"]
    assert (saved["role_arn"], saved["external_id"], saved["expected_owner"]) == (
        ROLE, external_id, ACCOUNT)
    assert role.access_key_id not in config and role.secret_access_key not in config


def test_refresh_credentials_assumes_the_role_again(sts, s3_bucket, moto_endpoint) -> None:
    external_id = f"ext-{uuid.uuid4().hex[:8]}"
    proxy = wire_proxy(moto_endpoint)
    destination = S3Destination(f"s3://{s3_bucket}/", DestinationOptions(
        endpoint_url=proxy.url, allow_insecure_endpoint=True, role_arn=ROLE,
        external_id=external_id))
    try:
        assert destination.head("first") is None
        assert len(assumed_roles(external_id)) == 1
        destination.refresh_credentials()  # what the archiver does before a probe
        assert destination.head("second") is None
    finally:
        destination.close()
    first, second = assumed_roles(external_id)
    assert first.access_key_id != second.access_key_id
    assert [r.access_key for r in proxy.seen(s3_bucket)] == [first.access_key_id,
                                                             second.access_key_id]


def test_a_failed_role_assumption_is_one_line(cli, sm_home, monkeypatch, s3_bucket,
                                              moto_endpoint) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")  # nothing listens here
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = cli("connect", f"s3://{s3_bucket}/", "--project", "12345", "--role-arn", ROLE,
                 "--external-id", "ext-down", "--endpoint-url", moto_endpoint,
                 "--allow-insecure-endpoint")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].endswith("nothing was saved")
    assert "Could not connect to the endpoint URL" in errors[0]
    assert "Try: check the network" in result.stderr
    assert "that STS is reachable to assume --role-arn" in result.stderr
    assert not (sm_home / "config.toml").exists()
