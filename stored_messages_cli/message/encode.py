"""The archived bytes: canonical JSON (SPEC 3) and its gzip object (SPEC 9.6, "Object bytes").

Canonical JSON is what `json.dumps(document, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)` gives, as UTF-8: `reference_canonical_json`, the definition. Two encoders
give those bytes. orjson with sorted keys takes a document that holds only objects, arrays,
strings, true, false, null and integers within 64 bits: for these it writes the same escapes
(`\\"`, `\\\\`, `\\n`, `\\r`, `\\t`, `\\b`, `\\f`, `\\u00XX` for the other control characters),
raw UTF-8 for everything else, and sorts keys by their UTF-8 bytes, which is code point order,
Python's. The standard library's encoder takes anything else: a float (orjson spells some
differently: `1e+300` is `1e300` there), a longer integer, a subclass, a tuple, and what
orjson refuses (a lone surrogate, a key that is not a string), whose reason it then names.
tests/test_encode_fast.py proves the two give the same bytes on arbitrary documents.

orjson (with what it imports, ~15 ms) loads on the first document encoded, not at start-up.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Final, NoReturn

from ..errors import InvalidMessage
from .decode import check_json_values
from .fields import CONFIRMATION_FIELDS, SCHEMA_VERSION
from .recipients import sha256_hex

# json.dumps's canonical arguments, built once (json.dumps builds an encoder on every call).
_STANDARD: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                    allow_nan=False)
# The members the content hash leaves out: the confirmation fields, and the schema version
# (the payload's own, never the caller's).
_NOT_CONTENT: Final = frozenset((*CONFIRMATION_FIELDS, "schema_version"))
# Scalars orjson writes exactly as the standard library does, whatever their value.
_PLAIN_SCALARS: Final = frozenset((str, bool, type(None)))
_INT_MIN: Final = -(1 << 63)  # the integers orjson writes: a signed or an unsigned 64-bit one
_INT_MAX: Final = (1 << 64) - 1
_dumps: Callable[[Any], bytes] | None = None  # orjson with sorted keys, once imported


def _orjson_dumps() -> Callable[[Any], bytes]:
    """orjson's encoder with sorted keys, imported on first use. Subclasses of str, int, dict
    and list, dataclasses and datetimes are refused (no `default` is given), not converted."""
    global _dumps
    if _dumps is None:
        import orjson

        options = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS
                   | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME)

        def dumps(value: Any) -> bytes:
            return orjson.dumps(value, option=options)

        _dumps = dumps
    return _dumps


def _plain(tree: Any) -> bool:
    """True when every value in `tree` (an object or an array) is an object, an array, a
    string, true, false, null or an integer within 64 bits, all of exactly those types: what
    orjson encodes exactly as the standard library does. Keys are left to orjson, which
    refuses any but exact strings. Recursive: a cycle ends in RecursionError."""
    for item in tree.values() if type(tree) is dict else tree:
        kind = type(item)
        if kind in _PLAIN_SCALARS:
            continue
        if kind is int:
            if _INT_MIN <= item <= _INT_MAX:
                continue
            return False
        if (kind is dict or kind is list) and _plain(item):
            continue
        return False
    return True


def _fast(document: dict[str, Any]) -> bytes | None:
    """`document` as canonical JSON by orjson, or None when orjson's bytes could differ from
    the standard library's or orjson refuses it (the standard library then says what)."""
    try:
        if not _plain(document):
            return None
        return _orjson_dumps()(document)
    except (TypeError, ValueError, RecursionError):  # orjson.JSONEncodeError is a TypeError
        return None


def _cannot_carry(document: Mapping[str, Any]) -> NoReturn:
    """Raise InvalidMessage naming the field of `document` that JSON cannot carry."""
    check_json_values(dict(document))
    raise InvalidMessage("message contains a value JSON cannot carry")


def reference_canonical_json(document: Mapping[str, Any]) -> bytes:
    """Canonical JSON by definition: the standard library's encoder (sorted keys, compact
    separators, raw UTF-8). Raises InvalidMessage naming the field when a value cannot be
    carried (NaN, Infinity, a lone surrogate, a top-level key that is not a string)."""
    if not all(isinstance(name, str) for name in document):
        _cannot_carry(document)
    try:
        return _STANDARD.encode(dict(document)).encode("utf-8")
    except (UnicodeEncodeError, ValueError, TypeError, RecursionError):
        _cannot_carry(document)


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON with sorted keys and compact separators: one document, one byte string
    (`reference_canonical_json`'s bytes, by orjson when it gives the same).

    Raises InvalidMessage naming the field when a value cannot be carried (NaN, Infinity, a
    lone surrogate).
    """
    plain = document if type(document) is dict else dict(document)
    return _fast(plain) or reference_canonical_json(plain)


def encode_document(document: Mapping[str, Any]) -> tuple[bytes, str]:
    """The archived payload bytes of `document` and its content hash.

    The payload is exactly `canonical_json({**document, "schema_version": 1})`; the content
    hash is the SHA-256 of `canonical_json(document without sent_at, provider and
    schema_version)`. The document is checked once for what orjson takes, then both are
    encoded by the same encoder.
    """
    content = {name: value for name, value in document.items() if name not in _NOT_CONTENT}
    whole = {**document, "schema_version": SCHEMA_VERSION}
    try:
        plain = _plain(whole)
    except RecursionError:
        plain = False
    if plain:
        try:
            dumps = _orjson_dumps()
            return dumps(whole), sha256_hex(dumps(content))
        except (TypeError, ValueError, RecursionError):
            pass
    return reference_canonical_json(whole), sha256_hex(reference_canonical_json(content))


def payload_bytes(document: Mapping[str, Any]) -> bytes:
    """The archived payload: the document plus `schema_version`, canonically encoded."""
    return encode_document(document)[0]


def content_sha256(document: Mapping[str, Any]) -> str:
    """Hash of a document without its confirmation fields (`sent_at`, `provider`)."""
    return encode_document(document)[1]


# The gzip header of every object (RFC 1952): magic, deflate, no flags, mtime 0, no extra
# flags, OS 3 (Unix), as `gzip.compress(payload, compresslevel=6, mtime=0)` wrote it on
# CPython 3.11 and 3.12 (3.13 writes OS 255). Written here, it no longer depends on Python.
GZIP_HEADER: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
_RAW_DEFLATE: Final = -zlib.MAX_WBITS  # zlib's deflate stream alone
_GZIP_WRAPPED: Final = zlib.MAX_WBITS + 16  # the same stream in zlib's own gzip member
_trailer: Final = struct.Struct("<II").pack  # CRC-32, then the length modulo 2^32


def gzip_member(data: bytes) -> bytes:
    """`data` as one gzip member with pinned bytes (SPEC 9.6): `GZIP_HEADER`, zlib's raw
    deflate stream at level 6, then the CRC-32 and the length modulo 2^32, little-endian.

    zlib writes the member (taking the CRC-32 as it deflates, cheaper than a second pass);
    its 10-byte header, which names zlib's build OS, is replaced by `GZIP_HEADER`. Equal data
    give equal bytes on the same zlib; another zlib may deflate differently, so an object is
    made once (at ingest), identified by its recorded SHA-256, and never made again.
    """
    member = zlib.compress(data, 6, _GZIP_WRAPPED)
    if member[3] == 0:  # no optional header fields: zlib's header is exactly 10 bytes
        return GZIP_HEADER + member[10:]
    return gzip_member_explicit(data)


def gzip_member_explicit(data: bytes) -> bytes:
    """`gzip_member`'s bytes, each part written here: the header, zlib's raw deflate stream,
    the trailer (for a zlib whose own gzip header would carry optional fields)."""
    return b"".join((GZIP_HEADER, zlib.compress(data, 6, _RAW_DEFLATE),
                     _trailer(zlib.crc32(data), len(data) & 0xFFFFFFFF)))


def gzip_body(payload: bytes) -> bytes:
    """A message's gzip object: `gzip_member` of its payload bytes."""
    return gzip_member(payload)
