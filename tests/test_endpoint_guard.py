"""Every endpoint is guarded: whatever source the SDK takes its endpoint from
(`--endpoint-url`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, a profile's `endpoint_url`,
`AWS_ENDPOINT_URL_STS`, `API_ENDPOINT_OVERRIDE`, an Azure connection string), plain http is
refused unless allowed, and then only for loopback hosts; `verify` names the endpoint really
used. A URL with credentials in it is refused without repeating the secret, and nothing is
saved."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.destinations.base import DestinationOptions
from stored_messages_cli.errors import ConfigError

SECRET = "hunter2-s3cr3t"
ROLE = "arn:aws:iam::123456789012:role/sm-archiver"


def saved(home: Path) -> dict[str, Any]:
    config = home / "config.toml"
    return tomllib.loads(config.read_text()).get("projects", {}) if config.exists() else {}


def assert_refused(result: Any, message: str, home: Path, code: int = 1) -> None:
    """Exit `code`, exactly one `Error:` line holding `message`, no traceback, nothing saved."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    assert message in errors[0], result.stderr
    assert saved(home) == {}


@pytest.fixture(autouse=True)
def _no_configured_endpoints(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS",
                 "AWS_PROFILE", "API_ENDPOINT_OVERRIDE"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "aws-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))


# --------------------------------------------------------------------------- S3


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"])
def test_a_plain_http_endpoint_from_the_environment_is_refused(
        cli, sm_home, moto_endpoint, s3_bucket, s3_client, monkeypatch, variable) -> None:
    # A real, answering S3 on loopback: without the check, connect would succeed over http.
    monkeypatch.setenv(variable, moto_endpoint)
    result = cli("connect", f"s3://{s3_bucket}/", "--project", "12345")
    assert_refused(result, f"endpoint {moto_endpoint} (from {variable}) is plain http;"
                   " archives must travel over TLS", sm_home)
    assert f"Try: use an https:// endpoint in {variable}, or unset it" in result.stderr
    assert s3_client.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0  # no test write


def test_a_remote_http_endpoint_from_the_environment_is_refused_even_with_the_flag(
        cli, sm_home, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3.example.com")
    result = cli("connect", "s3://acme-archive/", "--project", "12345",
                 "--allow-insecure-endpoint")
    assert_refused(result, "--allow-insecure-endpoint is only accepted for loopback hosts, not"
                   " s3.example.com (from AWS_ENDPOINT_URL_S3)", sm_home)


def test_a_profiles_endpoint_url_is_refused(cli, sm_home, tmp_path, monkeypatch) -> None:
    config = tmp_path / "aws-config-with-endpoint"
    config.write_text("[profile archive]\nendpoint_url = http://s3.example.com\n"
                      "region = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    result = cli("connect", "s3://acme-archive/", "--project", "12345", "--profile", "archive")
    assert_refused(result, "endpoint http://s3.example.com (from the endpoint_url of AWS"
                   " profile archive (AWS config file)) is plain http", sm_home)


def test_the_sts_endpoint_of_a_role_obeys_the_same_rule(cli, sm_home, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://sts.example.com")
    result = cli("connect", "s3://acme-archive/", "--project", "12345", "--role-arn", ROLE,
                 "--external-id", "ext-id-1")
    assert_refused(result, "endpoint http://sts.example.com (from AWS_ENDPOINT_URL_STS) is"
                   " plain http", sm_home)


def test_verify_names_the_endpoint_really_used(cli, sm_home, moto_endpoint, s3_bucket,
                                               monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    connected = cli("connect", f"s3://{s3_bucket}/archive/", "--project", "12345",
                    "--allow-insecure-endpoint")
    assert connected.exit_code == 0, connected.stderr
    result = cli("--json", "verify")
    assert result.exit_code == 0, result.output  # test buckets block public access
    tls = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "tls")
    assert tls == {"name": "tls", "status": "warn",
                   "detail": f"plain http to loopback endpoint {moto_endpoint} (allowed by"
                   " --allow-insecure-endpoint; for tests only)"}


def test_the_tls_line_names_the_default_aws_endpoint() -> None:
    from stored_messages_cli.destinations.base import endpoint_check
    from stored_messages_cli.destinations.s3 import S3Destination

    destination = S3Destination("s3://acme-archive/", DestinationOptions(region="eu-west-1"))
    assert destination.endpoint_url == "https://s3.eu-west-1.amazonaws.com"
    assert endpoint_check(destination.endpoint_url).detail == (
        "HTTPS to https://s3.eu-west-1.amazonaws.com")


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(("args", "what", "code"), [
    # The destination URL is an argument: a bad one is a usage error (exit 2).
    (["s3://user:{secret}@acme-archive/"], "the destination URL s3://acme-archive/", 2),
    (["s3://acme-archive/", "--endpoint-url", "https://key:{secret}@s3.example.com"],
     "the endpoint https://s3.example.com", 1),
    (["s3://acme-archive/", "--endpoint-url", "http://key:{secret}@127.0.0.1:9",
      "--allow-insecure-endpoint"], "the endpoint http://127.0.0.1:9", 1),
    (["az://archive/", "--account-url",
      "https://acct.blob.core.windows.net/?sv=2024-01-01&sig={secret}"],
     "the account URL https://acct.blob.core.windows.net/", 1),
])
def test_a_url_with_credentials_is_refused_without_echoing_them(cli, sm_home, caplog, args,
                                                                what, code) -> None:
    result = cli("connect", *[a.format(secret=SECRET) for a in args], "--project", "12345")
    assert_refused(result, what, sm_home, code)
    assert "credentials in it" in result.stderr or "signature or key" in result.stderr
    assert SECRET not in result.output
    assert SECRET not in caplog.text
    assert not (sm_home / "config.toml").exists() or SECRET not in (
        sm_home / "config.toml").read_text()


def test_credentials_in_an_environment_endpoint_are_refused_without_echoing_them(
        cli, sm_home, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"https://user:{SECRET}@s3.example.com")
    result = cli("connect", "s3://acme-archive/", "--project", "12345")
    assert_refused(result, "the endpoint https://s3.example.com has credentials in it", sm_home)
    assert SECRET not in result.output


# --------------------------------------------------------------------------- GCS and Azure


def test_the_gcs_api_endpoint_override_obeys_the_rule(monkeypatch) -> None:
    from stored_messages_cli.destinations.gcs import GCSDestination

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("API_ENDPOINT_OVERRIDE", "http://storage.example.com")
    with pytest.raises(ConfigError, match=r"^endpoint http://storage\.example\.com \(from"
                       r" API_ENDPOINT_OVERRIDE\) is plain http"):
        GCSDestination("gs://acme-archive/", DestinationOptions())
    with pytest.raises(ConfigError, match=r"only accepted for loopback hosts, not"
                       r" storage\.example\.com \(from API_ENDPOINT_OVERRIDE\)"):
        GCSDestination("gs://acme-archive/", DestinationOptions(allow_insecure_endpoint=True))


def test_an_azure_connection_string_over_plain_http_is_refused(cli, sm_home,
                                                              monkeypatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey="
                       "a2V5;EndpointSuffix=core.windows.net")
    result = cli("connect", "az://archive/", "--project", "12345")
    assert_refused(result, "endpoint http://acct.blob.core.windows.net (from"
                   " AZURE_STORAGE_CONNECTION_STRING) is plain http", sm_home)
