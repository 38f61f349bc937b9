"""RFC 3161 time-stamps of checkpoints (SPEC 9.1, docs/timestamps.md).

`request_timestamp` asks a Time-Stamp Authority to sign a SHA-256 digest and returns the raw
TimeStampResp it sent; `check_timestamp` later decides whether such bytes, read back from a
bucket and so hostile, prove that digest existed at the time they name. `openssl_verify_command`
is the same check spelled for the `openssl` command line, for a reader with no `sm` at hand.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from rfc3161_client import (
    PKIStatus,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from ..errors import ConfigError, SmError
from ..network import is_loopback

QUERY_CONTENT_TYPE = "application/timestamp-query"
MAX_REPLY_BYTES = 1024 * 1024
DIGEST_SIZE = 32
SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
_SHA256_OID_DER = bytes.fromhex("608648016503040201")  # 2.16.840.1.101.3.4.2.1, DER contents
_DETAIL_LIMIT = 200
_OPENSSL_REASON = re.compile(r'data: "([^"]+)"')


class TimestampError(SmError):
    """A Time-Stamp Authority gave no usable token this time (unreachable, an error, or bytes
    that are not the token asked for); the caller tries again later."""


@dataclass(frozen=True)
class TimestampCheck:
    """What checking one time-stamp token found.

    `ok` is true only when every check passed; `time` is the TSA's genTime (UTC) and `tsa` its
    name when the token carries them, set whenever the token could be read; `detail` says in
    one line what failed, or what was checked. `trusted_root` is true only when the signer was
    checked against roots the operator trusts: without them `ok` proves the token intact, not
    who signed it.
    """

    ok: bool
    time: datetime | None
    tsa: str | None
    detail: str
    trusted_root: bool = False


def request_timestamp(url: str, digest: bytes, *, timeout: float = 10.0) -> bytes:
    """Ask the TSA at `url` to time-stamp the SHA-256 `digest`; return its DER TimeStampResp.

    The answer is checked before it is returned: HTTP 200, at most 1 MiB, a reply that parses,
    status granted, the imprint our digest and the nonce ours. The signature is not checked
    here (that is `check_timestamp`'s work, with the roots the operator trusts). Raises
    `ConfigError` for a URL that is neither https nor http to a loopback host, and
    `TimestampError` for everything the network or the TSA did wrong.
    """
    check_authority_url(url)
    _require_digest(digest)
    nonce = secrets.randbits(64) or 1
    body = _post(url, timestamp_query(digest, nonce), timeout)
    try:
        response = parse_timestamp_reply(body)
    except ValueError as error:
        raise TimestampError(f"{url} sent bytes that are not a time-stamp reply: "
                             f"{_one_line(error)}") from None
    if response.status != PKIStatus.GRANTED:
        raise TimestampError(f"{url} did not grant the time-stamp: {_status_text(response)}")
    info = response.tst_info
    imprint = info.message_imprint
    if imprint.hash_algorithm != SHA256_OID or imprint.message != digest:
        raise TimestampError(f"{url} time-stamped another digest than the one asked for")
    if info.nonce != nonce:
        raise TimestampError(f"{url} answered with another request's nonce")
    return body


def check_timestamp(tsr: bytes, digest: bytes, *, ca_pem: bytes | None = None) -> TimestampCheck:
    """Check that the DER TimeStampResp `tsr` time-stamps the SHA-256 `digest`.

    The reply must parse, be granted, carry `digest` as its SHA-256 imprint and be signed by a
    time-stamping certificate. With `ca_pem` (the PEM roots of `timestamp_ca_file`) the signer
    must chain to one of them. Without it the signature is checked against the root the token
    carries itself, which proves the bytes intact but not who signed them, and `detail` says
    so; a token that carries no root cannot be checked then. Hostile bytes give `ok` false,
    never an exception; a `ca_pem` with no certificate in it raises `ConfigError`.
    """
    _require_digest(digest)
    roots = _load_roots(ca_pem) if ca_pem is not None else None
    try:
        return _check(tsr, digest, roots)
    except Exception as error:  # noqa: BLE001 (a hostile token earns a verdict, not a crash)
        return TimestampCheck(False, None, None, f"unreadable time-stamp: {_one_line(error)}")


def openssl_verify_command(
    tsr_file: str | os.PathLike[str], digest_hex: str, ca_file: str | os.PathLike[str]
) -> list[str]:
    """The argv of `openssl ts -verify` that checks `tsr_file` against a digest and roots."""
    return ["openssl", "ts", "-verify", "-digest", digest_hex, "-in", os.fspath(tsr_file),
            "-CAfile", os.fspath(ca_file)]


def check_authority_url(url: str) -> None:
    """Refuse (`ConfigError`) a TSA URL that is not https, or http to a loopback host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and host and is_loopback(host):
        return
    raise ConfigError(f"time-stamp authority {url!r} must be an https URL "
                      "(http only to a loopback address)",
                      hint="Use the TSA's https address in timestamp_authorities.")


def timestamp_query(digest: bytes, nonce: int) -> bytes:
    """The DER TimeStampReq (RFC 3161 2.4.1) for a SHA-256 `digest`, `nonce`, certReq true.

    Built by hand because rfc3161-client's request builder hashes the data it is given, and
    the imprint here must be the checkpoint's SHA-256 itself (so `openssl ts -verify -digest`
    and `-data checkpoint.txt` both check it).
    """
    _require_digest(digest)
    if nonce <= 0:
        raise ValueError("the nonce must be a positive integer")
    algorithm = _der(0x30, _der(0x06, _SHA256_OID_DER) + _der(0x05, b""))
    imprint = _der(0x30, algorithm + _der(0x04, digest))
    nonce_der = _der(0x02, nonce.to_bytes(nonce.bit_length() // 8 + 1, "big"))
    return _der(0x30, _der(0x02, b"\x01") + imprint + nonce_der + _der(0x01, b"\xff"))


def parse_timestamp_reply(tsr: bytes) -> TimeStampResponse:
    """Parse a DER TimeStampResp, also when its certificates are not in DER order.

    rfc3161-client refuses a SignedData whose certificate SET is not sorted as DER demands,
    but OpenSSL-based TSAs send the signer's certificate first and its chain after it. The
    certificates lie outside what the TSA signs, so reading them sorted changes no claim; the
    bytes stored stay the TSA's own. Raises ValueError for bytes that are not a reply.
    """
    try:
        return decode_timestamp_response(tsr)
    except ValueError as error:
        if "InvalidSetOrdering" not in str(error):
            raise
        reordered = _certificates_in_der_order(tsr)
        if reordered is None:
            raise
        return decode_timestamp_response(reordered)


def _certificates_in_der_order(tsr: bytes) -> bytes | None:
    """`tsr` with the SignedData's certificates sorted (same length), or None if not found.

    The path: TimeStampResp → timeStampToken (ContentInfo) → [0] → SignedData → [0] certs.
    """
    _, contents, stop = _tlv(tsr, 0, len(tsr))
    for position in (1, 1, 0):  # the token in the reply, its [0], the SignedData in that
        members = _members(tsr, contents, stop)
        if len(members) <= position:
            return None
        _, _, contents, stop = members[position]
    certificates = next((m for m in _members(tsr, contents, stop) if m[0] == 0xA0), None)
    if certificates is None:
        return None
    _, _, contents, stop = certificates
    elements = [tsr[start:end] for _, start, _, end in _members(tsr, contents, stop)]
    return tsr[:contents] + b"".join(sorted(elements)) + tsr[stop:]


def _members(buf: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The (tag, start, contents start, end) of each element lying in `buf[start:end]`."""
    members = []
    while start < end:
        tag, contents, stop = _tlv(buf, start, end)
        members.append((tag, start, contents, stop))
        start = stop
    return members


def _tlv(buf: bytes, start: int, end: int) -> tuple[int, int, int]:
    """The tag, contents start and end of the DER element at `start` (within `end`)."""
    if start + 2 > end:
        raise ValueError("a DER element cut short")
    tag, first = buf[start], buf[start + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("a multi-byte DER tag")
    if first < 0x80:
        contents, size = start + 2, first
    else:
        width = first & 0x7F
        if not 1 <= width <= 4 or start + 2 + width > end:
            raise ValueError("a DER length this reader does not take")
        contents, size = start + 2 + width, int.from_bytes(buf[start + 2:start + 2 + width], "big")
    if contents + size > end:
        raise ValueError("a DER element longer than what holds it")
    return tag, contents, contents + size


def _der(tag: int, contents: bytes) -> bytes:
    """One DER TLV: `tag`, the definite length of `contents`, then `contents`."""
    size = len(contents)
    if size < 0x80:
        return bytes([tag, size]) + contents
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + contents


def _require_digest(digest: bytes) -> None:
    """A programming error, not hostile input: every digest here is a SHA-256."""
    if len(digest) != DIGEST_SIZE:
        raise ValueError(f"a SHA-256 digest is {DIGEST_SIZE} bytes, not {len(digest)}")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuses every redirect: a TSA answers where it was asked, or not at all."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int,
                         msg: str, headers: Any, newurl: str) -> None:
        """Return nothing, so urllib reports the 3xx as an HTTP error."""
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _post(url: str, query: bytes, timeout: float) -> bytes:
    """POST `query` to `url`; the body of a 200 answer, at most `MAX_REPLY_BYTES`."""
    request = urllib.request.Request(url, data=query, method="POST",
                                     headers={"Content-Type": QUERY_CONTENT_TYPE})
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            if answer.status != 200:
                raise TimestampError(f"{url} answered HTTP {answer.status}")
            body: bytes = answer.read(MAX_REPLY_BYTES + 1)
    except urllib.error.HTTPError as error:
        where = error.headers.get("Location") if 300 <= error.code < 400 else None
        moved = f" (a redirect to {where}, not followed)" if where else ""
        raise TimestampError(f"{url} answered HTTP {error.code}{moved}") from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        # URLError and timeouts are OSErrors; a torn or odd answer is an HTTPException.
        raise TimestampError(f"cannot reach time-stamp authority {url}: "
                             f"{_one_line(error)}") from None
    if len(body) > MAX_REPLY_BYTES:
        raise TimestampError(f"{url} sent more than {MAX_REPLY_BYTES} bytes")
    return body


def _load_roots(ca_pem: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM bundle (`timestamp_ca_file`); none is a configuration error."""
    try:
        return x509.load_pem_x509_certificates(ca_pem)
    except ValueError:
        raise ConfigError("timestamp_ca_file holds no PEM certificate") from None


def _check(tsr: bytes, digest: bytes, roots: list[x509.Certificate] | None) -> TimestampCheck:
    """`check_timestamp` without its safety net; any exception means the bytes are bad."""
    if len(tsr) > MAX_REPLY_BYTES:
        return TimestampCheck(False, None, None, f"larger than {MAX_REPLY_BYTES} bytes")
    try:
        response = parse_timestamp_reply(tsr)
    except ValueError as error:
        return TimestampCheck(False, None, None,
                              f"not a time-stamp reply: {_one_line(error)}")
    if response.status != PKIStatus.GRANTED:
        return TimestampCheck(False, None, None,
                              f"the TSA did not grant it: {_status_text(response)}")
    info = response.tst_info
    when = info.gen_time.astimezone(UTC)
    name = _tsa_name(response)

    def verdict(ok: bool, detail: str) -> TimestampCheck:
        return TimestampCheck(ok, when, name, detail)

    imprint = info.message_imprint
    if imprint.hash_algorithm != SHA256_OID:
        return verdict(False, f"the imprint is hashed with {imprint.hash_algorithm.dotted_string}, "
                              "not SHA-256")
    if imprint.message != digest:
        return verdict(False, f"it time-stamps another digest ({imprint.message.hex()[:16]}…)")
    trusted = roots is not None
    anchors = roots if roots is not None else _self_signed(response)
    if not anchors:
        return verdict(False, "signature not checked: the token carries no root certificate "
                              "and no trusted roots were given (timestamp_ca_file)")
    builder = VerifierBuilder()
    for root in anchors:
        builder = builder.add_root_certificate(root)
    try:
        builder.build().verify(response, digest)
    except VerificationError as error:
        where = "a trusted root" if trusted else "the token's own certificates"
        return verdict(False, f"the signature does not verify against {where}: "
                              f"{_verification_reason(error)}")
    if trusted:
        return TimestampCheck(True, when, name, "signed by a time-stamping certificate that "
                                                "chains to a trusted root", trusted_root=True)
    return verdict(True, "signature intact, but checked only against the token's own "
                         "certificates: the TSA was not checked against a trusted root")


def _self_signed(response: TimeStampResponse) -> list[x509.Certificate]:
    """The certificates embedded in the token that sign themselves (its own roots, if any)."""
    found = []
    for der in response.signed_data.certificates:
        certificate = x509.load_der_x509_certificate(der)
        if certificate.subject != certificate.issuer:
            continue
        try:
            certificate.verify_directly_issued_by(certificate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        found.append(certificate)
    return found


def _tsa_name(response: TimeStampResponse) -> str | None:
    """The TSA's name from the token (its `tsa` field), if it carries one."""
    try:
        name = response.tst_info.name
    except ValueError:
        return None
    if name is None:
        return None
    value = name.value
    return value.rfc4514_string() if isinstance(value, x509.Name) else str(value)


def _status_text(response: TimeStampResponse) -> str:
    """The status of a reply as `status N: text`, in one line."""
    text = "; ".join(response.status_string or [])
    return _one_line(f"status {response.status}" + (f": {text}" if text else ""))


def _verification_reason(error: VerificationError) -> str:
    """The reason OpenSSL gave inside a verification error (its `data: "…"`), else the error."""
    found = _OPENSSL_REASON.search(str(error))
    return _one_line(found.group(1) if found else error)


def _one_line(error: object) -> str:
    """`error` as one line of bounded length (library messages can be long and multi-line)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= _DETAIL_LIMIT else text[:_DETAIL_LIMIT - 1] + "…"
