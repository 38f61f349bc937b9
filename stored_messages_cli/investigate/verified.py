"""Verified reads of the archive: every object read is checked before anything is shown.

The store's own checksum where it has one (S3 `ChecksumSHA256`, checked by the SDK), gzip,
`sm-payload-sha256` against the payload bytes and against the local index, the payload's
canonical encoding, and the key against the payload's own ids. Written against the
Destination Protocol only.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from ..config.privacy import KeyUnavailable
from ..destinations.base import PAYLOAD_SHA_METADATA, Destination
from ..errors import (
    DestinationError,
    IntegrityError,
    InvalidMessage,
    ObjectNotFound,
    PayloadTooLarge,
    SmError,
    UnreadableObject,
)
from ..message import (
    MAX_PAYLOAD_BYTES,
    UNASSOCIATED,
    canonical_json,
    decode_json,
    format_utc,
    gunzip,
    parse_key,
    parse_sent_at,
    recipient_hash,
    search_hashes,
    sha256_hex,
)
from .index import IndexEntry
from .sealed import digest_for, opened

PARTS: tuple[str, ...] = ("json", "html", "text", "body")
READ_WORKERS = 8


class MissingPart(SmError):
    """The message has no such part (`--part html` of an SMS, say)."""


@dataclass(frozen=True)
class VerifiedMessage:
    """A message read from the bucket whose bytes passed every check."""

    entry: IndexEntry
    payload: bytes  # the exact archived payload JSON
    document: dict[str, Any]

    def part(self, name: str) -> bytes:
        """The exact bytes of one part: `json` (the payload), `html`, `text` or `body`.

        Text parts are the stored string encoded as UTF-8, nothing added. Raises MissingPart.
        """
        if name == "json":
            return self.payload
        if name not in PARTS:
            raise MissingPart(f"unknown part {name!r}; use one of {', '.join(PARTS)}")
        content = self.document.get("content")
        value = content.get(name) if isinstance(content, dict) else None
        if not isinstance(value, str):
            medium = self.entry.medium
            have = [p for p in PARTS[1:] if isinstance(content, dict)
                    and isinstance(content.get(p), str)]
            raise MissingPart(
                f"message {self.entry.message_id} ({medium}) has no {name} part",
                hint=f"sm fetch {self.entry.message_id} --project {self.entry.project_id}"
                     f" --part {(have or ['json'])[0]}  (parts: {', '.join(['json', *have])})")
        return value.encode("utf-8")


def _mismatch(key: str, detail: str) -> IntegrityError:
    return IntegrityError(
        f"checksum mismatch for {key}: {detail}",
        hint="the object was altered or replaced after it was archived; do not rely on it."
             " Check the bucket's object versions and access logs")


def _not_intact(key: str, detail: str) -> IntegrityError:
    return IntegrityError(
        f"integrity check failed for {key}: {detail}",
        hint="the object was altered or replaced after it was archived; do not rely on it."
             " Check the bucket's object versions and access logs")


def read_verified(destination: Destination, key: str, *,
                  expected_sha256: str | None = None,
                  max_payload_bytes: int = MAX_PAYLOAD_BYTES,
                  phone_region: str | None = None) -> VerifiedMessage:
    """Download `key` and verify it; raises IntegrityError naming what does not match.

    `expected_sha256` is the payload hash the local index recorded when the message was
    stored; without it (a fresh machine) the object's own metadata is all there is. At most
    `max_payload_bytes` are decompressed (a bigger payload is an IntegrityError too). The
    entry's search hashes read a national phone number in `phone_region`
    (`default_phone_region`, SPEC 9.2).
    """
    try:
        fetched = destination.get(key)
    except DestinationError as exc:
        if type(exc.__cause__).__name__ == "FlexibleChecksumError":
            raise _mismatch(key, "the bytes downloaded do not match the store's checksum"
                            " of the object") from exc
        raise
    try:
        payload = gunzip(fetched.body, key, limit=max_payload_bytes)
    except PayloadTooLarge as exc:
        raise _not_intact(key, exc.detail) from None
    except UnreadableObject:
        raise _mismatch(key, "the object is not valid gzip") from None
    actual = sha256_hex(payload)
    recorded = fetched.info.payload_sha256
    if not recorded:
        raise _mismatch(key, f"the object has no {PAYLOAD_SHA_METADATA} metadata (payload"
                        f" SHA-256 is {actual})")
    if recorded != actual:
        raise _mismatch(key, f"payload SHA-256 is {actual} but the object's"
                        f" {PAYLOAD_SHA_METADATA} metadata says {recorded}")
    if expected_sha256 and expected_sha256 != actual:
        raise _mismatch(key, f"payload SHA-256 is {actual} but the local index recorded"
                        f" {expected_sha256} when the message was stored")
    # an encrypted project's envelope opened with the spool's keys (SPEC 9.5)
    payload = opened(key, key[len(destination.prefix):], payload)
    document = _payload_document(key, payload)
    entry = _entry_from_payload(destination, key, document, actual, fetched.info.version_id,
                                phone_region)
    return VerifiedMessage(entry, payload, document)


def _payload_document(key: str, payload: bytes) -> dict[str, Any]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_intact(key, "the payload is not UTF-8") from None
    try:
        # decode_json caps nesting (model.MAX_DEPTH) before anything recursive runs, so a
        # forged object nested thousands deep is one integrity error, never a RecursionError.
        document = decode_json(text)
    except InvalidMessage as exc:
        raise _not_intact(key, f"the payload is not a stored message's JSON ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - whatever a forged object does, it is not intact
        raise _not_intact(key, f"the payload cannot be read ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise _not_intact(key, "the payload is not a JSON object")
    try:
        canonical = canonical_json(document)
    except SmError:
        canonical = b""
    if canonical != payload:
        raise _not_intact(key, "the payload is not in the canonical encoding sm writes"
                          " (it was re-encoded or edited)")
    return document


def _entry_from_payload(destination: Destination, key: str, document: dict[str, Any],
                        payload_sha256: str, version_id: str | None,
                        phone_region: str | None = None) -> IndexEntry:
    """The index row for a payload, after checking the key names the same message."""
    parsed = parse_key(key, destination.prefix)
    if parsed is None:
        raise _not_intact(key, "the key is not an sm message key")
    try:
        digest = digest_for(parsed["project_id"])  # the project's hash (SPEC 9.5)
        rhash = recipient_hash(document.get("recipient") or {}, digest)
        sent_at = format_utc(parse_sent_at(document.get("sent_at")))
    except (SmError, ValueError) as exc:
        raise _not_intact(key, f"the payload is not a stored message ({exc})") from None
    campaign = document.get("campaign_id")
    # The key's campaign folder is the payload's campaign, or `unassociated` for none (so a
    # campaign literally named "unassociated" shares that folder, as SPEC 3's layout implies).
    folder = key[len(destination.prefix):].split("/")[3]
    claims = {"medium": (parsed["medium"], document.get("medium")),
              "project_id": (parsed["project_id"], document.get("project_id")),
              "recipient_hash": (parsed["recipient_hash"], rhash),
              "campaign_id": (folder, UNASSOCIATED if campaign is None else campaign),
              "message_id": (parsed["message_id"], document.get("message_id"))}
    for name, (in_key, value) in claims.items():
        if in_key != value:
            raise _not_intact(key, f"the key says {name} {json.dumps(in_key)} but the payload"
                              f" says {json.dumps(value, ensure_ascii=False)}")
    message_type = document.get("message_type")
    if not isinstance(message_type, str):
        raise _not_intact(key, "the payload has no message_type")
    return IndexEntry(
        project_id=parsed["project_id"], message_id=parsed["message_id"],
        medium=parsed["medium"], message_type=message_type, campaign_id=campaign,
        recipient_hash=rhash, sent_at=sent_at, key=key, payload_sha256=payload_sha256,
        version_id=version_id, destination_url=destination.url,
        recipient_hashes=tuple(sorted({rhash, *search_hashes(
            document.get("recipient"), phone_region, digest).values()})))


def read_many(destination: Destination, keys: Iterable[str], *,
              expected: dict[str, str] | None = None, workers: int = READ_WORKERS,
              max_payload_bytes: int = MAX_PAYLOAD_BYTES,
              phone_region: str | None = None,
              ) -> Iterator[tuple[str, VerifiedMessage | SmError]]:
    """Read and verify many keys in parallel; yields (key, result or the error) as they finish.

    Integrity failures and objects gone since listing are yielded as errors so one bad
    object does not hide the others; other destination errors propagate. `phone_region` as
    for `read_verified`.
    """
    expected = expected or {}
    pending: deque[str] = deque(keys)
    running: dict[Future[VerifiedMessage], str] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sm-read")
    try:
        while pending or running:
            while pending and len(running) < workers * 2:
                key = pending.popleft()
                running[pool.submit(read_verified, destination, key,
                                    expected_sha256=expected.get(key),
                                    max_payload_bytes=max_payload_bytes,
                                    phone_region=phone_region)] = key
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                key = running.pop(future)
                try:
                    yield key, future.result()
                except (IntegrityError, ObjectNotFound, KeyUnavailable) as exc:
                    yield key, exc  # KeyUnavailable: erased (sm forget), or no key here
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
