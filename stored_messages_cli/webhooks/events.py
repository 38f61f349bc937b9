"""What every provider module hands the receiver: verified, normalised delivery events.

A provider module verifies a request with the provider's documented algorithm, then turns
its body into `ProviderEvent`s. `Refused` means the request is not the provider's (answered
401, nothing stored); `Unreadable` means it cannot be parsed (400).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ..errors import InvalidMessage, SmError
from ..message import decode_json

SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MAX_AGE = 15 * 60.0  # seconds a signed timestamp may be old (or ahead of our clock)


class Kind(StrEnum):
    """What a provider event says happened to a message."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    OPENED = "opened"
    CLICKED = "clicked"
    OTHER = "other"


# Events that say the provider sent the message: each confirms one awaiting confirmation.
SENT_KINDS = frozenset({Kind.ACCEPTED, Kind.DELIVERED, Kind.BOUNCED, Kind.COMPLAINED,
                        Kind.OPENED, Kind.CLICKED})


class Refused(SmError):
    """The request did not verify: it is not (or no longer) the provider's."""


class Unreadable(SmError):
    """The request cannot be parsed as the provider's webhook."""


def json_body(body: bytes | str) -> Any:
    """A request body's JSON, read by the project's one strict decoder (`decode_json`:
    duplicate keys, NaN, lone surrogates and deep nesting refused, so no two parsers can
    read one signed body two ways); Unreadable when it is not JSON or not UTF-8."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        return decode_json(text)
    except UnicodeDecodeError:
        raise Unreadable("the body is not JSON (not UTF-8)") from None
    except InvalidMessage as exc:
        raise Unreadable(f"the body is not JSON: {exc}") from None


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One delivery event: its id (safe as a key part), the provider's message id, what
    happened and when (RFC 3339, UTC)."""

    event_id: str
    provider_message_id: str | None
    kind: Kind
    at: str
    # Other spellings of the message id the sender may have recorded (SendGrid's
    # `sg_message_id` carries the send's `X-Message-Id` as its first part).
    also_known_as: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The event as the receiver answers it."""
        return {"event_id": self.event_id, "provider_message_id": self.provider_message_id,
                "kind": self.kind.value, "at": self.at}

    def message_ids(self) -> list[str]:
        """Every spelling of the provider message id to look up, the recorded one first."""
        ids = [self.provider_message_id] if self.provider_message_id else []
        return ids + [other for other in self.also_known_as if other and other not in ids]


@dataclass(slots=True)
class Verified:
    """A request that verified: its events, the headers verification used and the result."""

    events: list[ProviderEvent]
    headers_used: dict[str, str]
    result: dict[str, Any]
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. an SNS SubscribeURL


def event_id(native: Any, *parts: Any) -> str:
    """The provider's own event id when it is safe as a key part, else a SHA-256 of it (or,
    without one, of `parts`: the same request again gives the same id)."""
    if isinstance(native, str) and SAFE_ID.match(native):
        return native
    text = native if isinstance(native, str) and native else "\x00".join(map(str, parts))
    return "sha256-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def utc_text(moment: datetime) -> str:
    """A moment as RFC 3339 UTC with seconds (`2026-11-27T17:00:00Z`) or milliseconds."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def from_epoch(value: Any) -> str:
    """Epoch seconds (int, float or their text) as RFC 3339 UTC."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise Unreadable(f"not a timestamp: {str(value)[:40]!r}") from None
    if not 0 <= seconds < 253402300800:
        raise Unreadable(f"timestamp out of range: {seconds:g}")
    return utc_text(datetime.fromtimestamp(seconds, UTC))


def from_iso(value: Any, fallback: str) -> str:
    """An ISO 8601 / RFC 3339 time as RFC 3339 UTC; `fallback` when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return fallback
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return fallback
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return utc_text(moment)


def check_fresh(timestamp: Any, now: float, what: str) -> float:
    """A signed timestamp within `MAX_AGE` of `now`; Refused otherwise (a replay)."""
    try:
        seconds = float(timestamp)
    except (TypeError, ValueError):
        raise Refused(f"{what} is not a timestamp") from None
    if not seconds == seconds or abs(now - seconds) > MAX_AGE:  # NaN, or stale, or ahead
        raise Refused(f"{what} is more than 15 minutes from now (a replayed or stale request)")
    return seconds


def header(headers: Any, name: str) -> str:
    """A header the provider must send (names lower-cased); Refused when it is missing."""
    value = headers.get(name)
    if not value:
        raise Refused(f"the {name} header is missing")
    return str(value)
