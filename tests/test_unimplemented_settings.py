"""A store that does not implement a settings API (an S3-compatible store answering 501
NotImplemented to GetObjectLockConfiguration, versioning, encryption or the public access
block) gives a `warn` "cannot read …" line in `sm connect` and `sm verify`, never a traceback."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.support.s3_wire import WireRequest, wire_proxy

# the query each settings read sends (GET /bucket?…), and the check that reads it
SETTINGS_APIS = {
    "object-lock": ("object_lock", "cannot read the object lock configuration"),
    "versioning": ("versioning", "cannot read versioning"),
    "encryption": ("encryption", "cannot read default encryption"),
    "publicAccessBlock": ("public_access", "cannot read the public access block"),
}


def asks_for(query: str):
    def matches(request: WireRequest) -> bool:
        return request.method == "GET" and request.path.endswith(f"?{query}")
    return matches


@pytest.fixture
def store_without(cli, moto_endpoint: str) -> Any:
    """A bucket made by `sm bucket create`, reached through a relay that can answer 501."""
    proxy = wire_proxy(moto_endpoint)
    bucket = f"sm-501-{uuid.uuid4().hex[:10]}"
    through = ["--endpoint-url", proxy.url, "--allow-insecure-endpoint"]
    assert cli("bucket", "create", f"s3://{bucket}/", *through).exit_code == 0
    yield proxy, bucket, through
    proxy.reset()


@pytest.mark.parametrize("query", list(SETTINGS_APIS))
def test_connect_and_verify_warn_on_a_settings_api_the_store_lacks(cli, store_without,
                                                                    query: str) -> None:
    proxy, bucket, through = store_without
    proxy.unimplemented = asks_for(query)
    name, words = SETTINGS_APIS[query]

    connect = cli("--json", "connect", f"s3://{bucket}/", "--project", "5", *through)
    assert connect.exit_code == 0, connect.stderr
    assert "Traceback" not in connect.stderr
    assert json.loads(connect.stdout)["saved"] is True
    connected = {c["name"]: c for c in json.loads(connect.stdout)["checks"]}
    assert connected[name]["status"] == "warn"
    assert connected[name]["detail"] == f"{words} (NotImplemented / HTTP 501)"
    assert any(r.path.endswith(f"?{query}") for r in proxy.seen(bucket, "GET"))

    verify = cli("verify", "--project", "5")
    assert verify.exit_code == 0, verify.stderr
    assert "Traceback" not in verify.stderr
    assert f"{words} (NotImplemented / HTTP 501)" in verify.stdout


def test_retention_on_a_store_without_object_lock_fails_in_one_line(cli, store_without) -> None:
    proxy, bucket, through = store_without
    proxy.unimplemented = asks_for("object-lock")
    result = cli("connect", f"s3://{bucket}/", "--project", "6", "--retention-days", "1",
                 *through)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("Error:") == 1
    assert ("failed the object_lock check: cannot read the object lock configuration"
            " (NotImplemented / HTTP 501); retention is configured") in result.stderr


def test_gcs_settings_the_store_lacks_are_a_warning(cli, gcs_emulator, gcs_bucket,
                                                    monkeypatch) -> None:
    proxy = wire_proxy(gcs_emulator)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    bucket_resource = f"/storage/v1/b/{gcs_bucket}"
    proxy.unimplemented = lambda request: request.method == "GET" and (
        request.path.split("?")[0] in (bucket_resource, f"{bucket_resource}/iam"))
    try:
        result = cli("--json", "connect", f"gs://{gcs_bucket}/", "--project", "5",
                     "--allow-insecure-endpoint")
        verify = cli("verify", "--project", "5")
    finally:
        proxy.reset()
    assert result.exit_code == 0, result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["settings"]["status"] == "warn"
    assert checks["settings"]["detail"].startswith(
        f"cannot read the settings of gs://{gcs_bucket} (")
    assert "501" in checks["settings"]["detail"]
    assert verify.exit_code == 0, verify.stderr
    assert "Traceback" not in result.stderr + verify.stderr


def test_azure_settings_the_store_lacks_are_a_warning(cli, azurite_endpoint, azure_container,
                                                      monkeypatch) -> None:
    from tests.support.fixtures.azure import ACCOUNT, connection_string

    proxy = wire_proxy(azurite_endpoint.rsplit("/", 1)[0])
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       connection_string(f"{proxy.url}/{ACCOUNT}"))
    proxy.unimplemented = lambda request: request.method == "GET" and (
        "restype=service" in request.path
        or ("restype=container" in request.path and "comp=" not in request.path))
    try:
        result = cli("--json", "connect", f"az://{azure_container}/", "--project", "5",
                     "--allow-insecure-endpoint")
        verify = cli("verify", "--project", "5")
    finally:
        proxy.reset()
    assert result.exit_code == 0, result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["settings"]["status"] == "warn"
    assert checks["settings"]["detail"].startswith(
        f"cannot read the properties of container {azure_container} (")
    assert "501" in checks["settings"]["detail"]
    assert verify.exit_code == 0, verify.stderr
    assert "Traceback" not in result.stderr + verify.stderr
