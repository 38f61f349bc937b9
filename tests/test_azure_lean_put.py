"""The lean Azure PUT (`destinations/azure_put.py`) on the wire, against Azurite: with a
connection string every archive PUT goes out once, directly, as the Put Blob the SDK sends
(the same headers, signed the same way: Azurite checks the Shared Key signature), stores the
same blob, keeps create-only, and hands every answer but 201 and `BlobAlreadyExists` to the
SDK, which sends the blob again and fails exactly as it did before.

A recording relay (tests/support/lean_wire.py) sits between the destination and Azurite.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import ipaddress
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from stored_messages_cli.destinations import azure
from stored_messages_cli.destinations.azure import AzureDestination
from stored_messages_cli.destinations.azure_put import (
    AccountCredential,
    AzureLeanPut,
    connection_credential,
    shared_key_signature,
)
from stored_messages_cli.destinations.base import DestinationOptions
from stored_messages_cli.errors import DestinationError, ObjectConflict
from stored_messages_cli.retry import RATE_LIMITED, UNREACHABLE
from tests.support.fixtures.azure import (
    ACCOUNT,
    ACCOUNT_KEY,
    AZURITE_BIN,
    connection_string,
    free_port,
)
from tests.support.lean_wire import LOST, RESET, Relay, TokenServer

KEY = "archive/email/1/h/c/m ü+1.json.gz"
# set per request: not part of what must match the SDK's
PER_REQUEST = {"x-ms-date", "x-ms-client-request-id", "authorization", "user-agent",
               "connection"}


@pytest.fixture
def relay(azurite_endpoint: str, azure_service: Any, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Relay]:
    """The relay in front of Azurite; destinations made now talk to it (`azure_service`,
    made first, talks to Azurite directly)."""
    wire = Relay(azurite_endpoint)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       connection_string(f"{wire.url}/{ACCOUNT}"))
    yield wire
    wire.stop()


@pytest.fixture
def no_sdk_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK gives up at the first failure."""
    monkeypatch.setattr(azure, "SDK_RETRY_TOTAL", 0)


def destination(container: str, *, lean: bool = True) -> AzureDestination:
    made = AzureDestination(f"az://{container}/archive/",
                            DestinationOptions(allow_insecure_endpoint=True))
    made.lean_enabled = lean
    return made


def archived(text: str) -> tuple[bytes, str]:
    payload = f'{{"message":"{text}"}}'.encode()
    return gzip.compress(payload, mtime=0), hashlib.sha256(payload).hexdigest()


def storage_error(status: int, code: str) -> tuple[int, bytes, dict[str, str]]:
    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
            f"<Message>canned</Message></Error>").encode()
    return status, body, {"Content-Type": "application/xml", "x-ms-error-code": code}


def stored(service: Any, container: str, key: str) -> dict[str, Any]:
    blob = service.get_blob_client(container, key)
    properties = blob.get_blob_properties()
    settings = properties.content_settings
    return {"bytes": blob.download_blob().readall(), "md5": bytes(settings.content_md5),
            "size": properties.size, "metadata": properties.metadata,
            "content_type": settings.content_type,
            "content_encoding": settings.content_encoding, "blob_type": properties.blob_type}


# --------------------------------------------------------------------------- the request


def test_each_put_is_one_lean_request_the_sdks_own_and_stores_the_same_blob(
        relay: Relay, azure_service: Any, azure_container: str) -> None:
    other = f"sm-test-{uuid.uuid4().hex[:12]}"  # the same name, written by the SDK alone
    azure_service.create_container(other)
    body, sha = archived("m1")
    through_sdk, lean = destination(other, lean=False), destination(azure_container)
    try:
        assert through_sdk.put(KEY, body, sha).created
        sdk_request = relay.uploads()[-1]
        assert lean.put(KEY, body, sha).created
        lean_request = relay.uploads()[-1]
        for i in range(3):
            assert lean.put(f"archive/email/1/h/c/n{i}.json.gz", *archived(f"n{i}")).created
    finally:
        through_sdk.close()
        lean.close()
    assert [s.lean for s in relay.uploads()] == [False, True, True, True, True]
    assert all(s.action == "pass" for s in relay.uploads())  # Azurite took every signature
    assert lean_request.path == sdk_request.path.replace(other, azure_container)
    assert ({k: v for k, v in lean_request.headers.items() if k not in PER_REQUEST}
            == {k: v for k, v in sdk_request.headers.items() if k not in PER_REQUEST})
    assert lean_request.body == sdk_request.body == body
    assert stored(azure_service, azure_container, KEY) == stored(azure_service, other, KEY)


def test_puts_share_kept_alive_connections_up_to_max_connections(
        relay: Relay, azure_container: str) -> None:
    made = AzureDestination(f"az://{azure_container}/archive/", DestinationOptions(
        allow_insecure_endpoint=True, max_connections=3))
    try:
        assert made.put("archive/a.json.gz", *archived("a")).created
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda i: made.put(f"archive/b{i}.json.gz",
                                                       *archived(f"b{i}")), range(24)))
        assert all(r.created for r in results)
    finally:
        made.close()
    uploads = relay.uploads()
    assert len(uploads) == 25 and all(s.lean for s in uploads)
    assert 1 <= len({s.peer for s in uploads}) <= 3


def test_shared_key_signs_exactly_as_the_sdk_signs(relay: Relay, azure_container: str) -> None:
    """The SDK's own request, signed again by this path's signer: the same Authorization."""
    made = destination(azure_container, lean=False)
    try:
        assert made.put(KEY, *archived("m1")).created
    finally:
        made.close()
    request = relay.uploads()[-1]
    headers = {k: v for k, v in request.headers.items() if k != "authorization"}
    assert shared_key_signature(ACCOUNT, base64.b64decode(ACCOUNT_KEY), "PUT", request.path,
                                headers) == request.headers["authorization"]


def test_a_shared_access_signature_rides_in_the_query(
        relay: Relay, azure_service: Any, azure_container: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sas = generate_account_sas(ACCOUNT, ACCOUNT_KEY, ResourceTypes(object=True),
                               AccountSasPermissions(read=True, create=True, write=True),
                               expiry=datetime.now(UTC) + timedelta(hours=1))
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       f"BlobEndpoint={relay.url}/{ACCOUNT};SharedAccessSignature={sas}")
    body, sha = archived("m1")
    made = destination(azure_container)
    try:
        assert made.put(KEY, body, sha).created
    finally:
        made.close()
    [request] = relay.uploads()
    assert request.lean and "authorization" not in request.headers
    assert request.path.endswith("?" + sas) and request.action == "pass"
    assert stored(azure_service, azure_container, KEY)["bytes"] == body


# --------------------------------------------------------------------------- create-only


def test_a_taken_name_is_success_with_the_same_bytes_and_the_same_conflict_otherwise(
        relay: Relay, azure_container: str) -> None:
    body, sha = archived("m1")
    other_body, other_sha = archived("m2")
    lean, through_sdk = destination(azure_container), destination(azure_container, lean=False)
    try:
        assert lean.put(KEY, body, sha).created
        assert not lean.put(KEY, body, sha).created
        with pytest.raises(ObjectConflict) as lean_conflict:
            lean.put(KEY, other_body, other_sha)
        with pytest.raises(ObjectConflict) as sdk_conflict:
            through_sdk.put(KEY, other_body, other_sha)
    finally:
        lean.close()
        through_sdk.close()
    assert str(lean_conflict.value) == str(sdk_conflict.value)
    assert [s.lean for s in relay.uploads()] == [True, True, True, False]


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(("status", "code", "retry_class"), [
    (503, "ServerBusy", RATE_LIMITED),
    (429, "TooManyRequests", RATE_LIMITED),
    (500, "InternalError", UNREACHABLE),
    (403, "AuthenticationFailed", UNREACHABLE),
    (404, "ContainerNotFound", UNREACHABLE),
    (409, "LeaseIdMissing", UNREACHABLE),
])
def test_an_error_answer_goes_to_the_sdk_which_fails_exactly_as_before(
        relay: Relay, azure_container: str, no_sdk_retries: None, status: int, code: str,
        retry_class: str) -> None:
    reply = storage_error(status, code)
    relay.fault = lambda seen: reply if seen.upload else None
    errors = {}
    for lean in (True, False):
        made = destination(azure_container, lean=lean)
        try:
            with pytest.raises(DestinationError) as caught:
                made.put(KEY, *archived("m1"))
        finally:
            made.close()
        errors[lean] = (type(caught.value), str(caught.value), caught.value.retry_class)
        assert [s.lean for s in relay.uploads()] == ([True, False] if lean else [False])
        relay.seen.clear()
    assert errors[True] == errors[False]
    assert errors[True][2] == retry_class and code in errors[True][1]


def test_a_reset_connection_goes_to_the_sdk_which_fails_exactly_as_before(
        relay: Relay, azure_container: str, no_sdk_retries: None) -> None:
    relay.fault = lambda seen: RESET if seen.upload else None
    errors = {}
    for lean in (True, False):
        made = destination(azure_container, lean=lean)
        try:
            with pytest.raises(DestinationError) as caught:
                made.put(KEY, *archived("m1"))
        finally:
            made.close()
        errors[lean] = (type(caught.value), caught.value.retry_class)
    assert errors[True] == errors[False] == (DestinationError, UNREACHABLE)


@pytest.mark.parametrize("fault", [
    RESET, storage_error(500, "InternalError"),
    # a 409 that is not BlobAlreadyExists says nothing about this name being taken
    storage_error(409, "ConcurrentOperationInProgress")])
def test_a_lean_request_that_fails_once_is_stored_by_the_sdks_resend(
        relay: Relay, azure_service: Any, azure_container: str, fault: Any) -> None:
    relay.fault = lambda seen: fault if seen.lean else None
    body, sha = archived("m1")
    made = destination(azure_container)
    try:
        assert made.put(KEY, body, sha).created
        put = made.lean_put
        assert put is not None and (put.sent, put.handed_back) == (1, 1)
    finally:
        made.close()
    assert [s.lean for s in relay.uploads()] == [True, False]
    assert stored(azure_service, azure_container, KEY)["bytes"] == body


def test_a_lean_request_that_landed_but_lost_its_answer_is_found_by_the_resend(
        relay: Relay, azure_service: Any, azure_container: str) -> None:
    body, sha = archived("m1")
    relay.fault = lambda seen: LOST if seen.lean else None
    made = destination(azure_container)
    try:
        assert not made.put(KEY, body, sha).created  # the SDK met BlobAlreadyExists: ours
    finally:
        made.close()
    assert [(s.lean, s.action) for s in relay.uploads()] == [(True, LOST), (False, "pass")]
    assert stored(azure_service, azure_container, KEY)["bytes"] == body


def test_refresh_credentials_reads_a_rotated_connection_string(
        relay: Relay, azure_container: str, monkeypatch: pytest.MonkeyPatch) -> None:
    good = connection_string(f"{relay.url}/{ACCOUNT}")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       good.replace("AccountKey=Eby8", "AccountKey=Zby8"))
    made = destination(azure_container)
    try:
        with pytest.raises(DestinationError):
            made.put(KEY, *archived("m1"))
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", good)
        made.refresh_credentials()
        assert made.put(KEY, *archived("m1")).created
    finally:
        made.close()
    assert [(s.lean, s.action) for s in relay.uploads()][-1] == (True, "pass")


# --------------------------------------------------------------------------- when it stands down


def test_the_credentials_it_reads_and_those_it_leaves_to_the_sdk() -> None:
    key = connection_credential(connection_string("http://127.0.0.1:1/devstoreaccount1"))
    assert key == AccountCredential(ACCOUNT, account_key=base64.b64decode(ACCOUNT_KEY))
    assert connection_credential("BlobEndpoint=https://a.example;SharedAccessSignature=?sv=1&"
                                 "sig=x") == AccountCredential("", sas="sv=1&sig=x")
    assert connection_credential("UseDevelopmentStorage=true") is None
    assert connection_credential("AccountName=a;AccountKey=not base64!") is None
    assert connection_credential("BlobEndpoint=https://a.example") is None
    # no credential it can use (an account URL with the default Azure credential)
    off = AzureLeanPut("https://a.blob.core.windows.net", "c", None, api_version="2026-10-06",
                       max_connections=2, timeout=(1.0, 1.0), content_type="x")
    assert not off.enabled and off.put("k", b"x", {}) is None and off.sent == 0


def test_with_the_lean_path_off_every_put_goes_through_the_sdk(
        relay: Relay, azure_container: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SM_AZURE_LEAN_PUT", "0")
    made = AzureDestination(f"az://{azure_container}/archive/",
                            DestinationOptions(allow_insecure_endpoint=True))
    try:
        assert made.put(KEY, *archived("m1")).created
        assert made.lean_put is None
    finally:
        made.close()
    assert [s.lean for s in relay.uploads()] == [False]


def test_it_stands_down_where_a_proxy_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    credential = AccountCredential(ACCOUNT, account_key=b"k")

    def made() -> AzureLeanPut:
        return AzureLeanPut("https://a.blob.core.windows.net", "c", credential,
                            api_version="2026-10-06", max_connections=2, timeout=(1.0, 1.0),
                            content_type="x")

    assert made().enabled
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert not made().enabled


# --------------------------------------------------------------------------- Entra ID tokens


def managed_identity(lifetimes: list[int]) -> TokenServer:
    """An App Service managed-identity endpoint (what `DefaultAzureCredential` asks on App
    Service): hands out JWTs Azurite's `--oauth basic` accepts, reporting the given
    lifetimes as their expiry (the JWT itself stays valid for an hour)."""

    def answer(n: int, lifetime: int) -> dict[str, Any]:
        now = int(time.time())
        claims = {"aud": "https://storage.azure.com", "iss": "https://sts.windows.net/"
                  "00000000-0000-0000-0000-000000000001/", "iat": now - 60, "nbf": now - 60,
                  "exp": now + 3600, "n": n}
        jwt = ".".join(base64.urlsafe_b64encode(json.dumps(part).encode()).decode()
                       .rstrip("=") for part in ({"alg": "RS256", "typ": "JWT"}, claims)) + ".c2ln"
        return {"access_token": jwt, "expires_on": str(now + lifetime),
                "resource": "https://storage.azure.com", "token_type": "Bearer"}

    return TokenServer(lifetimes, answer, "/msi/token")


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
                ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def azurite_oauth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An Azurite of its own over HTTPS with `--oauth basic` (bearer tokens checked for issuer,
    audience and lifetime); its certificate trusted through REQUESTS_CA_BUNDLE, as an operator
    would. Yields the account URL."""
    cert_file, key_file = self_signed(tmp_path)
    port = free_port()
    log = tmp_path / "azurite.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", str(port),
             "--skipApiVersionCheck", "--inMemoryPersistence", "--silent", "--oauth", "basic",
             "--cert", str(cert_file), "--key", str(key_file)],
            stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Azurite did not start: {log.read_text(errors='replace')}")
                time.sleep(0.1)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
        monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
        for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET",
                     "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME",
                     "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT", "MSI_SECRET",
                     "IDENTITY_SERVER_THUMBPRINT"):
            monkeypatch.delenv(name, raising=False)
        yield f"https://127.0.0.1:{port}/{ACCOUNT}"
    finally:
        process.kill()
        process.wait(timeout=10)


def test_default_azure_credential_tokens_sign_each_put_and_a_token_due_is_renewed(
        azurite_oauth: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--account-url` with the default Azure credential (App Service managed identity, its
    endpoint local): every PUT goes out lean with a bearer token Azurite checks. A token
    reported as expired is asked for again before the next PUT; one valid for an hour is
    reused; `refresh_credentials` starts afresh."""
    tokens = managed_identity([3600, -1, 3600])  # the first for `admin`, its own credential
    monkeypatch.setenv("IDENTITY_ENDPOINT", tokens.url)
    monkeypatch.setenv("IDENTITY_HEADER", "sm-test")
    from azure.identity import DefaultAzureCredential
    from azure.storage.blob import BlobServiceClient

    container = f"sm-test-{uuid.uuid4().hex[:12]}"
    admin = BlobServiceClient(azurite_oauth, credential=DefaultAzureCredential())
    made = AzureDestination(f"az://{container}/archive/",
                            DestinationOptions(account_url=azurite_oauth))
    try:
        admin.create_container(container)
        issued_before = tokens.issued
        for i in range(3):
            assert made.put(f"archive/k{i}.json.gz", *archived(f"k{i}")).created
        put = made.lean_put
        assert put is not None and (put.sent, put.handed_back) == (3, 0)
        # the first token was due at once: a second one, then reused
        assert tokens.issued - issued_before == 2
        body, sha = archived("k0")
        assert not made.put("archive/k0.json.gz", body, sha).created  # create-only
        blob = admin.get_blob_client(container, "archive/k0.json.gz")
        assert blob.download_blob().readall() == body
        assert blob.get_blob_properties().metadata == {"sm_payload_sha256": sha}
    finally:
        made.close()
        admin.close()
        tokens.stop()


def test_a_token_is_never_sent_over_plain_http() -> None:
    class NoToken:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise AssertionError("not asked")

    credential = AccountCredential("", token_credential=NoToken())
    plain = AzureLeanPut("http://127.0.0.1:1/devstoreaccount1", "c", credential,
                         api_version="2026-10-06", max_connections=1, timeout=(1.0, 1.0),
                         content_type="x")
    assert not plain.enabled and plain.put("k", b"x", {}) is None


def test_a_certificate_the_bundle_does_not_trust_is_refused_by_both_paths(
        azurite_oauth: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without REQUESTS_CA_BUNDLE the self-signed certificate is not trusted: the lean path's
    TLS check fails, it hands the PUT to the SDK, whose own check fails the same way."""
    tokens = managed_identity([3600])
    monkeypatch.setenv("IDENTITY_ENDPOINT", tokens.url)
    monkeypatch.setenv("IDENTITY_HEADER", "sm-test")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setattr(azure, "SDK_RETRY_TOTAL", 0)
    made = AzureDestination("az://c/archive/", DestinationOptions(account_url=azurite_oauth))
    try:
        with pytest.raises(DestinationError) as caught:
            made.put("archive/k.json.gz", *archived("k"))
        put = made.lean_put
        assert put is not None and (put.sent, put.handed_back) == (1, 1)
    finally:
        made.close()
        tokens.stop()
    assert caught.value.retry_class == UNREACHABLE
    assert "certificate" in str(caught.value).lower()
