"""The message contract: validation, the payload bytes, the object key and the recipient hash.

This module is the one source of truth for the key layout
(`{prefix}{medium}/{project_id}/{recipient_hash}/{campaign_id}/{message_id}.json.gz`), the
recipient-hash rule and the canonical payload encoding; every other layer imports them.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from ..errors import InvalidMessage

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .models import CONTENT_MODELS as CONTENT_MODELS
    from .models import MESSAGE_MODELS as MESSAGE_MODELS
    from .models import EmailContent as EmailContent
    from .models import EmailMessage as EmailMessage
    from .models import MessageFields as MessageFields
    from .models import Provider as Provider
    from .models import PushContent as PushContent
    from .models import PushMessage as PushMessage
    from .models import Recipient as Recipient
    from .models import SmsContent as SmsContent
    from .models import SmsMessage as SmsMessage

SCHEMA_VERSION = 1
MEDIUMS: tuple[str, ...] = ("email", "sms", "push")
MESSAGE_TYPES: tuple[str, ...] = ("blast", "triggered", "journey")
UNASSOCIATED = "unassociated"
KEY_SUFFIX = ".json.gz"
# Fields stored as strings whatever JSON type they arrived as.
REFERENCE_FIELDS: tuple[str, ...] = ("project_id", "campaign_id", "template_id", "journey_id")
# Fields a later `sent` event adds; excluded when deciding duplicate vs conflict.
CONFIRMATION_FIELDS: tuple[str, ...] = ("sent_at", "provider")
# The recipient fields in the order the hash rule looks at them, with their normalisation.
RECIPIENT_FIELDS: tuple[str, ...] = ("email", "user_id", "phone_number", "device_token")

MESSAGE_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
REFERENCE_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
RFC3339_RE = re.compile(  # ASCII digits only: `\d` would also match Arabic-Indic digits
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# How deep JSON objects and arrays may nest (the top-level object is level 1). Deeper input is
# rejected before anything recursive (the JSON decoder, pydantic, the encoder) sees it.
MAX_DEPTH = 64
# How many JSON values (counting every object, array, string, number, true/false/null) one
# message given to the Python API may hold; shared sub-objects count once per appearance.
MAX_VALUES = 1_000_000


# --------------------------------------------------------------------------- validation


def check_message_id(value: Any) -> str:
    """Return `value` if it is a valid message id, else raise ValueError with the reason."""
    if not isinstance(value, str):
        raise ValueError("message_id must be a string")
    if not MESSAGE_ID_RE.fullmatch(value):
        raise ValueError("message_id must be 1-128 characters of A-Z a-z 0-9 . _ -")
    return value


def normalise_reference(name: str, value: Any) -> str:
    """Return a project/campaign/template/journey id as a string, or raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{name} must be an integer or a string")
    if isinstance(value, int) and value.bit_length() > 430:  # > 128 digits: never str() it
        raise ValueError(f"{name} must be 1-128 characters of A-Z a-z 0-9 _ -")
    text = str.__str__(value) if isinstance(value, str) else int.__repr__(value)
    if not REFERENCE_RE.fullmatch(text):
        raise ValueError(f"{name} must be 1-128 characters of A-Z a-z 0-9 _ -")
    return text


def parse_sent_at(value: Any) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset into an aware UTC datetime.

    Also takes an aware `datetime`. Raises InvalidMessage (a ValueError) for anything else: a
    naive datetime (SPEC 8: it has no offset, so it would mean a different instant on each
    host), a time that leaves the representable range once normalised to UTC
    (`0001-01-01T00:00:00+01:00`), or any other type.
    """
    if isinstance(value, datetime):
        return _aware_utc(value)
    if not isinstance(value, str) or not RFC3339_RE.fullmatch(value):
        raise InvalidMessage("sent_at must be an RFC 3339 timestamp such as 2026-11-27T17:00:00Z")
    text = value.replace("t", "T").replace(" ", "T").replace("z", "Z")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidMessage(f"sent_at is not a valid date/time ({exc})") from None
    return _aware_utc(parsed)


def _aware_utc(moment: datetime, name: str = "sent_at") -> datetime:
    """`moment` in UTC; InvalidMessage if it is naive or falls outside years 1-9999 in UTC."""
    try:
        offset = moment.utcoffset()
    except Exception as exc:  # a broken tzinfo
        raise InvalidMessage(f"{name} has an unusable time zone ({type(exc).__name__})") from None
    if offset is None:
        raise InvalidMessage(f"{name} must be a timezone-aware datetime (a naive datetime has no"
                             " UTC offset, so it would be read as this host's local time)")
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidMessage(f"{name} is out of range: it falls outside years 1-9999 in"
                             " UTC") from None


def format_utc(moment: datetime, name: str = "sent_at") -> str:
    """Render an aware datetime as RFC 3339 UTC with a `Z` (the form stored in the index).

    Raises InvalidMessage naming `name` for a naive datetime or one outside UTC's range.
    """
    return _aware_utc(moment, name).isoformat().replace("+00:00", "Z")


_Parsed = TypeVar("_Parsed")

_JSON_SCALARS = (str, int, float, type(None))
# Integers with more bits than this may exceed Python's int-to-str digit limit (4300 digits).
_SAFE_INT_BITS = 14_000


def _where(path: str) -> str:
    if len(path) > 100:
        path = f"{path[:60]}...{path[-30:]}"
    return path or "message"


def _json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words."""
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    return "an object"


_Link = tuple[Any, str | int] | None  # (parent link, key or index): a path, built on demand


def _path_of(link: _Link) -> str:
    parts: list[str | int] = []
    while link is not None:
        link, part = link
        parts.append(part)
    path = ""
    for part in reversed(parts):
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


def _check_json_values(root: Any, *, scalars: bool = True) -> None:
    """Reject what JSON or UTF-8 cannot carry, naming the field; never recurses.

    Checks, iteratively: values are JSON values only (object with string keys, array,
    string, number, true/false/null); nesting is at most MAX_DEPTH levels; nothing contains
    itself; at most MAX_VALUES values; and, with `scalars`, strings and keys hold no lone
    surrogate and numbers are finite and printable. Raises InvalidMessage.

    Without `scalars` it is the cheap structural pass run before anything recursive sees a
    Python object; the encoder catches bad scalars later and this runs again to name them.
    """
    count = 1
    stack: list[tuple[Any, _Link, int]] = [(root, None, 1)]
    while stack:
        value, link, depth = stack.pop()
        kind = type(value)
        if kind is dict or kind is list or isinstance(value, dict | list | tuple):
            if depth > MAX_DEPTH:
                _too_deep(root, link)
            count += len(value)
            if count > MAX_VALUES:
                raise InvalidMessage(f"message holds more than {MAX_VALUES:,} JSON values")
            if isinstance(value, dict):
                items = list(value.items())
                for key, _ in items:
                    if type(key) is not str and not isinstance(key, str):
                        raise InvalidMessage(f"{_where(_path_of(link))} has a key that is not"
                                             " a string")
                    if scalars and _SURROGATE_RE.search(key):
                        raise InvalidMessage(f"{_where(_path_of(link))} has a key with a lone"
                                             " surrogate (not valid Unicode)")
                stack.extend((item, (link, key), depth + 1) for key, item in reversed(items))
            else:
                stack.extend((item, (link, index), depth + 1)
                             for index, item in reversed(list(enumerate(value))))
        elif kind is str or isinstance(value, str):
            if scalars and _SURROGATE_RE.search(value):
                raise InvalidMessage(f"{_where(_path_of(link))} contains a lone surrogate"
                                     " (not valid Unicode)")
        elif value is None or isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if scalars and value.bit_length() > _SAFE_INT_BITS:
                try:
                    int.__repr__(value)
                except ValueError:
                    raise InvalidMessage(f"{_where(_path_of(link))}: number out of range (more"
                                         f" than {sys.get_int_max_str_digits()} digits)") from None
        elif isinstance(value, float):
            if scalars and (value != value or value in (float("inf"), float("-inf"))):
                raise InvalidMessage(f"{_where(_path_of(link))} must be a finite number"
                                     " (NaN and Infinity are not JSON)")
        else:
            raise InvalidMessage(f"{_where(_path_of(link))} must be a JSON value (object, array,"
                                 " string, number, true, false or null), not a"
                                 f" {type(value).__name__}")


_PLAIN_SCALARS = (str, int, float, bool, type(None))


class _Unusual(Exception):
    """Raised by the fast structural pass; the slow pass then names the problem."""


def _plain_tree_size(value: Any, depth: int) -> int:
    """Values in a tree of plain dicts/lists/scalars; raises _Unusual for anything else.

    Recursion is bounded by MAX_DEPTH (a cycle ends there too), so it is safe and much faster
    than the iterative pass, which runs only when this one gives up.
    """
    if depth > MAX_DEPTH:
        raise _Unusual
    items = value.values() if type(value) is dict else value
    if type(value) is dict:
        for key in value:
            if type(key) is not str:
                raise _Unusual
    size = len(value)
    for item in items:
        kind = type(item)
        if kind is dict or kind is list:
            size += _plain_tree_size(item, depth + 1)
            if size > MAX_VALUES:
                raise _Unusual
        elif kind not in _PLAIN_SCALARS:
            raise _Unusual
    return size


def _check_structure(root: Any) -> None:
    """The cheap pre-check of a Python object: a JSON-shaped tree of bounded size and depth."""
    if type(root) is dict:
        try:
            _plain_tree_size(root, 1)
            return
        except _Unusual:
            pass
    _check_json_values(root, scalars=False)


def _too_deep(root: Any, link: _Link) -> None:
    """Raise for a container past MAX_DEPTH: a circular reference if one is on its path."""
    chain: list[str | int] = []
    walk = link
    while walk is not None:
        walk, part = walk
        chain.append(part)
    seen = {id(root)}
    node = root
    for depth, part in enumerate(reversed(chain), start=1):
        node = node[part]
        if id(node) in seen:
            partial: _Link = None
            for step in list(reversed(chain))[:depth]:
                partial = (partial, step)
            raise InvalidMessage(f"{_where(_path_of(partial))} contains itself (a circular"
                                 " reference)")
        seen.add(id(node))
    raise InvalidMessage(f"{_where(_path_of(link))}: nested more than {MAX_DEPTH} levels deep")


# --------------------------------------------------------------------------- JSON text


class _Reject(Exception):
    """Raised from inside the JSON decoder's hooks; carries the rejection reason."""


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Reject(f"duplicate key {json.dumps(key)} in a JSON object")
            seen.add(key)
    return document


def _parse_float(text: str) -> float:
    value = float(text)
    shown = text if len(text) <= 40 else text[:37] + "..."
    if value in (float("inf"), float("-inf")):
        raise _Reject(f"number out of range ({shown} is too large for a 64-bit float)")
    if value == 0.0 and any(c in "123456789" for c in text.lower().partition("e")[0]):
        raise _Reject(f"number out of range ({shown} is too small for a 64-bit float and"
                      " would become 0)")
    return value


def _parse_constant(text: str) -> Any:
    raise _Reject(f"not valid JSON ({text} is not a JSON number)")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_hook, parse_float=_parse_float,
                            parse_constant=_parse_constant)
# A JSON string (possibly unterminated) or one bracket: what the depth scan looks at.
_STRUCTURE_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def _nesting_exceeds(text: str, limit: int) -> bool:
    """True when the brackets outside strings nest deeper than `limit` (linear, no recursion)."""
    if text.count("{") + text.count("[") <= limit:
        return False
    depth = 0
    for match in _STRUCTURE_RE.finditer(text):
        token = match.group()
        if token in ("{", "["):
            depth += 1
            if depth > limit:
                return True
        elif token in ("}", "]"):
            depth -= 1
    return False


def decode_json(text: str) -> Any:
    """Decode one JSON text strictly; raises InvalidMessage with an accurate reason.

    Stricter than `json.loads`: duplicate object keys, NaN/Infinity literals, numbers a
    float cannot hold (`1e400`, `1e-400`), nesting deeper than MAX_DEPTH and lone surrogates
    (`"\\ud800"`) are all rejected, each with its own reason.
    """
    if _nesting_exceeds(text, MAX_DEPTH):
        raise InvalidMessage(f"nested more than {MAX_DEPTH} levels deep")
    try:
        return _DECODER.decode(text)
    except _Reject as exc:
        raise InvalidMessage(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise InvalidMessage(f"not valid JSON ({exc.msg.removesuffix(' at')})") from None
    except ValueError as exc:  # int() refusing a number of more than 4300 digits
        if "integer string conversion" in str(exc):
            raise InvalidMessage(f"number out of range (more than"
                                 f" {sys.get_int_max_str_digits()} digits)") from None
        raise InvalidMessage(f"not valid JSON ({exc})") from None
    except RecursionError:  # not reachable after the depth scan; never let it escape
        raise InvalidMessage(f"nested more than {MAX_DEPTH} levels deep") from None


def _printable(reason: str) -> str:
    """A reason safe to store and print: lone surrogates escaped, one line."""
    reason = _SURROGATE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", reason)
    return " ".join(reason.splitlines()) if "\n" in reason or "\r" in reason else reason


# --------------------------------------------------------------------------- identity and key


def _identity_of(field: str, value: Any) -> str | None:
    """One recipient field's value normalised as the hash rule reads it; None if it is
    missing, true/false or blank."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    if not text:
        return None
    return text.lower() if field in ("email", "device_token") else text


def recipient_identity(recipient: dict[str, Any]) -> str | None:
    """The normalised string the recipient hash is taken of: the first present field."""
    for field in RECIPIENT_FIELDS:
        text = _identity_of(field, recipient.get(field))
        if text is not None:
            return text
    return None


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def recipient_hash(recipient: dict[str, Any]) -> str:
    """Lowercase hex SHA-256 of the recipient's normalised identity (SPEC 3)."""
    identity = recipient_identity(recipient)
    if identity is None:
        raise InvalidMessage(
            "recipient needs at least one of email, user_id, phone_number, device_token"
        )
    return sha256_hex(identity.encode("utf-8"))


def identifier_hashes(recipient: Any) -> dict[str, str]:
    """The hash of every recipient identifier present, by field name (`email`, `user_id`,
    `phone_number`, `device_token`), each normalised as the key's rule normalises that field
    (SPEC 3); blank and missing fields are left out, and so is anything not an object."""
    hashes: dict[str, str] = {}
    if isinstance(recipient, dict):
        for name in RECIPIENT_FIELDS:
            identity = _identity_of(name, recipient.get(name))
            if identity is not None:
                hashes[name] = sha256_hex(identity.encode("utf-8"))
    return hashes


_SORTED_RECIPIENT_FIELDS = tuple(sorted(RECIPIENT_FIELDS))


def identifier_hashes_json(hashes: dict[str, str]) -> str:
    """`identifier_hashes` as compact JSON with sorted keys (`messages.recipient_hashes`).

    Written by hand: the names and hex digits need no escaping, so this is exactly what
    `json.dumps(hashes, separators=(",", ":"), sort_keys=True)` gives, at a fraction of it.
    """
    return "{" + ",".join(f'"{name}":"{hashes[name]}"' for name in _SORTED_RECIPIENT_FIELDS
                          if name in hashes) + "}"


def recipient_hash_candidates(value: str) -> list[str]:
    """Hashes a free-form recipient search term may have been stored under.

    The caller does not say whether `value` is an email, user id, phone number or device
    token, so both normalisations are tried: stripped, and stripped + lowercased.
    """
    stripped = value.strip()
    # Both forms even with an `@`: a user id or phone number like `Bob@Corp` keeps its case.
    forms = [stripped, stripped.lower()]
    return list(dict.fromkeys(sha256_hex(form.encode("utf-8")) for form in forms))


def object_key(
    medium: str, project_id: str, recipient_hash_hex: str, campaign_id: str | None,
    message_id: str, prefix: str = "",
) -> str:
    """The object key of a message (SPEC 3); `prefix` is the destination's path."""
    campaign = campaign_id if campaign_id is not None else UNASSOCIATED
    return f"{prefix}{medium}/{project_id}/{recipient_hash_hex}/{campaign}/{message_id}{KEY_SUFFIX}"


def recipient_prefix(
    medium: str, project_id: str, recipient_hash_hex: str, prefix: str = "",
) -> str:
    """The key prefix under which every message to one recipient of a project lies."""
    return f"{prefix}{medium}/{project_id}/{recipient_hash_hex}/"


def parse_key(key: str, prefix: str = "") -> dict[str, Any] | None:
    """Split an object key back into its parts, or None if it is not an `sm` message key."""
    if not key.startswith(prefix) or not key.endswith(KEY_SUFFIX):
        return None
    parts = key[len(prefix) : -len(KEY_SUFFIX)].split("/")
    if len(parts) != 5 or parts[0] not in MEDIUMS:
        return None
    medium, project_id, rhash, campaign, message_id = parts
    return {
        "medium": medium,
        "project_id": project_id,
        "recipient_hash": rhash,
        "campaign_id": None if campaign == UNASSOCIATED else campaign,
        "message_id": message_id,
    }


# --------------------------------------------------------------------------- payload bytes


def canonical_json(document: dict[str, Any]) -> bytes:
    """UTF-8 JSON with sorted keys and compact separators: one document, one byte string.

    Raises InvalidMessage naming the field when a value cannot be carried (NaN, Infinity, a
    lone surrogate).
    """
    try:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
        return text.encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        _check_json_values(document)
        raise InvalidMessage("message contains a value JSON cannot carry") from None


def gzip_body(payload: bytes) -> bytes:
    """Gzip with header mtime 0 and no file name, so equal payloads give equal objects."""
    return gzip.compress(payload, compresslevel=6, mtime=0)


@dataclass(frozen=True, slots=True)
class Message:
    """A validated message, ready for the spool."""

    project_id: str
    message_id: str
    medium: str
    message_type: str
    campaign_id: str | None
    recipient_hash: str
    sent_at: datetime | None
    document: dict[str, Any]  # the input with normalised reference ids, no schema_version
    payload_bytes: bytes  # the archived payload (SPEC 3), encoded once at validation
    content_sha: str  # hash of everything but the confirmation fields
    recipient_hashes: str  # every identifier's hash, as JSON (`identifier_hashes_json`)
    sent_at_text: str | None  # sent_at as `format_utc` writes it (the spool's form)
    payload_sha: str  # SHA-256 of payload_bytes (`sm-payload-sha256`), taken at validation
    object_bytes: bytes  # its gzip object (`gzip_body`), made at validation, outside any lock

    @property
    def confirmed(self) -> bool:
        """True when the provider accepted the send (`sent_at` present)."""
        return self.sent_at is not None

    @property
    def key(self) -> str:
        """The object key without the destination prefix."""
        return object_key(self.medium, self.project_id, self.recipient_hash, self.campaign_id,
                          self.message_id)

    def content_sha256(self) -> str:
        """Hash of everything but the confirmation fields: equal means the same message."""
        return self.content_sha

    def payload(self) -> bytes:
        """The exact JSON bytes archived for this message (SPEC 3)."""
        return self.payload_bytes


_encode_string = json.encoder.encode_basestring  # exactly what the encoder does for a str


def _not_json(value: Any) -> Any:
    raise TypeError(f"a {type(value).__name__} is not a JSON value")


if json.encoder.c_make_encoder is not None:  # type: ignore[attr-defined]
    # The C encoder json.dumps uses, built once with json.dumps's exact arguments for
    # sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False (json.dumps
    # builds one per call, which costs more than encoding a small object).
    _c_encoder = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _not_json, _encode_string, None, ":", ",", True, False, False)

    def _encode_object(value: Any) -> str:
        return "".join(_c_encoder(value, 0))
else:  # no C accelerator (e.g. PyPy): the same bytes, more slowly
    _encode_object = json.JSONEncoder(  # type: ignore[assignment]
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _encode(value: Any) -> str:
    # Scalars are encoded directly: building the C encoder per call costs more than the work.
    if isinstance(value, str):
        return _encode_string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return int.__repr__(value)
    return _encode_object(value)


_SCHEMA_PART = f'"schema_version":{SCHEMA_VERSION}'.encode()
# '"name":' of the usual top-level members, encoded once.
_MEMBER_PREFIXES = {name: f"{_encode_string(name)}:".encode() for name in (
    "campaign_id", "content", "journey_id", "medium", "message_id", "message_type",
    "project_id", "provider", "recipient", "sent_at", "template_id")}
_TO_JSON: Callable[[Any], bytes] | None = None


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
                    kind is int and item.bit_length() <= _SAFE_INT_BITS):
                copy[key] = item
            else:
                copy[key] = _sorted_tree(item)
        return copy
    if kind is list:
        return [item if type(item) is str else _sorted_tree(item) for item in value]
    if value is None or kind is bool or (kind is int and value.bit_length() <= _SAFE_INT_BITS):
        return value
    raise _Unusual


def _encode_member(value: Any, *, large: bool = False) -> bytes:
    """One member's value as canonical JSON bytes (sorted keys, compact, UTF-8)."""
    global _TO_JSON
    kind = type(value)
    if kind is str:
        return _encode_string(value).encode("utf-8")
    if large and (kind is dict or kind is list):
        # The content (most of a message's bytes) through pydantic-core's encoder: its
        # strings cost a third of the standard library's, and the bytes are the same for
        # these trees (the same escapes, raw UTF-8, compact). Small objects (recipient,
        # provider) stay with the standard library: copying them sorted costs more than
        # that saves. Anything unusual falls through to it too.
        try:
            if _TO_JSON is None:
                from pydantic_core import to_json

                _TO_JSON = to_json
            return _TO_JSON(_sorted_tree(value))
        except Exception:  # a lone surrogate, a float, ...: the standard library says what
            pass
    return _encode(value).encode("utf-8")


def encode_document(document: dict[str, Any]) -> tuple[bytes, str]:
    """The archived payload bytes of `document` and its content hash, in one encoding pass.

    The payload is exactly `canonical_json({**document, "schema_version": 1})`; the content
    hash is the SHA-256 of `canonical_json(document without sent_at and provider)`. Each
    top-level member is encoded once and the two documents are spliced from the same parts
    (sorted keys, compact separators), so both are byte-identical to encoding them whole.
    """
    keys = list(document)
    if "schema_version" not in document:
        keys.append("schema_version")
    keys.sort()
    payload_parts: list[bytes] = []
    core_parts: list[bytes] = []
    try:
        for key in keys:
            if key == "schema_version":
                payload_parts.append(_SCHEMA_PART)
                continue
            part = (_MEMBER_PREFIXES.get(key) or f"{_encode_string(key)}:".encode()
                    ) + _encode_member(document[key], large=key == "content")
            payload_parts.append(part)
            if key not in CONFIRMATION_FIELDS:
                core_parts.append(part)
    except (UnicodeEncodeError, ValueError, TypeError, RecursionError):
        _check_json_values(document)
        raise InvalidMessage("message contains a value JSON cannot carry") from None
    return b"{" + b",".join(payload_parts) + b"}", sha256_hex(b"{" + b",".join(core_parts) + b"}")


def payload_bytes(document: dict[str, Any]) -> bytes:
    """The archived payload: the document plus `schema_version`, canonically encoded."""
    return encode_document(document)[0]


def content_sha256(document: dict[str, Any]) -> str:
    """Hash of a document without its confirmation fields (`sent_at`, `provider`)."""
    return encode_document(document)[1]


def _schema_version_ok(raw: dict[str, Any]) -> bool:
    """`schema_version` is absent or exactly the integer 1 (not true, not 1.0, not "1")."""
    if "schema_version" not in raw:
        return True
    value = raw["schema_version"]
    return type(value) is int and value == SCHEMA_VERSION


_MODELS: ModuleType | None = None
# The message models, reachable from here as before (`from .model import EmailMessage`).
_IN_MESSAGE_MODELS = frozenset({
    "EmailMessage", "SmsMessage", "PushMessage", "MessageFields", "Recipient", "Provider",
    "EmailContent", "SmsContent", "PushContent", "CONTENT_MODELS", "MESSAGE_MODELS"})


def _models() -> Any:
    """`message_models` (pydantic and the message classes), imported on first validation."""
    global _MODELS
    if _MODELS is None:
        from . import models as message_models

        _MODELS = message_models
    return _MODELS


def __getattr__(name: str) -> Any:
    """The public message models, loaded on first use."""
    if name in _IN_MESSAGE_MODELS:
        return getattr(_models(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _is_pydantic_model(value: Any) -> bool:
    """True for a pydantic model instance (none can exist before pydantic is imported)."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(value, pydantic.BaseModel)


def _from_model(raw: BaseModel) -> Any:
    sent_at = getattr(raw, "sent_at", None)
    if isinstance(sent_at, datetime):
        _aware_utc(sent_at)  # a naive datetime would be dumped without an offset
    try:
        return raw.model_dump(mode="json", by_alias=True, exclude_unset=True)
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidMessage(f"the model cannot be written as JSON ({type(exc).__name__}:"
                             f" {str(exc).splitlines()[0] if str(exc) else ''})") from None


def parse_message(raw: Any) -> Message:
    """Validate one sent message (a dict, a pydantic model, or a JSON string).

    Raises InvalidMessage whose text is a one-line reason naming the field, and nothing else,
    whatever `raw` is (self-referential, 5,000 levels deep, of any type).
    """
    return _only_invalid(lambda: _parse_message(raw), "message")


def _parse_message(raw: Any, *, decoded: bool = False) -> Message:
    """parse_message's body; `decoded` means `raw` came from decode_json (a tree of JSON)."""
    draft = _drafted(_checked(raw, decoded))
    return _finished(draft, gzip_body(draft[_PAYLOAD]))


def _checked(raw: Any, decoded: bool) -> tuple[dict[str, Any], Any]:
    """The first stage: `raw` as a JSON object that the medium's model accepts, and the
    validated model (which holds the normalised reference ids)."""
    if _is_pydantic_model(raw):
        raw = _from_model(raw)
    elif isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidMessage(f"not valid UTF-8 (bad byte at offset {exc.start})") from None
    if isinstance(raw, str):
        raw = decode_json(raw)
        decoded = True
        if isinstance(raw, str):
            raise InvalidMessage("a message must be a JSON object, not a string holding JSON"
                                 " (was it encoded twice?)")
    if not isinstance(raw, dict):
        raise InvalidMessage("a message must be a JSON object")
    if isinstance(raw.get("sent_at"), datetime):  # the Python API may pass an aware datetime
        raw = {**raw, "sent_at": format_utc(raw["sent_at"])}
    if not decoded:
        _check_structure(raw)  # before anything recursive looks at it
    if "event" in raw:
        raise InvalidMessage("this is an event, not a message")
    if not _schema_version_ok(raw):
        raise InvalidMessage(f"schema_version must be {SCHEMA_VERSION} when given")
    medium = raw.get("medium")
    models = _models()
    model = models.MESSAGE_MODELS.get(medium, models.MessageFields) if isinstance(
        medium, str) else models.MessageFields
    try:
        # One pass checks the top level and the medium's content.
        return raw, model.model_validate(raw)
    except models.ValidationError as exc:
        if any(e["type"] == "string_unicode" for e in exc.errors()):
            _check_json_values(raw)  # names the field holding the lone surrogate
        raise InvalidMessage(models.reason(exc)) from None


# A message's fields in `Message`'s order, all but its last (the gzip object).
_Draft = tuple[str, str, str, str, str | None, str, datetime | None, dict[str, Any], bytes, str,
               str, str | None, str]
_PAYLOAD: Final = 8  # where a draft holds the payload bytes


def _drafted(checked: tuple[dict[str, Any], Any]) -> _Draft:
    """The second stage: a checked message's fields, in `Message`'s order, all but its gzip
    object (the payload encoded, the content and identifier hashes taken)."""
    raw, validated = checked
    document = {k: v for k, v in raw.items() if k != "schema_version"}
    for name in REFERENCE_FIELDS:
        if document.get(name) is not None:
            # the validator normalised it already (normalise_reference)
            document[name] = getattr(validated, name)
    # checked here, not by a validator, so it is parsed once
    sent_at_raw = raw.get("sent_at")
    sent_at = parse_sent_at(sent_at_raw) if sent_at_raw is not None else None
    # Encoding here rejects lone surrogates and NaN at ingest, never at upload.
    payload, content_sha = encode_document(document)
    hashes = identifier_hashes(document["recipient"])
    if not hashes:  # the Recipient model checked this already; the key needs one
        raise InvalidMessage(
            "recipient needs at least one of email, user_id, phone_number, device_token")
    return (
        document["project_id"], document["message_id"], document["medium"],
        document["message_type"], document.get("campaign_id"),
        # the first identifier present, as recipient_hash reads it (the key's hash)
        next(iter(hashes.values())),
        sent_at, document, payload, content_sha, identifier_hashes_json(hashes),
        None if sent_at is None else _utc_text(sent_at_raw, sent_at),
        sha256_hex(payload),
    )


def _finished(draft: _Draft, gzipped: bytes) -> Message:
    """The last stage: the Message of a draft and its gzip object."""
    return Message(*draft, gzipped)  # object_bytes is Message's last field


def _utc_text(given: Any, moment: datetime) -> str:
    """`format_utc(moment)`, where `given` is the text `moment` was parsed from: text already
    in that form (`2026-11-27T17:00:00Z`: UTC, whole seconds) is returned as it is."""
    if type(given) is str and len(given) == 20 and given[10] == "T" and given[19] == "Z":
        return given
    return format_utc(moment)


@dataclass(frozen=True, slots=True)
class SendEvent:
    """A later line confirming (`sent`) or failing (`send_failed`) a recorded message."""

    event: Literal["sent", "send_failed"]
    project_id: str
    message_id: str
    sent_at: datetime | None = None
    sent_at_text: str | None = None
    provider: dict[str, Any] | None = None
    reason: str | None = None


def parse_event(raw: Any) -> SendEvent:
    """Validate a `sent` / `send_failed` event; raises InvalidMessage and nothing else.

    A `sent` event's `provider` follows the message rule (an object whose `name` and
    `message_id` are strings when given); its `sent_at` may be an aware datetime.
    """
    return _only_invalid(lambda: _parse_event(raw), "event")


def _parse_event(raw: Any, *, decoded: bool = False) -> SendEvent:
    if not isinstance(raw, dict):
        raise InvalidMessage("an event must be a JSON object")
    if isinstance(raw.get("sent_at"), datetime):
        raw = {**raw, "sent_at": format_utc(raw["sent_at"])}
    if not decoded:
        _check_json_values(raw)
    kind = raw.get("event")
    if not isinstance(kind, str) or kind not in ("sent", "send_failed"):
        raise InvalidMessage("event must be sent or send_failed")
    if not _schema_version_ok(raw):
        raise InvalidMessage(f"schema_version must be {SCHEMA_VERSION} when given")
    try:
        if raw.get("message_id") is None:
            raise ValueError("message_id is required")
        message_id = check_message_id(raw.get("message_id"))
        if raw.get("project_id") is None:
            raise ValueError("project_id is required")
        project_id = normalise_reference("project_id", raw.get("project_id"))
    except ValueError as exc:
        raise InvalidMessage(str(exc)) from None
    if kind == "send_failed":
        reason = raw.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise InvalidMessage("reason must be a string")
        return SendEvent("send_failed", project_id, message_id, reason=reason or "send_failed")
    if raw.get("sent_at") is None:
        raise InvalidMessage("sent_at is required on a sent event")
    sent_at = parse_sent_at(raw.get("sent_at"))
    provider = raw.get("provider")
    if provider is not None:
        if not isinstance(provider, dict):
            raise InvalidMessage("provider must be an object")
        models = _models()
        try:
            models.Provider.model_validate(provider)
        except models.ValidationError as exc:
            raise InvalidMessage(models.reason(exc, "provider")) from None
    return SendEvent("sent", project_id, message_id, sent_at=sent_at,
                     sent_at_text=raw["sent_at"], provider=provider)


def parse_line(text: str) -> Message | SendEvent | InvalidMessage:
    """One JSON Lines line as a message, an event, or the reason it is rejected; never raises.

    The caller skips only lines that are exactly empty once the line ending (`\\r\\n`) is
    removed; a line of other whitespace (spaces, tabs, form feed, NBSP, U+2028 ...) is rejected
    here, since silently dropping it could hide a damaged record.
    """
    def parse() -> Message | SendEvent:
        item = _decoded_line(text)
        if isinstance(item, _DecodedLine):
            return _parse_message(item.value, decoded=True)
        return item

    try:  # never raise: one bad line must not stop the others
        return _only_invalid(parse, "line")
    except InvalidMessage as exc:
        return exc


def _only_invalid(parse: Callable[[], _Parsed], what: str) -> _Parsed:
    """Run `parse`; whatever goes wrong becomes one InvalidMessage with a printable reason.

    A guarantee of the API: callers only ever see InvalidMessage, for any input.
    """
    try:
        return parse()
    except InvalidMessage as exc:
        reason = _printable(str(exc))
        if reason == str(exc):
            raise
        raise InvalidMessage(reason) from None
    except Exception as exc:
        raise _as_invalid(exc, what) from None


def _as_invalid(exc: Exception, what: str) -> InvalidMessage:
    """The InvalidMessage `_only_invalid` raises for `exc`."""
    if isinstance(exc, InvalidMessage):
        reason = _printable(str(exc))
        return exc if reason == str(exc) else InvalidMessage(reason)
    return InvalidMessage(f"{what} cannot be validated ({type(exc).__name__})")


# --------------------------------------------------------------------------- many at once


def parse_messages(raws: Sequence[Any]) -> list[Message | InvalidMessage]:
    """`parse_message` of each item: its Message, or the InvalidMessage it would raise.

    The same checks and bytes, done stage by stage over the whole batch (every message
    checked, then every one encoded, then every one compressed): each stage's code stays
    hot in the CPU's caches instead of being evicted by the next stage's for every message
    (`record_many` ran 1.24x the messages a second of one at a time, side by side here).
    A batch of `PARALLEL_GZIP_AT` or more is compressed on two threads (`gzip_bodies`).
    """
    return _parse_many(list(raws), decoded=False, what="message")


def parse_lines(texts: Sequence[str]) -> list[Message | SendEvent | InvalidMessage]:
    """`parse_line` of each text, stage by stage as `parse_messages` does; never raises."""
    items: list[Any] = []
    for text in texts:
        try:
            items.append(_only_invalid(partial(_decoded_line, text), "line"))
        except InvalidMessage as exc:
            items.append(exc)
    messages = [index for index, item in enumerate(items) if type(item) is _DecodedLine]
    parsed = _parse_many([items[index].value for index in messages], decoded=True,
                         what="line")
    for index, result in zip(messages, parsed, strict=True):
        items[index] = result
    return items


class _DecodedLine:
    """A line's JSON value, when it is to be parsed as a message (`parse_lines`)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _decoded_line(text: str) -> SendEvent | _DecodedLine:
    """parse_line's first stage: an event parsed, or a message's JSON value to parse."""
    if not text.strip():
        raise InvalidMessage("blank line (whitespace only)")
    raw = decode_json(text)
    if isinstance(raw, dict) and "event" in raw:
        return _parse_event(raw, decoded=True)
    if isinstance(raw, str):
        raise InvalidMessage("a message must be a JSON object, not a string holding JSON"
                             " (was it encoded twice?)")
    return _DecodedLine(raw)


def _parse_many(items: list[Any], *, decoded: bool, what: str
                ) -> list[Message | InvalidMessage]:
    """The stages of `_parse_message` over `items`, a chunk of `STAGE_CHUNK` at a time; a
    failure is kept in its item's place.

    The cyclic garbage collector is paused during a chunk (if it was on): a chunk makes tens
    of thousands of short-lived containers, and every few hundred of them a collection would
    walk the caller's whole heap (a third more CPU a message with 20,000 messages alive).
    A chunk's objects hold no cycles; whatever it leaves is collected once it is back on.
    """
    if len(items) == 1:  # a lone `record()`: the stages' bookkeeping would cost more
        try:
            return [_parse_message(items[0], decoded=decoded)]
        except Exception as exc:
            return [_as_invalid(exc, what)]
    results: list[Message | InvalidMessage] = []
    for first in range(0, len(items), STAGE_CHUNK):
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            results += _parse_stages(items[first:first + STAGE_CHUNK], decoded=decoded,
                                     what=what)
        finally:
            if paused:
                gc.enable()
    return results


STAGE_CHUNK = 1000  # messages validated stage by stage together (and with the GC paused)


def _parse_stages(items: list[Any], *, decoded: bool, what: str
                  ) -> list[Message | InvalidMessage]:
    """One chunk: each stage (`_checked`, `_drafted`, the gzip objects, `_finished`) over
    every message still valid, before the next stage begins."""
    failed: list[InvalidMessage | None] = [None] * len(items)

    def checked(raw: Any) -> tuple[dict[str, Any], Any]:
        return _checked(raw, decoded)

    stages: tuple[Callable[[Any], Any], ...] = (checked, _drafted)
    for stage in stages:
        for index, item in enumerate(items):
            if failed[index] is None:
                try:
                    items[index] = stage(item)
                except Exception as exc:
                    failed[index] = _as_invalid(exc, what)
    good = [index for index, failure in enumerate(failed) if failure is None]
    gzipped = gzip_bodies([items[index][_PAYLOAD] for index in good])
    for index, body in zip(good, gzipped, strict=True):
        items[index] = _finished(items[index], body)
    return [item if failure is None else failure for item, failure in zip(items, failed,
                                                                           strict=True)]


# A batch this long is compressed on two threads (below it, starting one costs more).
PARALLEL_GZIP_AT = 64
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def gzip_bodies(payloads: Sequence[bytes]) -> list[bytes]:
    """`gzip_body` of each payload. A list of `PARALLEL_GZIP_AT` or more on a machine with a
    second core is split between this thread and a short-lived second one: zlib lets go
    of the GIL while it compresses, so the two halves run at once (~1.8x here)."""
    if len(payloads) < PARALLEL_GZIP_AT or (_CPUS or 1) < 2:
        return [gzip_body(payload) for payload in payloads]
    half = len(payloads) // 2
    first: list[bytes] = []
    failure: list[BaseException] = []

    def compress_first_half() -> None:
        try:
            first.extend(gzip_body(payload) for payload in payloads[:half])
        except BaseException as exc:  # handed to the calling thread  # pragma: no cover
            failure.append(exc)

    helper = threading.Thread(target=compress_first_half, name="sm-gzip", daemon=True)
    helper.start()
    try:
        second = [gzip_body(payload) for payload in payloads[half:]]
    finally:
        helper.join()
    if failure:  # pragma: no cover - zlib fails only when memory runs out
        raise failure[0]
    return first + second
