"""The S3 client keeps botocore's standard-mode quick retries (3 attempts) on every call,
however long an outage lasts: the client-wide retry quota is switched off."""

from __future__ import annotations

import pytest

from stored_messages_cli.destinations import DestinationOptions
from stored_messages_cli.destinations.s3 import S3Destination, make_s3_client
from stored_messages_cli.errors import DestinationError
from tests.support.s3_wire import wire_proxy

CALLS = 25  # botocore's quota (500, 14 per retry) runs dry after 35 retries: ~18 calls


def test_every_call_keeps_its_quick_retries_through_a_long_outage(
        s3_bucket, moto_endpoint, instant_sdk_retries) -> None:
    proxy = wire_proxy(moto_endpoint)
    proxy.fail_status = 500
    destination = S3Destination(f"s3://{s3_bucket}/", DestinationOptions(
        endpoint_url=proxy.url, allow_insecure_endpoint=True))
    try:
        for n in range(CALLS):
            with pytest.raises(DestinationError) as failure:
                destination.head(f"k-{n}")
            assert failure.value.retry_class == "unreachable"
    finally:
        destination.close()
    attempts = [len([r for r in proxy.seen(s3_bucket) if r.path == f"/{s3_bucket}/k-{n}"])
                for n in range(CALLS)]
    assert attempts == [3] * CALLS


def test_a_plain_standard_mode_client_would_have_given_up(s3_bucket, moto_endpoint,
                                                          instant_sdk_retries) -> None:
    """The control: the same outage through botocore's default quota stops retrying."""
    import boto3
    from botocore.config import Config

    proxy = wire_proxy(moto_endpoint)
    proxy.fail_status = 500
    client = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1",
                          config=Config(retries={"mode": "standard", "max_attempts": 3}))
    for n in range(CALLS):
        with pytest.raises(Exception):  # noqa: B017 - any failure; the count is the point
            client.head_object(Bucket=s3_bucket, Key=f"k-{n}")
    assert len(proxy.seen(s3_bucket)) < 3 * CALLS


def test_timeouts_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("SM_S3_CONNECT_TIMEOUT", "0.5")
    monkeypatch.setenv("SM_S3_READ_TIMEOUT", "2")
    client = make_s3_client(DestinationOptions(region="us-east-1"))
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (0.5, 2.0)
    assert client.meta.config.retries["mode"] == "standard"


def test_a_put_goes_out_at_once_with_every_condition_and_checksum(
        s3_bucket, moto_endpoint) -> None:
    """No `Expect: 100-continue` round trip; create-only, checksum and owner condition stay."""
    import base64
    import gzip
    import hashlib

    proxy = wire_proxy(moto_endpoint)
    destination = S3Destination(f"s3://{s3_bucket}/", DestinationOptions(
        endpoint_url=proxy.url, allow_insecure_endpoint=True, expected_owner="123456789012"))
    body = gzip.compress(b'{"a":1}', mtime=0)
    try:
        assert destination.put("k.json.gz", body, hashlib.sha256(b'{"a":1}').hexdigest()).created
    finally:
        destination.close()
    (put,) = proxy.seen(s3_bucket, method="PUT")
    assert "expect" not in put.headers
    assert put.headers["if-none-match"] == "*"
    assert put.headers["x-amz-checksum-sha256"] == base64.b64encode(
        hashlib.sha256(body).digest()).decode()
    assert put.headers["x-amz-expected-bucket-owner"] == "123456789012"
