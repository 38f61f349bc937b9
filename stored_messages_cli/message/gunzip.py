"""Bounded gunzip: the one way sm decompresses bytes read from a bucket (SPEC 9.2).

A stored object is one gzip member (`encode.gzip_body`). Read back, it is hostile: a 4 MB
bomb expands to 4 GiB, so the output is produced in chunks and refused once it passes a cap,
and what a caller already knows of the object (its size, its SHA-256) is checked before a
single byte is inflated. Anything after the member (a second member, trailing garbage) is
refused: sm never writes it, and a payload could otherwise be spliced from two.
"""

from __future__ import annotations

import hashlib
import zlib

from ..errors import PayloadTooLarge, UnreadableObject

MAX_PAYLOAD_BYTES = 32 * 1024 * 1024  # the default of the `max_payload_bytes` setting
INFLATE_CHUNK = 1024 * 1024  # output produced per step, so the cap is passed by at most this
GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer (CRC32, ISIZE), checked by zlib


def max_object_bytes(limit: int = MAX_PAYLOAD_BYTES) -> int:
    """The largest gzip object sm can have written for a payload of at most `limit` bytes
    (deflate adds at most 5 bytes per stored block of 16 KiB or more, gzip 18); a bigger
    object is refused by its listed size, before it is downloaded."""
    return limit + limit // 1024 + 64


def check_known(body: bytes, key: str, *, size: int | None = None,
                object_sha256: str | None = None) -> None:
    """Refuse `body` when it is not the object recorded (its byte size, the hex SHA-256 of
    its bytes); a mismatch is raised before anything is decompressed."""
    if size is not None and len(body) != size:
        raise UnreadableObject(key, f"the object is {len(body)} bytes, {size} were recorded"
                                    " (not decompressed)")
    if object_sha256:
        digest = hashlib.sha256(body).hexdigest()
        if digest != object_sha256:
            raise UnreadableObject(key, f"the object's sha256 is {digest}, {object_sha256}"
                                        " was recorded (not decompressed)")


def gunzip(body: bytes, key: str, *, limit: int = MAX_PAYLOAD_BYTES, size: int | None = None,
           object_sha256: str | None = None) -> bytes:
    """The payload of one gzip member, at most `limit` bytes.

    Raises UnreadableObject (one line naming `key`) for bytes that are not exactly one intact
    gzip member or are not the recorded `size` / `object_sha256`, and PayloadTooLarge once
    the output passes `limit`; never expands more than `limit + INFLATE_CHUNK` bytes.
    """
    check_known(body, key, size=size, object_sha256=object_sha256)
    if len(body) > max_object_bytes(limit):
        raise too_big(key, len(body), limit)
    inflater = zlib.decompressobj(GZIP_WBITS)
    out = bytearray()
    pending = body
    try:
        while not inflater.eof:
            chunk = inflater.decompress(pending, INFLATE_CHUNK)
            pending = inflater.unconsumed_tail
            out += chunk
            if len(out) > limit:
                raise PayloadTooLarge(key, f"the payload is over max_payload_bytes ({limit}"
                                           " bytes); not decompressed further")
            if not chunk and not pending:
                raise UnreadableObject(key, "the object is not valid gzip (it is cut short)")
    except zlib.error as exc:
        raise UnreadableObject(key, f"the object is not valid gzip ({exc})") from None
    if inflater.unused_data:
        raise UnreadableObject(key, "the object is not valid gzip (bytes follow its gzip"
                                    " member)")
    return bytes(out)


def too_big(key: str, size: int, limit: int) -> PayloadTooLarge:
    """The refusal of an object too big to hold a payload of at most `limit` bytes."""
    return PayloadTooLarge(key, f"the object is {size} bytes, more than a payload of at most"
                                f" max_payload_bytes ({limit} bytes) makes; not read")


def payload_sha256_of(body: bytes, *, limit: int = MAX_PAYLOAD_BYTES) -> str | None:
    """The hex SHA-256 of a gzip object's payload, or None when the bytes are not one
    intact gzip member of at most `limit` bytes (a folder destination's derived metadata)."""
    try:
        return hashlib.sha256(gunzip(body, "", limit=limit)).hexdigest()
    except UnreadableObject:
        return None
