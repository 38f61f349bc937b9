"""Validating one message or event: `parse_message`, `parse_event`, `parse_line`.

A message is checked (its JSON shape, then the medium's pydantic model), drafted (the
payload encoded, the hashes taken) and finished (its gzip object): `batch.py` runs the same
three stages over many at once. Callers only ever see InvalidMessage, whatever the input.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from ..errors import InvalidMessage
from .decode import check_json_values, check_structure, decode_json, printable
from .encode import encode_document, gzip_body
from .fields import (
    REFERENCE_FIELDS,
    SCHEMA_VERSION,
    check_message_id,
    normalise_reference,
    schema_version_ok,
)
from .keys import object_key
from .recipients import identifier_hashes_json, search_hashes, sha256_hex
from .times import aware_utc, format_utc, parse_sent_at, utc_text

if TYPE_CHECKING:
    from pydantic import BaseModel

_Parsed = TypeVar("_Parsed")


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


_MODELS: ModuleType | None = None


def _models() -> ModuleType:
    """`models` (pydantic and the message classes), imported on the first validation."""
    global _MODELS
    if _MODELS is None:
        # pydantic (~0.2 s) loads on the first validation: `sm status` never validates
        from . import models

        _MODELS = models
    return _MODELS


def parse_message(raw: Any) -> Message:
    """Validate one sent message (a dict, a pydantic model, or a JSON string).

    Raises InvalidMessage whose text is a one-line reason naming the field, and nothing else,
    whatever `raw` is (self-referential, 5,000 levels deep, of any type).
    """
    return only_invalid(lambda: parse_raw_message(raw), "message")


def parse_raw_message(raw: Any, *, decoded: bool = False) -> Message:
    """parse_message's body, which may raise anything; `decoded` means `raw` came from
    decode_json (a tree of JSON values, so the structural pass is not needed)."""
    draft = drafted(checked(raw, decoded))
    return finished(draft, gzip_body(draft[PAYLOAD]))


def _is_pydantic_model(value: Any) -> bool:
    """True for a pydantic model instance (none can exist before pydantic is imported)."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(value, pydantic.BaseModel)


def _from_model(raw: BaseModel) -> Any:
    """A pydantic model as the JSON value it stands for (the fields it was given)."""
    sent_at = getattr(raw, "sent_at", None)
    if isinstance(sent_at, datetime):
        aware_utc(sent_at)  # a naive datetime would be dumped without an offset
    try:
        return raw.model_dump(mode="json", by_alias=True, exclude_unset=True)
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidMessage(f"the model cannot be written as JSON ({type(exc).__name__}:"
                             f" {str(exc).splitlines()[0] if str(exc) else ''})") from None


def _as_json_object(raw: Any) -> tuple[dict[str, Any], bool]:
    """`raw` (a model, bytes, text or a dict) as a JSON object, and whether it was decoded."""
    decoded = False
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
    return raw, decoded


def checked(raw: Any, decoded: bool) -> tuple[dict[str, Any], Any]:
    """The first stage: `raw` as a JSON object that the medium's model accepts, and the
    validated model (which holds the normalised reference ids)."""
    raw, was_text = _as_json_object(raw)
    if isinstance(raw.get("sent_at"), datetime):  # the Python API may pass an aware datetime
        raw = {**raw, "sent_at": format_utc(raw["sent_at"])}
    if not (decoded or was_text):
        check_structure(raw)  # before anything recursive looks at it
    if "event" in raw:
        raise InvalidMessage("this is an event, not a message")
    if not schema_version_ok(raw):
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
            check_json_values(raw)  # names the field holding the lone surrogate
        raise InvalidMessage(models.reason(exc)) from None


# A message's fields in `Message`'s order, all but its last (the gzip object).
Draft = tuple[str, str, str, str, str | None, str, datetime | None, dict[str, Any], bytes, str,
              str, str | None, str]
PAYLOAD: Final = 8  # where a draft holds the payload bytes


def drafted(checked: tuple[dict[str, Any], Any]) -> Draft:
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
    # every identifier's hash, then the search-only forms (SPEC 9.2): the key's is the first
    hashes = search_hashes(document["recipient"])
    if not hashes:  # the Recipient model checked this already; the key needs one
        raise InvalidMessage(
            "recipient needs at least one of email, user_id, phone_number, device_token")
    return (
        document["project_id"], document["message_id"], document["medium"],
        document["message_type"], document.get("campaign_id"),
        # the first identifier present, as recipient_hash reads it (the key's hash)
        next(iter(hashes.values())),
        sent_at, document, payload, content_sha, identifier_hashes_json(hashes),
        None if sent_at is None else utc_text(sent_at_raw, sent_at),
        sha256_hex(payload),
    )


def finished(draft: Draft, gzipped: bytes) -> Message:
    """The last stage: the Message of a draft and its gzip object."""
    return Message(*draft, gzipped)  # object_bytes is Message's last field


def sealed_as(msg: Message, payload_sha: str, object_bytes: bytes) -> Message:
    """`msg` with the hash and the object of its sealed form (SPEC 9.5): `replace` of two
    fields, without its per-call field walk."""
    return Message(msg.project_id, msg.message_id, msg.medium, msg.message_type,
                   msg.campaign_id, msg.recipient_hash, msg.sent_at, msg.document,
                   msg.payload_bytes, msg.content_sha, msg.recipient_hashes, msg.sent_at_text,
                   payload_sha, object_bytes)


def parse_event(raw: Any) -> SendEvent:
    """Validate a `sent` / `send_failed` event; raises InvalidMessage and nothing else.

    A `sent` event's `provider` follows the message rule (an object whose `name` and
    `message_id` are strings when given); its `sent_at` may be an aware datetime.
    """
    return only_invalid(lambda: parse_raw_event(raw), "event")


def _event_ids(raw: dict[str, Any]) -> tuple[str, str]:
    """An event's (project_id, message_id), checked as a message's are."""
    try:
        if raw.get("message_id") is None:
            raise ValueError("message_id is required")
        message_id = check_message_id(raw.get("message_id"))
        if raw.get("project_id") is None:
            raise ValueError("project_id is required")
        return normalise_reference("project_id", raw.get("project_id")), message_id
    except ValueError as exc:
        raise InvalidMessage(str(exc)) from None


def parse_raw_event(raw: Any, *, decoded: bool = False) -> SendEvent:
    """parse_event's body, which may raise anything; `decoded` as for `parse_raw_message`."""
    if not isinstance(raw, dict):
        raise InvalidMessage("an event must be a JSON object")
    if isinstance(raw.get("sent_at"), datetime):
        raw = {**raw, "sent_at": format_utc(raw["sent_at"])}
    if not decoded:
        check_json_values(raw)
    kind = raw.get("event")
    if not isinstance(kind, str) or kind not in ("sent", "send_failed"):
        raise InvalidMessage("event must be sent or send_failed")
    if not schema_version_ok(raw):
        raise InvalidMessage(f"schema_version must be {SCHEMA_VERSION} when given")
    project_id, message_id = _event_ids(raw)
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
        item = decoded_line(text)
        if isinstance(item, DecodedLine):
            return parse_raw_message(item.value, decoded=True)
        return item

    try:  # never raise: one bad line must not stop the others
        return only_invalid(parse, "line")
    except InvalidMessage as exc:
        return exc


class DecodedLine:
    """A line's JSON value, when it is to be parsed as a message (`parse_lines`)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def decoded_line(text: str) -> SendEvent | DecodedLine:
    """parse_line's first stage: an event parsed, or a message's JSON value to parse."""
    if not text.strip():
        raise InvalidMessage("blank line (whitespace only)")
    raw = decode_json(text)
    if isinstance(raw, dict) and "event" in raw:
        return parse_raw_event(raw, decoded=True)
    if isinstance(raw, str):
        raise InvalidMessage("a message must be a JSON object, not a string holding JSON"
                             " (was it encoded twice?)")
    return DecodedLine(raw)


def only_invalid(parse: Callable[[], _Parsed], what: str) -> _Parsed:
    """Run `parse`; whatever goes wrong becomes one InvalidMessage with a printable reason.

    A guarantee of the API: callers only ever see InvalidMessage, for any input.
    """
    try:
        return parse()
    except Exception as exc:
        failure = as_invalid(exc, what)
        if failure is exc:
            raise
        raise failure from None


def as_invalid(exc: Exception, what: str) -> InvalidMessage:
    """The InvalidMessage `only_invalid` raises for `exc`: itself when its reason is printable
    already, else one with a printable reason (`what cannot be validated` for a non-reason)."""
    if isinstance(exc, InvalidMessage):
        reason = printable(str(exc))
        return exc if reason == str(exc) else InvalidMessage(reason)
    return InvalidMessage(f"{what} cannot be validated ({type(exc).__name__})")
