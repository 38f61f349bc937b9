"""The lean S3 PUT (`destinations/s3_put.py`) on the wire: after one PUT through boto3 has
shown botocore's route, every PUT goes out directly with the same headers and signature,
fails exactly as boto3 fails (same errors, classes, hints and number of attempts, classified
from the real error body), signs with credentials that refresh themselves, and hands anything
unexpected back to boto3."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from stored_messages_cli.destinations import DestinationOptions
from stored_messages_cli.destinations.s3 import S3Destination
from stored_messages_cli.errors import DestinationError, ObjectConflict
from tests.support.fixtures.faults import (
    ACCESS_DENIED,
    NO_SUCH_BUCKET,
    RESET,
    SLOWDOWN,
    STALL,
    FaultProxy,
)
from tests.support.http_relay import RelayHandler
from tests.support.s3_wire import WireRequest, wire_proxy

OWNER = "123456789012"  # moto's account
LEAN_AGENT = "sm-put"  # in the User-Agent of a PUT the lean path sent
UNSIGNED_PER_REQUEST = {"user-agent", "amz-sdk-invocation-id", "amz-sdk-request"}


def archived(text: str) -> tuple[bytes, str]:
    payload = f'{{"message":"{text}"}}'.encode()
    return gzip.compress(payload, mtime=0), hashlib.sha256(payload).hexdigest()


def signed_headers(request: WireRequest) -> str:
    return request.headers["authorization"].split("SignedHeaders=", 1)[1].split(",", 1)[0]


def is_lean(request: WireRequest) -> bool:
    return LEAN_AGENT in request.headers.get("user-agent", "")


@pytest.fixture
def locked_bucket(s3_client: Any) -> str:
    """A bucket with object lock (so retention headers are accepted)."""
    import uuid

    name = f"sm-lean-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def test_after_one_put_through_boto3_the_rest_go_out_lean_with_the_same_headers(
        locked_bucket: str, moto_endpoint: str) -> None:
    proxy = wire_proxy(moto_endpoint)
    destination = S3Destination(f"s3://{locked_bucket}/archive/", DestinationOptions(
        endpoint_url=proxy.url, allow_insecure_endpoint=True, expected_owner=OWNER,
        retention_days=2, retention_mode="compliance"))
    objects = {f"archive/email/1/h/c/m{i} ü+.json.gz": archived(f"m{i}") for i in range(3)}
    try:
        for key, (body, sha) in objects.items():
            assert destination.put(key, body, sha).created
        assert destination.lean_put.route is not None
        for key, (body, sha) in objects.items():
            fetched = destination.get(key)
            assert (fetched.body, fetched.info.payload_sha256) == (body, sha)
    finally:
        destination.close()
    first, *rest = proxy.seen(locked_bucket, method="PUT")
    assert not is_lean(first) and len(rest) == 2 and all(is_lean(r) for r in rest)
    for request, (body, _) in zip([first, *rest], objects.values(), strict=True):
        assert set(request.headers) - UNSIGNED_PER_REQUEST == set(first.headers) - (
            UNSIGNED_PER_REQUEST)
        assert signed_headers(request) == signed_headers(first)
        assert "expect" not in request.headers  # no 100-continue round trip
        for name in ("if-none-match", "content-type", "x-amz-sdk-checksum-algorithm",
                     "x-amz-expected-bucket-owner", "x-amz-object-lock-mode", "host"):
            assert request.headers[name] == first.headers[name], name
        assert request.headers["if-none-match"] == "*"
        assert request.headers["x-amz-expected-bucket-owner"] == OWNER
        assert request.headers["x-amz-object-lock-mode"] == "COMPLIANCE"
        assert request.headers["x-amz-checksum-sha256"] == base64.b64encode(
            hashlib.sha256(body).digest()).decode()
        # plain http to a loopback test server: the payload is signed, as botocore does
        assert request.headers["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
        retain = request.headers["x-amz-object-lock-retain-until-date"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", retain)
        until = datetime.strptime(retain, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs(until - (datetime.now(UTC) + timedelta(days=2))) < timedelta(minutes=5)
        assert request.path == first.path.rsplit("/", 1)[0] + "/" + request.path.rsplit(
            "/", 1)[1]  # same bucket and prefix: the route botocore used


FAULTS = [SLOWDOWN, ACCESS_DENIED, NO_SUCH_BUCKET, RESET, STALL]


def failed_put(faults: FaultProxy, destination: S3Destination, fault: str,
               monkeypatch: pytest.MonkeyPatch) -> tuple[DestinationError, int, int]:
    """Learn the route with one good PUT, then PUT under `fault`: the error, how many
    requests reached the wire for it, and how many times the PUT went through boto3."""
    body, sha = archived("first")
    destination.put("email/first.json.gz", body, sha)
    lean = destination.lean_put
    through_client: list[str] = []
    original = lean._through_client

    def counted(params: dict[str, Any]) -> Any:
        through_client.append(params["Key"])
        return original(params)

    monkeypatch.setattr(lean, "_through_client", counted)
    faults.mode = fault
    before = faults.count("PUT")
    body, sha = archived("second")
    with pytest.raises(DestinationError) as failure:
        destination.put("email/second.json.gz", body, sha)
    faults.mode = "pass"
    return failure.value, faults.count("PUT") - before, len(through_client)


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failure_is_the_same_through_the_lean_path_as_through_boto3(
        faults: FaultProxy, s3_bucket: str, instant_sdk_retries: None,
        monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    monkeypatch.setenv("SM_S3_READ_TIMEOUT", "0.2")
    faults.stall_seconds = 1.0
    outcomes = {}
    for lean in (True, False):
        monkeypatch.setenv("SM_S3_LEAN_PUT", "1" if lean else "0")
        destination = S3Destination(f"s3://{s3_bucket}/", DestinationOptions(
            endpoint_url=faults.url, allow_insecure_endpoint=True))
        try:
            error, requests, through_client = failed_put(faults, destination, fault,
                                                         monkeypatch)
            assert (destination.lean_put.route is not None) == lean
        finally:
            destination.close()
        assert through_client == (0 if lean else 1)  # the lean one never fell back
        outcomes[lean] = (str(error), error.retry_class, error.hint, requests)
    assert outcomes[True] == outcomes[False]
    message, retry_class, _, requests = outcomes[True]
    expected = {SLOWDOWN: ("rate_limited", 3), ACCESS_DENIED: ("unreachable", 1),
                NO_SUCH_BUCKET: ("unreachable", 1), RESET: ("unreachable", 3),
                STALL: ("unreachable", 3)}[fault]
    assert (retry_class, requests) == expected
    if fault in (SLOWDOWN, ACCESS_DENIED, NO_SUCH_BUCKET):  # read from the real XML body
        assert {SLOWDOWN: "SlowDown / HTTP 503", ACCESS_DENIED: "AccessDenied / HTTP 403",
                NO_SUCH_BUCKET: "NoSuchBucket / HTTP 404"}[fault] in message


def test_a_taken_key_is_recognised_through_the_lean_path(s3_destination: S3Destination
                                                         ) -> None:
    key = "archive/email/1/h/c/taken.json.gz"
    body, sha = archived("taken")
    assert s3_destination.put("archive/email/1/h/c/learn.json.gz", *archived("learn")).created
    assert s3_destination.lean_put.route is not None
    assert s3_destination.put(key, body, sha).created is True
    assert s3_destination.put(key, body, sha).created is False  # 412, then the same bytes
    other, other_sha = archived("other")
    with pytest.raises(ObjectConflict):
        s3_destination.put(key, other, other_sha)
    assert s3_destination.get(key).body == body
    assert s3_destination.lean_put.route is not None  # a taken key is no reason to stand down


def rotating_session(issued: list[str]) -> Any:
    """A boto3 session whose credentials expire a minute after each refresh, so botocore
    refreshes them before every request (as it would an AssumeRole session near its end)."""
    import boto3
    import botocore.session
    from botocore.credentials import (
        CredentialProvider,
        CredentialResolver,
        RefreshableCredentials,
    )

    def refresh() -> dict[str, str]:
        issued.append(f"rotating-{len(issued) + 1}")
        return {"access_key": issued[-1], "secret_key": "secret", "token": f"token-{issued[-1]}",
                "expiry_time": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}

    credentials = RefreshableCredentials.create_from_metadata(
        metadata=refresh(), refresh_using=refresh, method="test-rotation")

    class Rotating(CredentialProvider):
        METHOD = "test-rotation"

        def load(self) -> Any:
            """The rotating credentials."""
            return credentials

    target = botocore.session.Session()
    target.register_component("credential_provider", CredentialResolver([Rotating()]))
    return boto3.session.Session(botocore_session=target, region_name="us-east-1")


def test_the_lean_path_signs_with_credentials_that_refresh_themselves(
        s3_bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from stored_messages_cli.destinations import s3

    issued: list[str] = []
    monkeypatch.setattr(s3, "make_session", lambda options: rotating_session(issued))
    proxy = wire_proxy(moto_endpoint)
    destination = S3Destination(f"s3://{s3_bucket}/", DestinationOptions(
        endpoint_url=proxy.url, allow_insecure_endpoint=True))
    try:
        for i in range(4):
            assert destination.put(f"k{i}.json.gz", *archived(str(i))).created
    finally:
        destination.close()
    puts = proxy.seen(s3_bucket, method="PUT")
    lean = [r for r in puts if is_lean(r)]
    assert len(lean) == 3
    keys = [r.access_key for r in lean]
    assert len(set(keys)) == 3 and set(keys) <= set(issued)  # a fresh key for each request
    for request in lean:
        assert request.headers["x-amz-security-token"] == f"token-{request.access_key}"
        assert "x-amz-security-token" in signed_headers(request).split(";")


class _Refusing:
    """A relay to moto that answers the next lean PUT with `400 InvalidRequest`."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.refuse_next_lean_put = False
        self.seen: list[tuple[str, bool, int]] = []  # (path, lean, status)
        relay = self

        class Handler(RelayHandler):
            def _handle(self) -> None:
                body = self._body()
                lean = LEAN_AGENT in self.headers.get("User-Agent", "")
                if self.command == "PUT" and lean and relay.refuse_next_lean_put:
                    relay.refuse_next_lean_put = False
                    relay.seen.append((self.path, lean, 400))
                    payload = (b"<Error><Code>InvalidRequest</Code><Message>not here"
                               b"</Message></Error>")
                    self.send_response(400)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if self.command == "PUT":
                    relay.seen.append((self.path, lean, 200))
                self._relay(relay.upstream, body)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def refusing(moto_endpoint: str) -> Iterator[_Refusing]:
    relay = _Refusing(moto_endpoint)
    yield relay
    relay.server.shutdown()
    relay.server.server_close()


def test_an_answer_the_lean_path_does_not_expect_goes_to_boto3(
        s3_bucket: str, refusing: _Refusing) -> None:
    destination = S3Destination(f"s3://{s3_bucket}/", DestinationOptions(
        endpoint_url=refusing.url, allow_insecure_endpoint=True))
    try:
        assert destination.put("one.json.gz", *archived("1")).created
        refusing.refuse_next_lean_put = True
        assert destination.put("two.json.gz", *archived("2")).created
        assert destination.lean_put.route is not None  # learned again from boto3's PUT
        assert destination.put("three.json.gz", *archived("3")).created
    finally:
        destination.close()
    assert [(path.rsplit("/", 1)[1], lean, status) for path, lean, status in refusing.seen] == [
        ("one.json.gz", False, 200),
        ("two.json.gz", True, 400),  # the lean PUT, refused
        ("two.json.gz", False, 200),  # handed to boto3, which stored it
        ("three.json.gz", True, 200),
    ]


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by itself, and its key (PEM files in `folder`)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                  critical=True)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / f"{name}.pem", folder / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class _TlsRelay:
    """HTTPS in front of moto, with the certificate swappable between connections."""

    def __init__(self, upstream: str, cert: tuple[Path, Path]) -> None:
        import ssl

        parts = urlsplit(upstream)
        target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.requests: list[tuple[str, bool, str]] = []  # (path, lean, x-amz-content-sha256)
        self.use(cert)
        relay = self

        class Handler(RelayHandler):
            def _handle(self) -> None:
                body = self._body()
                if self.command == "PUT":
                    relay.requests.append((self.path,
                                           LEAN_AGENT in self.headers.get("User-Agent", ""),
                                           self.headers.get("x-amz-content-sha256", "")))
                self._relay(target, body)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> Any:
                sock, address = super().get_request()
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(*relay.cert)
                return context.wrap_socket(sock, server_side=True), address

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def use(self, cert: tuple[Path, Path]) -> None:
        """Present `cert` on the next connections."""
        self.cert = cert


def test_over_tls_the_lean_path_keeps_the_clients_certificate_checks(
        s3_bucket: str, moto_endpoint: str, tmp_path: Path, instant_sdk_retries: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    trusted, untrusted = self_signed(tmp_path, "trusted"), self_signed(tmp_path, "untrusted")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(trusted[0]))  # the client trusts only this one
    outcomes = {}
    relay = _TlsRelay(moto_endpoint, trusted)
    try:
        for lean in (True, False):
            monkeypatch.setenv("SM_S3_LEAN_PUT", "1" if lean else "0")
            relay.use(trusted)
            relay.requests.clear()
            destination = S3Destination(f"s3://{s3_bucket}/", DestinationOptions(
                endpoint_url=relay.url))
            try:
                assert destination.put(f"a-{lean}.json.gz", *archived("a")).created
                assert destination.put(f"b-{lean}.json.gz", *archived("b")).created
                assert (destination.lean_put.route is not None) == lean
                # botocore signs the payload's hash even over TLS (the caller gave the checksum)
                assert [sha for _, _, sha in relay.requests] == [
                    hashlib.sha256(archived(text)[0]).hexdigest() for text in "ab"]
                assert [is_lean for _, is_lean, _ in relay.requests] == [False, lean]
                relay.use(untrusted)  # a new connection now meets a certificate nobody trusts
                destination.client.close()  # drop open connections: the client's
                destination.lean_put.close()  # and the lean path's own
                with pytest.raises(DestinationError) as failure:
                    destination.put(f"c-{lean}.json.gz", *archived("c"))
                assert len(relay.requests) == 2  # refused before anything was sent
            finally:
                destination.close()
            outcomes[lean] = (str(failure.value).replace(f"c-{lean}", "c"),
                              failure.value.retry_class, failure.value.hint)
    finally:
        relay.server.shutdown()
        relay.server.server_close()
    assert outcomes[True] == outcomes[False]
    assert "SSL validation failed" in outcomes[True][0]


def test_the_lean_path_stands_down_when_botocore_would_send_other_headers(
        s3_bucket: str, moto_endpoint: str) -> None:
    """A header botocore adds that the lean path does not know (here a requester-pays
    header put in by a handler, as any botocore customisation could) means the lean request
    would differ: it is never sent, and every PUT goes through boto3."""
    proxy = wire_proxy(moto_endpoint)
    destination = S3Destination(f"s3://{s3_bucket}/", DestinationOptions(
        endpoint_url=proxy.url, allow_insecure_endpoint=True))

    def requester_pays(request: Any, **_: Any) -> None:
        request.headers["x-amz-request-payer"] = "requester"

    destination.client.meta.events.register("before-sign.s3.PutObject", requester_pays)
    try:
        for i in range(3):
            assert destination.put(f"k{i}.json.gz", *archived(str(i))).created
        assert destination.lean_put.route is None
    finally:
        destination.close()
    puts = proxy.seen(s3_bucket, method="PUT")
    assert len(puts) == 3 and not any(is_lean(r) for r in puts)
    assert all("x-amz-request-payer" in signed_headers(r).split(";") for r in puts)


def test_the_lean_path_goes_through_the_proxy_the_client_uses(
        s3_bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment (`HTTP_PROXY`) carries the lean PUTs as it carries
    boto3's, and `NO_PROXY` for the endpoint's host sends both straight to it."""
    proxy = wire_proxy(moto_endpoint)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    for bypass in (False, True):
        if bypass:
            monkeypatch.setenv("NO_PROXY", urlsplit(moto_endpoint).hostname or "")
        proxy.reset()
        destination = S3Destination(f"s3://{s3_bucket}/", DestinationOptions(
            endpoint_url=moto_endpoint, allow_insecure_endpoint=True))
        try:
            for i in range(3):
                assert destination.put(f"p{i}-{bypass}.json.gz", *archived(str(i))).created
            assert destination.lean_put.route is not None
        finally:
            destination.close()
        puts = proxy.seen(s3_bucket, method="PUT")
        if bypass:
            assert puts == []  # neither boto3 nor the lean path used the proxy
        else:
            assert [is_lean(r) for r in puts] == [False, True, True]
            # a plain-http request through a proxy names the whole URL, as botocore sends it
            assert all(r.path.startswith(moto_endpoint + "/") for r in puts)
