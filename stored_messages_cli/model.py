"""The message contract: validation, the payload bytes, the object key and the recipient hash.

This module is the one source of truth for the key layout
(`{prefix}{medium}/{project_id}/{recipient_hash}/{campaign_id}/{message_id}.json.gz`), the
recipient-hash rule and the canonical payload encoding; every other layer imports them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InvalidMessage

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
RFC3339_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"
)


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
    text = str(value)
    if not REFERENCE_RE.fullmatch(text):
        raise ValueError(f"{name} must be 1-128 characters of A-Z a-z 0-9 _ -")
    return text


def parse_sent_at(value: Any) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset into an aware UTC datetime."""
    if not isinstance(value, str) or not RFC3339_RE.fullmatch(value):
        raise ValueError("sent_at must be an RFC 3339 timestamp such as 2026-11-27T17:00:00Z")
    text = value.replace("t", "T").replace(" ", "T").replace("z", "Z")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"sent_at is not a valid date/time ({exc})") from None
    return parsed.astimezone(UTC)


def format_utc(moment: datetime) -> str:
    """Render an aware datetime as RFC 3339 UTC with a `Z` (the form stored in the index)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _Strict(BaseModel):
    # Schemas are built on first validation, so commands that never validate start faster.
    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True,
                              defer_build=True)


class Recipient(_Strict):
    email: str | None = None
    user_id: str | int | None = None
    phone_number: str | None = None
    device_token: str | None = None

    @model_validator(mode="after")
    def _one_present(self) -> Recipient:
        if recipient_identity(self.model_dump()) is None:
            raise ValueError(
                "recipient needs at least one of email, user_id, phone_number, device_token"
            )
        return self


class EmailContent(_Strict):
    from_: str = Field(alias="from")
    to: str
    subject: str
    html: str | None = None
    text: str | None = None
    reply_to: str | None = None
    preheader: str | None = None
    headers: dict[str, Any] | None = None
    amp_html: str | None = None

    @model_validator(mode="after")
    def _has_body(self) -> EmailContent:
        if self.html is None and self.text is None:
            raise ValueError("content needs at least one of html, text (email)")
        return self


class SmsContent(_Strict):
    from_: str = Field(alias="from")
    to: str
    body: str
    media_urls: list[str] | None = None


class PushContent(_Strict):
    platform: Literal["ios", "android", "web"]
    device_token: str
    title: str | None = None
    body: str | None = None
    payload: dict[str, Any] | None = None
    data: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _has_body(self) -> PushContent:
        if self.title is None and self.body is None and self.payload is None:
            raise ValueError("content needs at least one of title, body, payload (push)")
        return self


CONTENT_MODELS: dict[str, type[_Strict]] = {
    "email": EmailContent,
    "sms": SmsContent,
    "push": PushContent,
}


class Provider(_Strict):
    name: str | None = None
    message_id: str | None = None


class MessageFields(_Strict):
    """The top-level shape of a sent message (content is checked per medium afterwards)."""

    message_id: str
    project_id: str | int
    medium: Literal["email", "sms", "push"]
    message_type: Literal["blast", "triggered", "journey"]
    campaign_id: str | int | None = None
    template_id: str | int | None = None
    journey_id: str | int | None = None
    recipient: Recipient
    sent_at: Any = None  # parsed (once) by parse_message: RFC 3339 with an offset
    provider: Provider | None = None
    content: dict[str, Any]

    _check_id = field_validator("message_id", mode="before")(
        lambda cls, v: check_message_id(v)  # noqa: ARG005
    )

    @field_validator("project_id", "campaign_id", "template_id", "journey_id", mode="before")
    @classmethod
    def _check_reference(cls, value: Any, info: Any) -> Any:
        if value is None:
            if info.field_name == "project_id":
                raise ValueError("project_id is required")
            return value
        return normalise_reference(info.field_name, value)



class EmailMessage(MessageFields):
    """A whole email message."""

    content: EmailContent  # type: ignore[assignment]


class SmsMessage(MessageFields):
    """A whole SMS message."""

    content: SmsContent  # type: ignore[assignment]


class PushMessage(MessageFields):
    """A whole push message."""

    content: PushContent  # type: ignore[assignment]


MESSAGE_MODELS: dict[str, type[MessageFields]] = {
    "email": EmailMessage, "sms": SmsMessage, "push": PushMessage,
}


_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "an array",
    "bool_type": "true or false",
}
_UNION_TAGS = {"str": "a string", "int": "an integer", "dict[str,any]": "an object",
               "list[str]": "an array"}


def _reason(exc: ValidationError, prefix: str = "") -> str:
    """Turn a pydantic error into one short line naming the field: `content.subject is required`.

    Types are named in JSON's words (object, array, string, integer), not Python's.
    """
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = [str(p) for p in first["loc"]]
    expected: list[str] = []
    # A union (e.g. `str | int`) reports one error per member, tagged with the member's name.
    while loc and loc[-1].lower().replace(" ", "") in _UNION_TAGS:
        expected = [_UNION_TAGS[str(e["loc"][-1]).lower().replace(" ", "")] for e in errors
                    if len(e["loc"]) == len(loc) and str(e["loc"][-1]).lower().replace(" ", "")
                    in _UNION_TAGS]
        loc = loc[:-1]
    path = ".".join(([prefix] if prefix else []) + ["from" if p == "from_" else p for p in loc])
    kind = first["type"]
    if expected:
        msg = "must be " + " or ".join(dict.fromkeys(expected))
    elif kind == "missing":
        msg = "is required"
    elif kind in _TYPE_WORDS:
        msg = f"must be {_TYPE_WORDS[kind]}"
    elif kind == "literal_error":
        msg = "must be " + str(first["msg"]).removeprefix("Input should be ")
    else:
        msg = str(first["msg"]).removeprefix("Value error, ")
    if not path:
        return msg
    if msg.startswith(path.rsplit(".", 1)[-1] + " "):
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        return f"{parent}.{msg}" if parent else msg  # the message already names the field
    if msg.startswith(("is ", "must ")):
        return f"{path} {msg}"
    return f"{path}: {msg}"


def _check_json_values(value: Any, path: str = "") -> None:
    """Reject what JSON or UTF-8 cannot carry, naming the field: NaN/Infinity, lone surrogates."""
    if isinstance(value, str):
        if _SURROGATE_RE.search(value):
            raise InvalidMessage(f"{path or 'message'} contains a lone surrogate"
                                 " (not valid Unicode)")
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidMessage(f"{path or 'message'} must be a finite number"
                                 " (NaN and Infinity are not JSON)")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidMessage(f"{path or 'message'} has a key that is not a string")
            if _SURROGATE_RE.search(key):
                raise InvalidMessage(f"{path or 'message'} has a key with a lone surrogate"
                                     " (not valid Unicode)")
            _check_json_values(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json_values(item, f"{path}[{index}]")


# --------------------------------------------------------------------------- identity and key


def recipient_identity(recipient: dict[str, Any]) -> str | None:
    """The normalised string the recipient hash is taken of: the first present field."""
    for field in RECIPIENT_FIELDS:
        value = recipient.get(field)
        if value is None or isinstance(value, bool):
            continue
        text = str(value).strip()
        if not text:
            continue
        if field in ("email", "device_token"):
            text = text.lower()
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


def recipient_hash_candidates(value: str) -> list[str]:
    """Hashes a free-form recipient search term may have been stored under.

    The caller does not say whether `value` is an email, user id, phone number or device
    token, so both normalisations are tried: stripped, and stripped + lowercased.
    """
    stripped = value.strip()
    forms = [stripped.lower()] if "@" in stripped else [stripped, stripped.lower()]
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


def parse_key(key: str, prefix: str = "") -> dict[str, str] | None:
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


if json.encoder.c_make_encoder is not None:
    # The C encoder json.dumps uses, built once with json.dumps's exact arguments for
    # sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False (json.dumps
    # builds one per call, which costs more than encoding a small object).
    _c_encoder = json.encoder.c_make_encoder(
        None, _not_json, _encode_string, None, ":", ",", True, False, False)

    def _encode_object(value: Any) -> str:
        return "".join(_c_encoder(value, 0))
else:  # no C accelerator (e.g. PyPy): the same bytes, more slowly
    _encode_object = json.JSONEncoder(sort_keys=True, separators=(",", ":"),
                                      ensure_ascii=False, allow_nan=False).encode


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


def encode_document(document: dict[str, Any]) -> tuple[bytes, str]:
    """The archived payload bytes of `document` and its content hash, in one encoding pass.

    The payload is exactly `canonical_json({**document, "schema_version": 1})`; the content
    hash is the SHA-256 of `canonical_json(document without sent_at and provider)`. Each
    top-level member is encoded once and the two documents are spliced from the same parts
    (sorted keys, compact separators), so both are byte-identical to encoding them whole.
    """
    try:
        parts = {key: f"{_encode_string(key)}:{_encode(value)}"
                 for key, value in document.items()}
        parts["schema_version"] = f'"schema_version":{SCHEMA_VERSION}'
        keys = sorted(parts)
        payload = ("{" + ",".join(parts[k] for k in keys) + "}").encode("utf-8")
        core = ("{" + ",".join(parts[k] for k in keys if k != "schema_version"
                               and k not in CONFIRMATION_FIELDS) + "}").encode("utf-8")
    except (UnicodeEncodeError, ValueError, TypeError, RecursionError):
        _check_json_values(document)
        raise InvalidMessage("message contains a value JSON cannot carry") from None
    return payload, sha256_hex(core)


def payload_bytes(document: dict[str, Any]) -> bytes:
    """The archived payload: the document plus `schema_version`, canonically encoded."""
    return encode_document(document)[0]


def content_sha256(document: dict[str, Any]) -> str:
    """Hash of a document without its confirmation fields (`sent_at`, `provider`)."""
    return encode_document(document)[1]


def parse_message(raw: Any) -> Message:
    """Validate one sent message (a dict, a pydantic model, or a JSON string).

    Raises InvalidMessage whose text is a one-line reason naming the field.
    """
    if isinstance(raw, BaseModel):
        raw = raw.model_dump(mode="json", by_alias=True, exclude_unset=True)
    elif isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise InvalidMessage(f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise InvalidMessage("a message must be a JSON object")
    if "event" in raw:
        raise InvalidMessage("this is an event, not a message")
    if raw.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise InvalidMessage(f"schema_version must be {SCHEMA_VERSION} when given")
    medium = raw.get("medium")
    model = MESSAGE_MODELS.get(medium, MessageFields) if isinstance(medium, str) else (
        MessageFields)
    try:
        model.model_validate(raw)  # one pass checks the top level and the medium's content
    except ValidationError as exc:
        if any(e["type"] == "string_unicode" for e in exc.errors()):
            _check_json_values(raw)  # names the field holding the lone surrogate
        raise InvalidMessage(_reason(exc)) from None

    document = {k: v for k, v in raw.items() if k != "schema_version"}
    for name in REFERENCE_FIELDS:
        if document.get(name) is not None:
            document[name] = str(document[name])
    try:  # checked here, not by a validator, so it is parsed once
        sent_at = parse_sent_at(raw["sent_at"]) if raw.get("sent_at") is not None else None
    except ValueError as exc:
        raise InvalidMessage(str(exc)) from None
    # Encoding here rejects lone surrogates and NaN at ingest, never at upload.
    payload, content_sha = encode_document(document)
    return Message(
        project_id=document["project_id"],
        message_id=document["message_id"],
        medium=document["medium"],
        message_type=document["message_type"],
        campaign_id=document.get("campaign_id"),
        recipient_hash=recipient_hash(document["recipient"]),
        sent_at=sent_at,
        document=document,
        payload_bytes=payload,
        content_sha=content_sha,
    )


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


def parse_event(raw: dict[str, Any]) -> SendEvent:
    """Validate a `sent` / `send_failed` event line; raises InvalidMessage."""
    kind = raw.get("event")
    if kind not in ("sent", "send_failed"):
        raise InvalidMessage("event must be sent or send_failed")
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
    try:
        sent_at = parse_sent_at(raw.get("sent_at"))
    except ValueError as exc:
        raise InvalidMessage(str(exc)) from None
    provider = raw.get("provider")
    if provider is not None and not isinstance(provider, dict):
        raise InvalidMessage("provider must be an object")
    return SendEvent("sent", project_id, message_id, sent_at=sent_at,
                     sent_at_text=raw["sent_at"], provider=provider)
