"""`az://` destinations against Azurite, through the real azure-storage-blob SDK.

Azurite has no immutability policies; that one check is shown on the SDK's own
ContainerProperties model with the immutability flags set, as the service would report them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.storage.blob import ContainerProperties, ContentSettings

from stored_messages_cli.destinations import azure
from stored_messages_cli.destinations.azure import (
    AzureDestination,
    container_checks,
    immutability_check,
)
from stored_messages_cli.destinations.base import DestinationOptions
from stored_messages_cli.errors import ConfigError, DestinationError, IntegrityError
from stored_messages_cli.message import gzip_body, payload_bytes, sha256_hex
from stored_messages_cli.retry import RATE_LIMITED, UNREACHABLE, classify
from tests.support.cloud_pipeline import assert_investigation_works
from tests.support.fixtures.azure import ACCOUNT, connection_string
from tests.support.fixtures.cloud_faults import CannedReply, canned_server, closed_port
from tests.support.fixtures.core import jsonl

EMAIL_KEY = ("email/12345/b7e0d8372a47f54bbefeb251ab9ac1e9e6b2d1983263de10196101be3961ed23/"
             "1234567/9c438a20d26e4e9f8ad4edea23f811cd.json.gz")
INSECURE = DestinationOptions(allow_insecure_endpoint=True)


# --------------------------------------------------------------------------- end to end


def test_connect_ingest_run_find_fetch_rebuild_store_the_exact_gzip_bytes_in_azure(
        cli, azure_service, azure_container, make_message, tmp_path) -> None:
    url = f"az://{azure_container}/archive/"
    connected = cli("connect", url, "--project", "12345", "--allow-insecure-endpoint")
    assert connected.exit_code == 0, connected.output
    message = make_message()
    assert cli("ingest", "-", input=jsonl(message)).exit_code == 0
    ran = cli("run", "--once")
    assert ran.exit_code == 0, ran.output

    document = dict(message, project_id="12345", campaign_id="1234567", template_id="42")
    payload = payload_bytes(document)
    blob = azure_service.get_blob_client(azure_container, f"archive/{EMAIL_KEY}")
    assert blob.download_blob().readall() == gzip_body(payload)
    properties = blob.get_blob_properties()
    assert properties.metadata == {"sm_payload_sha256": sha256_hex(payload)}
    assert properties.content_settings.content_type == "application/gzip"
    assert properties.content_settings.content_encoding is None
    assert bytes(properties.content_settings.content_md5) == hashlib.md5(
        gzip_body(payload)).digest()
    container = azure_service.get_container_client(azure_container)
    names = sorted(b.name for b in container.list_blobs())
    assert [n for n in names if not n.startswith("archive/_sm/")] == [f"archive/{EMAIL_KEY}"]
    # the run sealed its manifest beside the objects: segment 1 of the project
    assert [n.rsplit("/", 1)[-1] for n in names if n.startswith("archive/_sm/manifests/12345/")
            ] == ["000000000001.jsonl.gz"]

    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"]["stored"] == 1
    assert [(d["url"], d["health"]) for d in status["destinations"]] == [(url, "ok")]
    assert_investigation_works(cli, url, message, f"archive/{EMAIL_KEY}", payload,
                               tmp_path / "other-home")


def test_destination_reads_back_with_the_sm_metadata_name(azure_destination) -> None:
    """get/head/list (find, fetch, index rebuild) map `sm_payload_sha256` back."""
    payload = payload_bytes({"message_id": "m-1"})
    key = f"archive/{EMAIL_KEY}"
    azure_destination.put(key, gzip_body(payload), sha256_hex(payload))
    fetched = azure_destination.get(key)
    assert fetched.body == gzip_body(payload)
    assert fetched.info.metadata == {"sm-payload-sha256": sha256_hex(payload)}
    assert azure_destination.head(key).payload_sha256 == sha256_hex(payload)
    listed = list(azure_destination.list("archive/email/"))
    assert [(i.key, i.size, i.payload_sha256) for i in listed] == [
        (key, len(gzip_body(payload)), sha256_hex(payload))]


def test_connect_refuses_the_plain_http_emulator_without_the_flag(cli, azure_container) -> None:
    result = cli("connect", f"az://{azure_container}/archive/", "--project", "12345")
    assert result.exit_code == 1
    assert "is plain http" in result.stderr
    assert json.loads(cli("--json", "destinations").stdout) == []


def test_without_an_account_connect_names_both_ways_to_give_one(cli, monkeypatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    result = cli("connect", "az://archive/", "--project", "12345")
    assert result.exit_code == 1
    assert "needs an account: --account-url or AZURE_STORAGE_CONNECTION_STRING" in result.stderr
    assert "Try: sm connect az://archive/ --account-url https://ACCOUNT.blob.core.windows.net" \
        in result.stderr


def test_an_http_account_url_off_loopback_is_refused(monkeypatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    with pytest.raises(ConfigError, match="only accepted for loopback hosts"):
        AzureDestination("az://c/", DestinationOptions(
            account_url="http://acct.blob.core.windows.net", allow_insecure_endpoint=True))
    with pytest.raises(ConfigError, match="is plain http"):
        AzureDestination("az://c/", DestinationOptions(account_url="http://127.0.0.1:1/a"))


def test_an_account_url_uses_the_default_azure_credential(monkeypatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    destination = AzureDestination("az://archive/messages/", DestinationOptions(
        account_url="https://acct.blob.core.windows.net/"))
    assert destination.account_url == "https://acct.blob.core.windows.net"
    service = destination._make_service()
    assert type(service.credential).__name__ == "DefaultAzureCredential"
    destination.close()


def test_a_connection_string_for_another_account_yields_to_account_url(
        azurite_endpoint) -> None:
    destination = AzureDestination("az://c/", DestinationOptions(
        account_url="https://acct.blob.core.windows.net"))
    assert destination.account_url == "https://acct.blob.core.windows.net"
    destination.close()
    same = AzureDestination("az://c/", DestinationOptions(account_url=azurite_endpoint,
                                                          allow_insecure_endpoint=True))
    assert type(same._make_service().credential).__name__ == "SharedKeyCredentialPolicy"
    same.close()


def test_a_blob_whose_bytes_differ_from_its_stored_md5_fails_on_get(
        no_sdk_retries, azure_destination, azure_service, azure_container) -> None:
    payload = payload_bytes({"message_id": "m-2"})
    key = "archive/email/1/h/c/m-2.json.gz"
    azure_destination.put(key, gzip_body(payload), sha256_hex(payload))
    blob = azure_service.get_blob_client(azure_container, key)
    blob.set_http_headers(ContentSettings(content_type="application/gzip",
                                          content_md5=bytearray(hashlib.md5(b"other").digest())))
    with pytest.raises(IntegrityError, match="Content-MD5"):
        azure_destination.get(key)


# --------------------------------------------------------------------------- errors


@pytest.fixture
def no_sdk_retries(monkeypatch) -> None:
    """Make the SDK give up at the first failure, so error tests take milliseconds."""
    monkeypatch.setattr(azure, "SDK_RETRY_TOTAL", 0)


def _storage_error(status: int, code: str) -> CannedReply:
    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
            f"<Message>canned</Message></Error>").encode()
    return CannedReply(status, body, {"Content-Type": "application/xml", "x-ms-error-code": code})


@pytest.mark.parametrize(("status", "code", "retry_class"), [
    (503, "ServerBusy", RATE_LIMITED),
    (429, "TooManyRequests", RATE_LIMITED),
    (500, "InternalError", UNREACHABLE),
    (500, "OperationTimedOut", UNREACHABLE),
    (403, "AuthenticationFailed", UNREACHABLE),
    (403, "AuthorizationPermissionMismatch", UNREACHABLE),
    (404, "ContainerNotFound", UNREACHABLE),
])
def test_service_errors_on_the_wire_get_their_retry_class(
        monkeypatch, no_sdk_retries, status, code, retry_class) -> None:
    reply = _storage_error(status, code)
    with canned_server(reply) as url:
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                           connection_string(f"{url}/{ACCOUNT}"))
        destination = AzureDestination("az://c/archive/", INSECURE)
        with pytest.raises(DestinationError) as caught:
            destination.put("archive/k.json.gz", b"x", "0" * 64)
        destination.close()
    assert caught.value.retry_class == retry_class
    assert code in str(caught.value)


def test_a_missing_container_is_unreachable_everywhere(azurite_endpoint) -> None:
    destination = AzureDestination("az://sm-no-such-container/archive/", INSECURE)
    for call in (lambda: destination.put("archive/k", b"x", "0" * 64),
                 lambda: destination.get("archive/k"),
                 lambda: destination.head("archive/k")):
        with pytest.raises(DestinationError) as caught:
            call()
        assert caught.value.retry_class == UNREACHABLE
        assert "ContainerNotFound" in str(caught.value)
    destination.close()


def test_a_wrong_account_key_is_unreachable(azurite_endpoint, azure_container,
                                            monkeypatch) -> None:
    wrong = connection_string(azurite_endpoint).replace("AccountKey=Eby8", "AccountKey=Zby8")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", wrong)
    destination = AzureDestination(f"az://{azure_container}/archive/", INSECURE)
    with pytest.raises(DestinationError) as caught:
        destination.put("archive/k.json.gz", b"x", "0" * 64)
    assert caught.value.retry_class == UNREACHABLE
    assert "HTTP 403" in str(caught.value)
    destination.close()


def test_refresh_credentials_picks_up_a_rotated_connection_string(
        azurite_endpoint, azure_container, monkeypatch) -> None:
    wrong = connection_string(azurite_endpoint).replace("AccountKey=Eby8", "AccountKey=Zby8")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", wrong)
    destination = AzureDestination(f"az://{azure_container}/archive/", INSECURE)
    with pytest.raises(DestinationError):
        destination.put("archive/k.json.gz", b"x", "0" * 64)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(azurite_endpoint))
    destination.refresh_credentials()
    assert destination.put("archive/k.json.gz", b"x", "0" * 64).created
    destination.close()


def test_an_unreachable_container_fails_the_reachable_check_alone(azurite_endpoint) -> None:
    destination = AzureDestination("az://sm-no-such-container/archive/", INSECURE)
    checks = destination.checks()
    assert [(c.name, c.status) for c in checks] == [("reachable", "fail")]
    assert "ContainerNotFound" in checks[0].detail
    destination.close()


def test_a_container_deleted_after_connect_waits_as_unreachable_until_replayed(
        cli, azure_service, azure_container, make_message) -> None:
    url = f"az://{azure_container}/archive/"
    assert cli("connect", url, "--project", "12345", "--allow-insecure-endpoint").exit_code == 0
    azure_service.delete_container(azure_container)
    assert cli("ingest", "-", input=jsonl(make_message())).exit_code == 0
    assert cli("run", "--once").exit_code == 1  # the pass ended unreachable (SPEC 8)
    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"]["retry_wait"] == 1
    assert status["counts"]["stored"] == 0
    assert status["destinations"][0]["health"] == "unreachable"
    # the operator restores it and replays instead of waiting 8 hours
    azure_service.create_container(azure_container)
    replayed = cli("replay")
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(cli("--json", "status").stdout)["counts"]["stored"] == 1


def test_a_closed_port_is_unreachable(monkeypatch, no_sdk_retries) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}/{ACCOUNT}"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(endpoint))
    destination = AzureDestination("az://c/archive/", INSECURE)
    with pytest.raises(DestinationError) as caught:
        destination.put("archive/k.json.gz", b"x", "0" * 64)
    assert caught.value.retry_class == UNREACHABLE
    destination.close()


def _http_error(cls: type[HttpResponseError], status: int, code: str) -> HttpResponseError:
    error = cls(message=f"{code} (canned)")
    error.status_code = status
    error.error_code = code
    return error


@pytest.mark.parametrize(("exc", "retry_class"), [
    (_http_error(HttpResponseError, 503, "ServerBusy"), RATE_LIMITED),
    (_http_error(HttpResponseError, 429, "TooManyRequests"), RATE_LIMITED),
    (_http_error(HttpResponseError, 500, "InternalError"), UNREACHABLE),
    (_http_error(ClientAuthenticationError, 403, "AuthenticationFailed"), UNREACHABLE),
    (_http_error(ResourceNotFoundError, 404, "ContainerNotFound"), UNREACHABLE),
    (ServiceRequestError("connection refused"), UNREACHABLE),
])
def test_sdk_exception_objects_are_classified(exc, retry_class) -> None:
    assert classify(exc) == retry_class


# --------------------------------------------------------------------------- checks


def _by_name(checks: list[Any]) -> dict[str, tuple[str, str]]:
    return {c.name: (c.status, c.detail) for c in checks}


def test_a_private_container_passes_and_a_public_one_fails(
        azure_service, azure_destination, azure_container) -> None:
    checks = _by_name(azure_destination.checks())
    assert checks["tls"][0] == "warn"  # plain http to loopback Azurite
    assert checks["public_access"] == ("pass", "the container is private")
    assert checks["encryption"][0] == "pass"
    azure_service.get_container_client(azure_container).set_container_access_policy(
        signed_identifiers={}, public_access="blob")
    public = next(c for c in azure_destination.checks() if c.name == "public_access")
    assert public.status == "fail"
    assert "anonymous blob-level read access" in public.detail
    assert public.hint == (f"az storage container set-permission --name {azure_container}"
                           " --public-access off --account-name devstoreaccount1")


def test_soft_delete_is_read_from_the_account(azure_service, azure_destination) -> None:
    from azure.storage.blob import RetentionPolicy

    before = azure_service.get_service_properties()["delete_retention_policy"]
    azure_service.set_service_properties(delete_retention_policy=RetentionPolicy(True, 14))
    try:
        checks = _by_name(azure_destination.checks())
        assert checks["soft_delete"] == (
            "pass", "blob soft delete keeps deleted blobs for 14 days")
    finally:
        azure_service.set_service_properties(delete_retention_policy=before)


def test_connect_with_retention_on_a_container_without_immutability_reports_a_failure(
        cli, azure_container, azure_service) -> None:
    result = cli("--json", "connect", f"az://{azure_container}/archive/", "--project", "7",
                 "--allow-insecure-endpoint", "--retention-days", "30")
    document = json.loads(result.stdout)
    found = [c for c in document["checks"] if c["name"] == "immutability"]
    assert found[0]["status"] == "fail"
    kept = list(azure_service.get_container_client(azure_container).list_blobs(
        name_starts_with="archive/_sm/"))
    assert len(kept) == 1  # the test object stays when retention is asked


def test_immutability_as_the_service_reports_it() -> None:
    """Narrow fake: Azurite has no immutability policies, so the SDK's ContainerProperties
    model is filled in the way Azure fills it for a container with a retention policy."""
    locked = ContainerProperties()
    locked.has_immutability_policy = True
    assert immutability_check(locked, None).status == "pass"
    assert "at least 30 days" in immutability_check(locked, 30).detail
    plain = ContainerProperties()
    assert immutability_check(plain, 30).status == "fail"
    assert immutability_check(plain, None).status == "warn"
    worm = ContainerProperties()
    worm.immutable_storage_with_versioning_enabled = True
    assert immutability_check(worm, None).status == "pass"
    public = ContainerProperties()
    public.public_access = "container"
    assert _by_name(container_checks(public, None, None))["public_access"][0] == "fail"
    assert _by_name(container_checks(public, None, None))["soft_delete"][0] == "warn"
