"""The pydantic models of a sent message, and their errors as one short line.

`validate.py` imports this on the first validation, so that the rest of `message/` (the key
layout, the payload encoding, the hashes) is importable without pydantic: `sm status` and
the archiver's start never build these classes. It reads the field rules from `fields.py`
and `recipients.py`, never from the package, so nothing here imports itself back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..states import Medium
from .fields import check_message_id, normalise_reference
from .recipients import recipient_identity

__all__ = ["BaseModel", "ValidationError", "CONTENT_MODELS", "MESSAGE_MODELS", "EmailMessage",
           "SmsMessage", "PushMessage", "MessageFields", "Provider", "Recipient", "EmailContent",
           "SmsContent", "PushContent", "reason"]


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
        if recipient_identity({"email": self.email, "user_id": self.user_id,  # no model_dump
                               "phone_number": self.phone_number,
                               "device_token": self.device_token}) is None:
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
    Medium.EMAIL: EmailContent,
    Medium.SMS: SmsContent,
    Medium.PUSH: PushContent,
}


class Provider(_Strict):
    name: str | None = None
    message_id: str | None = None


class MessageFields(_Strict):
    """The top-level shape of a sent message (content is checked per medium afterwards)."""

    message_id: str
    project_id: str | int
    # Spelled as literals so pydantic's error names the allowed words; a test checks they are
    # exactly `states.Medium` and `states.MessageType`.
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
    Medium.EMAIL: EmailMessage, Medium.SMS: SmsMessage, Medium.PUSH: PushMessage,
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


def reason(exc: ValidationError, prefix: str = "") -> str:
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
