"""The archived bytes: canonical JSON (SPEC 3) and its gzip object.

One encoder. `canonical_json` encodes a JSON object with sorted keys, compact separators and
raw UTF-8 (what `json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
gives), one top-level member at a time; `encode_document` is `canonical_json` of a message
plus `schema_version`, and takes the content hash from the same member bytes.
"""

from __future__ import annotations

import bisect
import gzip
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NoReturn

from ..errors import InvalidMessage
from .decode import SAFE_INT_BITS, check_json_values
from .fields import CONFIRMATION_FIELDS, SCHEMA_VERSION
from .recipients import sha256_hex

_encode_string: Final = json.encoder.encode_basestring  # exactly what json.dumps does for a str
# json.dumps's canonical arguments, built once (json.dumps builds an encoder on every call).
_STANDARD: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                    allow_nan=False)
# '"name":' of the usual top-level members, encoded once.
_MEMBER_NAMES: Final = {name: f"{_encode_string(name)}:".encode() for name in (
    "campaign_id", "content", "journey_id", "medium", "message_id", "message_type",
    "project_id", "provider", "recipient", "schema_version", "sent_at", "template_id")}
_to_json: Callable[[Any], bytes] | None = None  # pydantic-core's encoder, once imported


class _Unusual(Exception):
    """A value pydantic-core's encoder is not given (the standard library's takes it)."""


def _sorted_tree(value: Any) -> Any:
    """A copy of a JSON object or array with every object's keys sorted, for pydantic-core's
    encoder (which keeps the order it is given). Raises _Unusual at anything but dict, list,
    str, int, bool and None exactly: a float (its digits are Python's repr to spell), a very
    long integer, a subclass, a key that is not a str — those take the standard library's
    encoder, which also names what JSON cannot carry."""
    kind = type(value)
    if kind is dict:
        copy = {}
        for key in sorted(value):
            if type(key) is not str:
                raise _Unusual
            item = value[key]
            kind = type(item)
            if kind is str or item is None or kind is bool or (
                    kind is int and item.bit_length() <= SAFE_INT_BITS):
                copy[key] = item
            else:
                copy[key] = _sorted_tree(item)
        return copy
    if kind is list:
        return [item if type(item) is str else _sorted_tree(item) for item in value]
    if value is None or kind is bool or (kind is int and value.bit_length() <= SAFE_INT_BITS):
        return value
    raise _Unusual


def _encode_value(value: Any, accelerated: bool) -> bytes:
    """One value as canonical JSON bytes. Scalars are spelled directly (an encoder call costs
    more than the work). With `accelerated`, objects and arrays go through pydantic-core's
    encoder: the same bytes for these trees (the same escapes, raw UTF-8, compact) at a third
    of the standard library's cost; anything unusual falls through to the standard library."""
    global _to_json
    kind = type(value)
    if kind is str:
        return _encode_string(value).encode("utf-8")
    if value is None:
        return b"null"
    if value is True:
        return b"true"
    if value is False:
        return b"false"
    if kind is int:
        return int.__repr__(value).encode()
    if accelerated and (kind is dict or kind is list):
        try:
            if _to_json is None:
                # pydantic-core (~50 ms) loads on the first message encoded, not at start-up
                from pydantic_core import to_json

                _to_json = to_json
            return _to_json(_sorted_tree(value))
        except Exception:  # a lone surrogate, a float, ...: the standard library says what
            pass
    return _STANDARD.encode(value).encode("utf-8")


def _members(document: Mapping[str, Any], names: Iterable[str], *,
             accelerated: bool) -> list[bytes]:
    """The members `names` of `document`, each as its `"name":value` bytes.

    Raises InvalidMessage naming the field when a value cannot be carried (NaN, Infinity, a
    lone surrogate, a key that is not a string, a circular reference).
    """
    try:
        return [(_MEMBER_NAMES.get(name) or f"{_encode_string(name)}:".encode())
                + _encode_value(document[name], accelerated) for name in names]
    except (UnicodeEncodeError, ValueError, TypeError, RecursionError):
        _cannot_carry(document)


def _sorted_names(document: Mapping[str, Any]) -> list[str]:
    """The member names of `document` in canonical (sorted) order."""
    try:
        return sorted(document)
    except TypeError:  # names of mixed types: one is not a string
        _cannot_carry(document)


def _cannot_carry(document: Mapping[str, Any]) -> NoReturn:
    """Raise InvalidMessage naming the field of `document` that JSON cannot carry."""
    check_json_values(dict(document))
    raise InvalidMessage("message contains a value JSON cannot carry")


def _joined(parts: Iterable[bytes]) -> bytes:
    return b"{" + b",".join(parts) + b"}"


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON with sorted keys and compact separators: one document, one byte string.

    Raises InvalidMessage naming the field when a value cannot be carried (NaN, Infinity, a
    lone surrogate).
    """
    return _joined(_members(document, _sorted_names(document), accelerated=False))


_SCHEMA_MEMBER: Final = _members({"schema_version": SCHEMA_VERSION}, ["schema_version"],
                                  accelerated=False)[0]


def encode_document(document: Mapping[str, Any]) -> tuple[bytes, str]:
    """The archived payload bytes of `document` and its content hash, in one encoding pass.

    The payload is exactly `canonical_json({**document, "schema_version": 1})`; the content
    hash is the SHA-256 of `canonical_json(document without sent_at and provider)`. Each
    member is encoded once and both are joined from the same parts. Used at validation, where
    pydantic is loaded already, so objects take pydantic-core's faster encoder.
    """
    names = _sorted_names(document)
    if "schema_version" in document:
        names.remove("schema_version")
    parts = _members(document, names, accelerated=True)
    content = _joined([part for name, part in zip(names, parts, strict=True)
                       if name not in CONFIRMATION_FIELDS])
    parts.insert(bisect.bisect(names, "schema_version"), _SCHEMA_MEMBER)
    return _joined(parts), sha256_hex(content)


def payload_bytes(document: Mapping[str, Any]) -> bytes:
    """The archived payload: the document plus `schema_version`, canonically encoded."""
    return encode_document(document)[0]


def content_sha256(document: Mapping[str, Any]) -> str:
    """Hash of a document without its confirmation fields (`sent_at`, `provider`)."""
    return encode_document(document)[1]


def gzip_body(payload: bytes) -> bytes:
    """Gzip with header mtime 0 and no file name, so equal payloads give equal objects."""
    return gzip.compress(payload, compresslevel=6, mtime=0)
