"""Mailgun's webhook signature: HMAC-SHA256(signing key, timestamp + token), hex.

A timestamp more than 15 minutes from now is refused; a token is accepted once (the
receiver keeps the tokens it saw in the spool, `replay_token`), so a captured request
cannot be sent again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from ..config.providers import MailgunSettings
from .events import (
    Kind,
    ProviderEvent,
    Refused,
    Unreadable,
    Verified,
    check_fresh,
    event_id,
    from_epoch,
    json_body,
)

KINDS = {"accepted": Kind.ACCEPTED, "rejected": Kind.REJECTED, "delivered": Kind.DELIVERED,
         "complained": Kind.COMPLAINED, "opened": Kind.OPENED, "clicked": Kind.CLICKED}


def signature(signing_key: bytes, timestamp: str, token: str) -> str:
    """Mailgun's signature of a webhook: hex HMAC-SHA256 of timestamp then token."""
    return hmac.new(signing_key, (timestamp + token).encode("utf-8"), hashlib.sha256).hexdigest()


class MailgunVerifier:
    """Verifies Mailgun webhooks and reads their event."""

    name = "mailgun"

    def __init__(self, settings: MailgunSettings) -> None:
        self.settings = settings

    def verify(self, body: bytes, headers: Mapping[str, str], url: str, now: float
               ) -> Verified:
        """Verify one webhook; Refused (401) or Unreadable (400) otherwise. The caller
        refuses a token it has seen (`Verified.notes["replay_token"]`)."""
        document = _document(body)
        signed = document.get("signature")
        if not isinstance(signed, dict):
            raise Refused("the webhook has no signature")
        timestamp, token, given = (signed.get(name) for name in ("timestamp", "token",
                                                                 "signature"))
        if not all(isinstance(v, str) and v for v in (timestamp, token, given)):
            raise Refused("the signature lacks its timestamp, token or signature")
        assert isinstance(timestamp, str) and isinstance(token, str) and isinstance(given, str)
        expected = signature(self.settings.secret(), timestamp, token)
        if not hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8", "replace")):
            raise Refused("the Mailgun signature does not verify")
        check_fresh(timestamp, now, "the Mailgun timestamp")
        data = document.get("event-data")
        if not isinstance(data, dict):
            raise Unreadable("the webhook has no event-data")
        return Verified([_event(data)], {},
                        {"verified": True, "method": "hmac-sha256", "signed_timestamp":
                         timestamp, "token": token},
                        {"replay_token": token})


def _document(body: bytes) -> dict[str, Any]:
    document = json_body(body)
    if not isinstance(document, dict):
        raise Unreadable("the body is not a Mailgun webhook (a JSON object)")
    return document


def _event(data: dict[str, Any]) -> ProviderEvent:
    """The event: a permanent failure is a bounce, a temporary one only a note."""
    name = str(data.get("event", ""))
    kind = KINDS.get(name, Kind.OTHER)
    if name == "failed":
        kind = Kind.BOUNCED if data.get("severity") == "permanent" else Kind.OTHER
    message_id = _table(_table(data, "message"), "headers").get("message-id")
    message_id = message_id.strip().strip("<>") if isinstance(message_id, str) else None
    return ProviderEvent(event_id(data.get("id"), json.dumps(data, sort_keys=True)),
                         message_id or None, kind, from_epoch(data.get("timestamp", 0)))


def _table(document: dict[str, Any], name: str) -> dict[str, Any]:
    """`document[name]` when it is a JSON object, else an empty one."""
    value = document.get(name)
    return value if isinstance(value, dict) else {}
