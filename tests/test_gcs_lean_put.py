"""The lean GCS PUT (`destinations/gcs_put.py`) on the wire, against gcp-storage-emulator: every
archive PUT goes out once, directly, as the very request the SDK sends (byte for byte but the
random part boundary), stores the same object, keeps create-only, and hands every answer but
200 and 412 to the SDK, which sends the object again and fails exactly as it did before.

A recording relay sits between the destination and the emulator; it can answer a request
with a canned error or reset its connection instead of passing it on.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from stored_messages_cli.destinations import gcs
from stored_messages_cli.destinations.base import DestinationOptions
from stored_messages_cli.destinations.gcs import GCSDestination
from stored_messages_cli.destinations.gcs_put import GCSLeanPut
from stored_messages_cli.errors import DestinationError, ObjectConflict
from stored_messages_cli.retry import RATE_LIMITED, UNREACHABLE
from tests.support.lean_wire import LOST, RESET, Relay, Seen, TokenServer

JSON = {"Content-Type": "application/json; charset=UTF-8"}
_BOUNDARY = re.compile(rb"={15}\d{19}==")


@pytest.fixture
def relay(gcs_emulator: str, gcs_client: Any, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Relay]:
    """The relay in front of the emulator; destinations made now talk to it (`gcs_client`,
    made first, talks to the emulator directly)."""
    wire = Relay(gcs_emulator)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", wire.url)
    yield wire
    wire.stop()


@pytest.fixture
def quick_sdk_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's own retries give up in well under a second."""
    monkeypatch.setattr(gcs, "SDK_RETRY_SECONDS", 0.3)


def destination(bucket: str, *, lean: bool = True, **options: Any) -> GCSDestination:
    made = GCSDestination(f"gs://{bucket}/archive/",
                          DestinationOptions(allow_insecure_endpoint=True, **options))
    made.lean_enabled = lean
    return made


def archived(text: str) -> tuple[bytes, str]:
    payload = f'{{"message":"{text}"}}'.encode()
    return gzip.compress(payload, mtime=0), hashlib.sha256(payload).hexdigest()


def error_json(status: int, reason: str) -> bytes:
    return json.dumps({"error": {"code": status, "message": "canned",
                                 "errors": [{"reason": reason, "message": "canned"}]}}).encode()


def stored(gcs_client: Any, bucket: str, key: str) -> dict[str, Any]:
    blob = gcs_client.bucket(bucket).get_blob(key)
    return {"bytes": blob.download_as_bytes(raw_download=True), "crc32c": blob.crc32c,
            "md5": blob.md5_hash, "size": blob.size, "metadata": blob.metadata,
            "content_type": blob.content_type, "content_encoding": blob.content_encoding}


KEY = "archive/email/1/h/c/m ü+1.json.gz"


# --------------------------------------------------------------------------- the request


def test_each_put_is_one_lean_request_the_sdks_own_and_stores_the_same_object(
        relay: Relay, gcs_client: Any, gcs_bucket: str) -> None:
    other = f"sm-test-{uuid.uuid4().hex[:12]}"  # the same key, written by the SDK alone
    gcs_client.create_bucket(other)
    body, sha = archived("m1")
    through_sdk, lean = destination(other, lean=False), destination(gcs_bucket)
    try:
        assert through_sdk.put(KEY, body, sha).created
        sdk_request = relay.uploads()[-1]
        answer = lean.put(KEY, body, sha)
        lean_request = relay.uploads()[-1]
        for i in range(3):
            assert lean.put(f"archive/email/1/h/c/n{i}.json.gz", *archived(f"n{i}")).created
    finally:
        through_sdk.close()
        lean.close()
    assert not sdk_request.lean and lean_request.lean
    # one request a PUT, every one of them lean: the SDK sent none
    assert [s.lean for s in relay.uploads()] == [False, True, True, True, True]
    assert lean.lean_put is None  # closed
    # the same request: path and query (but the bucket), headers, body (but the boundary)
    assert lean_request.path == sdk_request.path.replace(other, gcs_bucket)
    assert "ifGenerationMatch=0" in lean_request.path
    assert set(lean_request.headers) - {"connection"} == set(sdk_request.headers) - {
        "connection"}
    for name in ("accept", "accept-encoding", "x-upload-content-type"):
        assert lean_request.headers[name] == sdk_request.headers[name]
    assert (_BOUNDARY.sub(b"B", lean_request.headers["content-type"].encode())
            == _BOUNDARY.sub(b"B", sdk_request.headers["content-type"].encode()))
    assert _BOUNDARY.sub(b"B", lean_request.body) == _BOUNDARY.sub(b"B", sdk_request.body)
    # the same object stored
    assert stored(gcs_client, gcs_bucket, KEY) == stored(gcs_client, other, KEY)
    assert stored(gcs_client, gcs_bucket, KEY)["bytes"] == body
    assert answer.version_id == str(gcs_client.bucket(gcs_bucket).get_blob(KEY).generation)


def test_puts_share_kept_alive_connections_up_to_max_connections(
        relay: Relay, gcs_bucket: str) -> None:
    one, three = destination(gcs_bucket, max_connections=1), destination(
        gcs_bucket, max_connections=3)
    try:
        for i in range(4):  # one after the other: one connection
            assert one.put(f"archive/a{i}.json.gz", *archived(f"a{i}")).created
        sequential = {s.peer for s in relay.uploads()}
        relay.seen.clear()
        with ThreadPoolExecutor(3) as pool:  # three at a time: at most three connections
            results = list(pool.map(lambda i: three.put(f"archive/b{i}.json.gz",
                                                        *archived(f"b{i}")), range(24)))
        assert all(r.created for r in results)
        put = three.lean_put
        assert put is not None and (put.sent, put.handed_back) == (24, 0)
    finally:
        one.close()
        three.close()
    assert len(sequential) == 1
    assert all(s.lean for s in relay.uploads()) and len(relay.uploads()) == 24
    assert 1 <= len({s.peer for s in relay.uploads()}) <= 3


# --------------------------------------------------------------------------- create-only


def test_a_taken_key_is_success_with_the_same_bytes_and_the_same_conflict_otherwise(
        relay: Relay, gcs_bucket: str) -> None:
    body, sha = archived("m1")
    other_body, other_sha = archived("m2")
    lean, through_sdk = destination(gcs_bucket), destination(gcs_bucket, lean=False)
    try:
        first = lean.put(KEY, body, sha)
        again = lean.put(KEY, body, sha)
        assert (first.created, again.created) == (True, False)
        assert again.version_id == first.version_id
        with pytest.raises(ObjectConflict) as lean_conflict:
            lean.put(KEY, other_body, other_sha)
        with pytest.raises(ObjectConflict) as sdk_conflict:
            through_sdk.put(KEY, other_body, other_sha)
    finally:
        lean.close()
        through_sdk.close()
    assert str(lean_conflict.value) == str(sdk_conflict.value)
    # the lean path met the 412s itself: no upload by the SDK after the first
    uploads = relay.uploads()
    assert [(s.lean, s.action) for s in uploads] == [(True, "pass")] * 3 + [(False, "pass")]


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(("status", "reason", "retry_class"), [
    (429, "rateLimitExceeded", RATE_LIMITED),
    (503, "backendError", UNREACHABLE),
    (500, "internalError", UNREACHABLE),
    (401, "required", UNREACHABLE),
    (403, "forbidden", UNREACHABLE),
    (404, "notFound", UNREACHABLE),
])
def test_an_error_answer_goes_to_the_sdk_which_fails_exactly_as_before(
        relay: Relay, gcs_bucket: str, quick_sdk_retries: None, status: int, reason: str,
        retry_class: str) -> None:
    reply = (status, error_json(status, reason), JSON)
    relay.fault = lambda seen: reply if seen.upload else None
    errors = {}
    for lean in (True, False):
        made = destination(gcs_bucket, lean=lean)
        try:
            with pytest.raises(DestinationError) as caught:
                made.put(KEY, *archived("m1"))
        finally:
            made.close()
        errors[lean] = (type(caught.value), str(caught.value), caught.value.retry_class)
        uploads = relay.uploads()
        relay.seen.clear()
        # the lean path sent it once, then the SDK sent it (and retried what it retries)
        assert [s.lean for s in uploads[:1]] == [lean]
        assert len(uploads) >= 1 + lean and not any(s.lean for s in uploads[1:])
    assert errors[True] == errors[False]
    assert errors[True][2] == retry_class


def test_a_reset_connection_goes_to_the_sdk_which_fails_exactly_as_before(
        relay: Relay, gcs_bucket: str, quick_sdk_retries: None) -> None:
    relay.fault = lambda seen: RESET if seen.upload else None
    errors = {}
    for lean in (True, False):
        made = destination(gcs_bucket, lean=lean)
        try:
            with pytest.raises(DestinationError) as caught:
                made.put(KEY, *archived("m1"))
        finally:
            made.close()
        errors[lean] = (type(caught.value), caught.value.retry_class)
    assert errors[True] == errors[False] == (DestinationError, UNREACHABLE)


@pytest.mark.parametrize("fault", [RESET, (503, error_json(503, "backendError"), JSON),
                                   (200, b"{not json", JSON),
                                   # a 200 for another object is no proof this one was made
                                   (200, b'{"name": "archive/other.json.gz", "generation":'
                                         b' "7"}', JSON)])
def test_a_lean_request_that_fails_once_is_stored_by_the_sdks_resend(
        relay: Relay, gcs_client: Any, gcs_bucket: str, fault: Any) -> None:
    relay.fault = lambda seen: fault if seen.lean else None
    body, sha = archived("m1")
    made = destination(gcs_bucket)
    try:
        result = made.put(KEY, body, sha)
        put = made.lean_put
        assert put is not None and (put.sent, put.handed_back) == (1, 1)
    finally:
        made.close()
    assert result.created
    assert [(s.lean, s.action != "pass") for s in relay.uploads()] == [(True, True),
                                                                       (False, False)]
    assert stored(gcs_client, gcs_bucket, KEY)["bytes"] == body


def test_a_lean_request_that_landed_but_lost_its_answer_is_found_by_the_resend(
        relay: Relay, gcs_client: Any, gcs_bucket: str) -> None:
    """The object was created, its answer did not read: the SDK's re-send meets 412 and
    finds the stored bytes are ours."""
    body, sha = archived("m1")
    relay.fault = lambda seen: LOST if seen.lean else None
    made = destination(gcs_bucket)
    try:
        result = made.put(KEY, body, sha)
    finally:
        made.close()
    assert not result.created
    assert result.version_id == str(gcs_client.bucket(gcs_bucket).get_blob(KEY).generation)
    assert [(s.lean, s.action) for s in relay.uploads()] == [(True, LOST), (False, "pass")]
    assert stored(gcs_client, gcs_bucket, KEY)["bytes"] == body


# --------------------------------------------------------------------------- when it stands down


def test_it_stands_down_for_a_proxy_or_mutual_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    def made() -> GCSLeanPut:
        return GCSLeanPut("https://storage.googleapis.com", "b", emulator=False,
                          max_connections=2, timeout=(1.0, 1.0), content_type="x")

    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY",
                 "GOOGLE_API_USE_CLIENT_CERTIFICATE", "GOOGLE_API_USE_MTLS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert made().enabled
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert not made().enabled
    monkeypatch.setenv("NO_PROXY", "storage.googleapis.com")
    assert made().enabled
    monkeypatch.setenv("GOOGLE_API_USE_MTLS_ENDPOINT", "always")
    assert not made().enabled
    monkeypatch.setenv("GOOGLE_API_USE_MTLS_ENDPOINT", "never")
    monkeypatch.setenv("GOOGLE_API_USE_CLIENT_CERTIFICATE", "true")
    assert not made().enabled


def test_with_the_lean_path_off_every_put_goes_through_the_sdk(
        relay: Relay, gcs_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SM_GCS_LEAN_PUT", "0")
    made = GCSDestination(f"gs://{gcs_bucket}/archive/",
                          DestinationOptions(allow_insecure_endpoint=True))
    try:
        assert made.put(KEY, *archived("m1")).created
        assert made.lean_put is None
    finally:
        made.close()
    assert [s.lean for s in relay.uploads()] == [False]


# --------------------------------------------------------------------------- credentials


def oauth_tokens(lifetimes: list[int]) -> TokenServer:
    """An OAuth token endpoint handing out `tok-1`, `tok-2`… with the given lifetimes."""
    return TokenServer(lifetimes, lambda n, lifetime: {
        "access_token": f"tok-{n}", "expires_in": lifetime, "token_type": "Bearer"}, "/token")


def adc_key_file(tmp_path: Path, token_url: str) -> Path:
    """A service-account key file (made here) whose token endpoint is `token_url`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "adc.json"
    key_file.write_text(json.dumps({
        "type": "service_account", "project_id": "sm-test", "private_key_id": "k1",
        "private_key": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode(),
        "client_email": "sm@sm-test.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": token_url}))
    return key_file


def test_application_default_credentials_sign_each_put_and_a_token_due_is_refreshed(
        relay: Relay, gcs_bucket: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No emulator: the endpoint is given, credentials come from ADC (a service-account key
    file, made here, whose token endpoint is local). A token within google-auth's refresh
    margin of its expiry (200 s) is replaced before the next request; a fresh one (an hour)
    is reused; `refresh_credentials` resolves them again."""
    tokens = oauth_tokens([200, 3600])
    key_file = adc_key_file(tmp_path, tokens.url)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    made = destination(gcs_bucket, endpoint_url=relay.url)
    try:
        for i in range(3):
            assert made.put(f"archive/k{i}.json.gz", *archived(f"k{i}")).created
        made.refresh_credentials()  # resolved again: a new token
        assert made.put("archive/k3.json.gz", *archived("k3")).created
    finally:
        made.close()
        tokens.stop()
    uploads = relay.uploads()
    assert all(s.lean for s in uploads)
    assert [s.headers.get("authorization") for s in uploads] == [
        "Bearer tok-1", "Bearer tok-2", "Bearer tok-2", "Bearer tok-3"]


def test_after_a_401_the_sdk_stores_it_and_the_next_put_resolves_credentials_again(
        relay: Relay, gcs_bucket: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = oauth_tokens([3600])
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc_key_file(tmp_path, tokens.url)))
    first = []

    def refuse_the_first_lean_upload(seen: Seen) -> Any:
        if seen.lean and seen.upload and not first:
            first.append(seen)
            return 401, error_json(401, "authError"), JSON
        return None

    relay.fault = refuse_the_first_lean_upload
    made = destination(gcs_bucket, endpoint_url=relay.url)
    try:
        for i in range(3):
            assert made.put(f"archive/k{i}.json.gz", *archived(f"k{i}")).created
    finally:
        made.close()
        tokens.stop()
    uploads = relay.uploads()
    assert [(s.lean, s.action) for s in uploads] == [
        (True, "401"), (False, "pass"), (True, "pass"), (True, "pass")]
    refused, by_sdk, again, reused = (s.headers["authorization"] for s in uploads)
    assert refused == "Bearer tok-1"
    assert by_sdk != refused  # the SDK's own credentials
    assert again == reused and again not in (refused, by_sdk)  # resolved again, then kept
