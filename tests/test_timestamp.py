"""RFC 3161 time-stamps of checkpoints (SPEC 9.1), against a real `openssl ts` TSA on loopback.

A genuine token checks against the TSA's root and against `openssl ts -verify`; every way a TSA
or an attacker can get it wrong (an error, garbage, another digest, another CA, an impostor
that signs itself, a replayed answer, a redirect, a flood, a stall) is refused with one line.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stored_messages_cli.errors import ConfigError
from stored_messages_cli.evidence.timestamp import (
    MAX_REPLY_BYTES,
    TimestampCheck,
    TimestampError,
    check_timestamp,
    openssl_verify_command,
    request_timestamp,
    timestamp_query,
)
from tests.support.tsa import TimeStampAuthority

DIGEST = hashlib.sha256(b"checkpoint text\n").digest()
OTHER_DIGEST = hashlib.sha256(b"another checkpoint\n").digest()


@pytest.fixture(scope="module")
def genuine(tsa: TimeStampAuthority) -> bytes:
    """One genuine token for DIGEST, asked for by `request_timestamp`."""
    return request_timestamp(tsa.url, DIGEST)


def _openssl_query(folder: Path, digest: bytes) -> bytes:
    """A TimeStampReq made by `openssl ts -query` itself (not by the code under test)."""
    query_file = folder / "openssl.tsq"
    subprocess.run(["openssl", "ts", "-query", "-digest", digest.hex(), "-sha256", "-cert",
                    "-out", str(query_file)], check=True, capture_output=True)
    return query_file.read_bytes()


def _raw_answer(url: str, query: bytes) -> bytes:
    """The body a TSA answers to `query`, whatever its status."""
    request = urllib.request.Request(url, data=query,
                                     headers={"Content-Type": "application/timestamp-query"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return bytes(answer.read())
    except urllib.error.HTTPError as error:
        return bytes(error.read())


@contextmanager
def _serving(respond: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A loopback HTTP server whose every POST is answered by `respond`; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            respond(self)

        do_GET = do_POST  # noqa: N815 (a client that followed a redirect would GET)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tsr"
    finally:
        server.shutdown()
        server.server_close()


def _answer_with(status: int, body: bytes, **headers: str) -> Callable[[Any], None]:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/timestamp-reply")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return respond


# --- the genuine path ---------------------------------------------------------------------


def test_a_genuine_token_chains_to_the_tsa_root_and_names_its_time_and_tsa(
        tsa: TimeStampAuthority) -> None:
    before = tsa.requests
    token = request_timestamp(tsa.url, DIGEST)
    assert tsa.requests == before + 1

    check = check_timestamp(token, DIGEST, ca_pem=tsa.ca_file.read_bytes())

    assert check.ok and check.trusted_root, check.detail
    assert check.time is not None and check.time.tzinfo is not None
    assert abs(check.time - datetime.now(UTC)) < timedelta(minutes=1)
    assert check.tsa is not None and "sm test TSA" in check.tsa
    assert "trusted root" in check.detail


@pytest.fixture(scope="module")
def chained(tsa: TimeStampAuthority) -> bytes:
    """A genuine token for DIGEST that carries the TSA's root after its certificate."""
    with tsa.fault("with_chain"):
        return request_timestamp(tsa.url, DIGEST)


def test_a_token_carrying_its_chain_in_openssl_order_is_read_and_checked(
        tsa: TimeStampAuthority, chained: bytes, tmp_path: Path) -> None:
    """OpenSSL writes the signer's certificate before its root, not in DER's SET order; the
    check reads them sorted, keeps the TSA's bytes as they are, and openssl agrees."""
    check = check_timestamp(chained, DIGEST, ca_pem=tsa.ca_file.read_bytes())
    assert check.ok and check.trusted_root, check.detail

    token_file = tmp_path / "chained.tsr"
    token_file.write_bytes(chained)
    verified = subprocess.run(openssl_verify_command(token_file, DIGEST.hex(), tsa.ca_file),
                              capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr


def test_without_roots_a_token_carrying_its_root_is_intact_but_not_trusted(
        chained: bytes) -> None:
    check = check_timestamp(chained, DIGEST)
    assert check.ok and not check.trusted_root
    assert "not checked against a trusted root" in check.detail


def test_the_query_is_the_digest_itself_with_our_nonce_as_openssl_reads_it(
        tmp_path: Path) -> None:
    query_file = tmp_path / "q.tsq"
    query_file.write_bytes(timestamp_query(DIGEST, 0x80))
    text = subprocess.run(["openssl", "ts", "-query", "-in", str(query_file), "-text"],
                          check=True, capture_output=True, text=True).stdout
    assert "Hash Algorithm: sha256" in text
    assert DIGEST[:8].hex(" ") in text.replace("-", " ")
    assert "Nonce: 0x80" in text
    assert "Certificate required: yes" in text


@settings(max_examples=15, deadline=None)
@given(nonce=st.one_of(st.integers(min_value=1, max_value=2**64 - 1),
                       st.sampled_from([1, 0x7F, 0x80, 0xFF, 0x100, 2**63, 2**64 - 1])))
def test_every_nonce_encodes_as_the_integer_openssl_reads(tmp_path_factory: pytest.TempPathFactory,
                                                          nonce: int) -> None:
    query_file = tmp_path_factory.mktemp("nonce") / "q.tsq"
    query_file.write_bytes(timestamp_query(DIGEST, nonce))
    text = subprocess.run(["openssl", "ts", "-query", "-in", str(query_file), "-text"],
                          check=True, capture_output=True, text=True).stdout
    printed = next(line for line in text.splitlines() if line.startswith("Nonce:"))
    assert int(printed.split(":")[1].strip(), 16) == nonce


def test_openssl_ts_verify_accepts_the_genuine_token_and_refuses_another_digest(
        tsa: TimeStampAuthority, genuine: bytes, tmp_path: Path) -> None:
    token_file = tmp_path / "000000000007.tsr"
    token_file.write_bytes(genuine)

    good = subprocess.run(openssl_verify_command(token_file, DIGEST.hex(), tsa.ca_file),
                          capture_output=True, text=True)
    other = subprocess.run(openssl_verify_command(token_file, OTHER_DIGEST.hex(), tsa.ca_file),
                           capture_output=True, text=True)

    assert good.returncode == 0 and "Verification: OK" in good.stdout, good.stderr
    assert other.returncode != 0


def test_openssl_ts_verify_refuses_a_token_from_another_ca(tsa: TimeStampAuthority,
                                                            tmp_path: Path) -> None:
    with tsa.fault("other_ca"):
        token = request_timestamp(tsa.url, DIGEST)
    token_file = tmp_path / "other.tsr"
    token_file.write_bytes(token)
    result = subprocess.run(openssl_verify_command(token_file, DIGEST.hex(), tsa.ca_file),
                            capture_output=True, text=True)
    assert result.returncode != 0


# --- a TSA that gets it wrong, seen by request_timestamp -----------------------------------


@pytest.mark.parametrize(("mode", "words"), [
    ("http_500", "HTTP 500"),
    ("garbage", "not a time-stamp reply"),
    ("wrong_imprint", "another digest"),
])
def test_a_faulty_tsa_gives_a_one_line_timestamp_error(tsa: TimeStampAuthority, mode: str,
                                                       words: str) -> None:
    with tsa.fault(mode), pytest.raises(TimestampError) as raised:
        request_timestamp(tsa.url, DIGEST)
    message = str(raised.value)
    assert words in message and tsa.url in message and "\n" not in message


def test_a_stalled_tsa_times_out_instead_of_holding_the_caller(tsa: TimeStampAuthority) -> None:
    started = datetime.now(UTC)
    with tsa.fault("slow"), pytest.raises(TimestampError, match="timed out"):
        request_timestamp(tsa.url, DIGEST, timeout=0.5)
    assert datetime.now(UTC) - started < timedelta(seconds=tsa.slow_seconds)


def test_a_replayed_answer_with_another_nonce_is_refused(tsa: TimeStampAuthority,
                                                         genuine: bytes) -> None:
    with _serving(_answer_with(200, genuine)) as replaying_url:
        with pytest.raises(TimestampError, match="nonce"):
            request_timestamp(replaying_url, DIGEST)


def test_a_rejection_is_a_timestamp_error_naming_the_status(tsa: TimeStampAuthority,
                                                            tmp_path: Path) -> None:
    query_file = tmp_path / "sha1.tsq"  # sha1 is not among the digests the TSA accepts
    subprocess.run(["openssl", "ts", "-query", "-digest", "00" * 20, "-sha1",
                    "-out", str(query_file)], check=True, capture_output=True)
    rejection = tsa.reply(query_file.read_bytes())
    with _serving(_answer_with(200, rejection)) as url:
        with pytest.raises(TimestampError, match="did not grant.*status 2"):
            request_timestamp(url, DIGEST)
    assert not check_timestamp(rejection, DIGEST, ca_pem=tsa.ca_file.read_bytes()).ok


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed(genuine: bytes, status: int) -> None:
    reached: list[str] = []

    def target(handler: BaseHTTPRequestHandler) -> None:
        reached.append(handler.command)
        _answer_with(200, genuine)(handler)

    with _serving(target) as elsewhere:
        with _serving(_answer_with(status, b"", Location=elsewhere)) as url, \
                pytest.raises(TimestampError, match=f"HTTP {status}.*redirect.*not followed"):
            request_timestamp(url, DIGEST)
    assert reached == []


def test_an_answer_over_one_mib_is_refused_unread(genuine: bytes) -> None:
    flood = genuine + b"\0" * MAX_REPLY_BYTES
    with _serving(_answer_with(200, flood)) as url:
        with pytest.raises(TimestampError, match="more than"):
            request_timestamp(url, DIGEST)


def test_a_closed_port_is_a_timestamp_error_not_a_crash() -> None:
    with _serving(_answer_with(200, b"")) as url:
        pass  # the server is gone: nothing listens there now
    with pytest.raises(TimestampError, match="cannot reach"):
        request_timestamp(url, DIGEST, timeout=2)


@pytest.mark.parametrize("url", [
    "http://timestamp.digicert.com",
    "http://10.0.0.7/tsr",
    "ftp://127.0.0.1/tsr",
    "file:///etc/passwd",
    "https:///no-host",
    "timestamp.example.com",
])
def test_only_https_or_loopback_http_urls_are_accepted(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        request_timestamp(url, DIGEST)
    assert url in str(raised.value)


def test_https_and_localhost_urls_pass_the_url_rule() -> None:
    # Nothing listens on port 9 here: getting past the URL rule means a network error.
    for url in ("https://127.0.0.1:9/tsr", "http://localhost:9/tsr", "http://[::1]:9/tsr"):
        with pytest.raises(TimestampError):
            request_timestamp(url, DIGEST, timeout=2)


# --- tokens that are not what they claim, seen by check_timestamp --------------------------


@pytest.mark.parametrize(("mode", "words"), [
    ("http_500", "not a time-stamp reply"),
    ("garbage", "not a time-stamp reply"),
    ("wrong_imprint", "another digest"),
    ("other_ca", "does not verify against a trusted root"),
    ("self_signed", "does not verify against a trusted root"),
])
def test_every_faulty_answer_fails_the_check_with_a_clear_detail(
        tsa: TimeStampAuthority, tmp_path: Path, mode: str, words: str) -> None:
    query = _openssl_query(tmp_path, DIGEST)
    with tsa.fault(mode):
        answer = _raw_answer(tsa.url, query)

    check = check_timestamp(answer, DIGEST, ca_pem=tsa.ca_file.read_bytes())

    assert not check.ok and not check.trusted_root
    assert words in check.detail and "\n" not in check.detail


def test_the_genuine_token_for_another_digest_fails(tsa: TimeStampAuthority,
                                                    genuine: bytes) -> None:
    check = check_timestamp(genuine, OTHER_DIGEST, ca_pem=tsa.ca_file.read_bytes())
    assert not check.ok and "another digest" in check.detail


def test_without_roots_a_token_that_carries_no_root_is_not_checked(genuine: bytes) -> None:
    check = check_timestamp(genuine, DIGEST)
    assert not check.ok
    assert "timestamp_ca_file" in check.detail


def test_without_roots_an_impostor_proves_nothing_and_the_detail_says_so(
        tsa: TimeStampAuthority) -> None:
    """A self-signed impostor's token is intact, so without roots it passes; the result says
    the TSA was not checked, and with the real root the same token fails."""
    with tsa.fault("self_signed"):
        token = request_timestamp(tsa.url, DIGEST)

    unanchored = check_timestamp(token, DIGEST)
    anchored = check_timestamp(token, DIGEST, ca_pem=tsa.ca_file.read_bytes())

    assert unanchored.ok and not unanchored.trusted_root
    assert "not checked against a trusted root" in unanchored.detail
    assert not anchored.ok


def test_a_ca_file_with_no_certificate_is_a_config_error(genuine: bytes) -> None:
    with pytest.raises(ConfigError, match="timestamp_ca_file"):
        check_timestamp(genuine, DIGEST, ca_pem=b"not a certificate")


def test_a_root_bundle_checks_against_any_of_its_roots(tsa: TimeStampAuthority,
                                                       genuine: bytes) -> None:
    bundle = tsa.other_ca_file.read_bytes() + tsa.ca_file.read_bytes()
    assert check_timestamp(genuine, DIGEST, ca_pem=bundle).ok
    assert not check_timestamp(genuine, DIGEST, ca_pem=tsa.other_ca_file.read_bytes()).ok


# --- hostile bytes ------------------------------------------------------------------------


def _claims(check: TimestampCheck) -> tuple[object, object]:
    return check.time, check.tsa


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_flipped_byte_never_raises_and_never_changes_what_the_token_says(
        tsa: TimeStampAuthority, genuine: bytes, chained: bytes, data: st.DataObject) -> None:
    """Flip one byte of a genuine token anywhere (one carrying only its signer's certificate,
    or its root too). The check never raises. It fails, except where the byte lies outside
    everything the TSA signed and the check relies on: the CMS version numbers, the name of
    the signature algorithm (OpenSSL takes the algorithm from the key), and the copy of the
    root a token may carry (the root comes from the trusted roots instead). A flip there
    leaves a token that still verifies and still says exactly what the genuine one says (same
    digest, time and TSA; never a byte of the signed TSTInfo), so it is tolerated, and only
    then."""
    ca_pem = tsa.ca_file.read_bytes()
    token = data.draw(st.sampled_from([genuine, chained]), label="token")
    reference = check_timestamp(token, DIGEST, ca_pem=ca_pem)
    position = data.draw(st.integers(min_value=0, max_value=len(token) - 1), label="position")
    mask = data.draw(st.integers(min_value=1, max_value=255), label="xor")
    hostile = bytearray(token)
    hostile[position] ^= mask

    check = check_timestamp(bytes(hostile), DIGEST, ca_pem=ca_pem)

    if check.ok:
        assert _claims(check) == _claims(reference)
        assert position not in _signed_content_positions(token)
    else:
        assert check.detail


def _signed_content_positions(token: bytes) -> range:
    """Where the TSTInfo (the signed content: digest, time, serial, TSA name) lies in a token:
    the contents of the eContent OCTET STRING after the TSTInfo content type, as openssl's own
    parse of the token places them."""
    listing = subprocess.run(["openssl", "asn1parse", "-inform", "DER"], input=token,
                             capture_output=True, check=True).stdout.decode().splitlines()
    after_type = next(i for i, line in enumerate(listing) if ":id-smime-ct-TSTInfo" in line)
    octets = next(line for line in listing[after_type:] if "OCTET STRING" in line)
    sizes = re.search(r"hl=\s*(\d+)\s+l=\s*(\d+)", octets)
    assert sizes is not None, octets
    start = int(octets.split(":")[0]) + int(sizes.group(1))
    return range(start, start + int(sizes.group(2)))


def test_a_token_over_one_mib_is_refused_unparsed(tsa: TimeStampAuthority,
                                                  genuine: bytes) -> None:
    check = check_timestamp(genuine + b"\0" * MAX_REPLY_BYTES, DIGEST,
                            ca_pem=tsa.ca_file.read_bytes())
    assert not check.ok and "larger than" in check.detail


@settings(max_examples=200, deadline=None)
@given(hostile=st.binary(max_size=2048))
def test_random_bytes_give_a_verdict_not_an_exception(hostile: bytes) -> None:
    check = check_timestamp(hostile, DIGEST)
    assert not check.ok and check.detail


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_cut_short_token_gives_a_verdict(genuine: bytes, chained: bytes,
                                           data: st.DataObject) -> None:
    token = data.draw(st.sampled_from([genuine, chained]))
    cut = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    check = check_timestamp(token[:cut], DIGEST)
    assert not check.ok and "\n" not in check.detail


def test_a_digest_that_is_not_sha256_sized_is_a_programming_error(genuine: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        request_timestamp("https://127.0.0.1:9/tsr", b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        check_timestamp(genuine, DIGEST[:20])
