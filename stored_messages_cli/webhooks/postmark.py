"""Postmark's webhooks: HTTP basic auth with the credentials set on the webhook's URL.

The password is compared in constant time; the evidence keeps the user name and never the
password (`Authorization: Basic USER:<redacted>`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from typing import Any

from ..config.providers import PostmarkSettings
from .events import (
    Kind,
    ProviderEvent,
    Refused,
    Unreadable,
    Verified,
    event_id,
    from_epoch,
    from_iso,
    header,
    json_body,
)

KINDS = {"Delivery": Kind.DELIVERED, "Bounce": Kind.BOUNCED, "SpamComplaint": Kind.COMPLAINED,
         "Open": Kind.OPENED, "Click": Kind.CLICKED}
# Each record type's own time.
TIME_OF = {"Delivery": "DeliveredAt", "Bounce": "BouncedAt", "SpamComplaint": "BouncedAt",
           "Open": "ReceivedAt", "Click": "ReceivedAt", "SubscriptionChange": "ChangedAt"}


class PostmarkVerifier:
    """Checks Postmark's basic auth and reads the webhook's record."""

    name = "postmark"

    def __init__(self, settings: PostmarkSettings) -> None:
        self.settings = settings

    def verify(self, body: bytes, headers: Mapping[str, str], url: str, now: float
               ) -> Verified:
        """Check the credentials; Refused (401) or Unreadable (400) otherwise."""
        given = header(headers, "authorization")
        scheme, _, encoded = given.partition(" ")
        if scheme.lower() != "basic":
            raise Refused("the Authorization header is not basic auth")
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            raise Refused("the basic auth credentials are not base64") from None
        expected_user = self.settings.username.encode("utf-8")
        user_ok = hmac.compare_digest(user, expected_user)
        password_ok = hmac.compare_digest(password, self.settings.secret())
        if not (sep and user_ok and password_ok):
            raise Refused("the basic auth credentials are wrong")
        document = json_body(body)
        if not isinstance(document, dict):
            raise Unreadable("the body is not a Postmark webhook (a JSON object)")
        shown = f"Basic {user.decode('utf-8', 'replace')}:<redacted>"
        return Verified([_event(document, now)], {"authorization": shown},
                        {"verified": True, "method": "basic-auth"})


def _event(document: dict[str, Any], now: float) -> ProviderEvent:
    record = str(document.get("RecordType", ""))
    message_id = document.get("MessageID")
    at = from_iso(document.get(TIME_OF.get(record, "ReceivedAt")), from_epoch(now))
    native = f"{record}-{document['ID']}" if isinstance(document.get("ID"), int | str) else None
    return ProviderEvent(event_id(native, json.dumps(document, sort_keys=True)),
                         message_id if isinstance(message_id, str) and message_id else None,
                         KINDS.get(record, Kind.OTHER), at)
