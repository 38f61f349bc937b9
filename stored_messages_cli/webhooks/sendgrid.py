"""SendGrid's signed event webhook: ECDSA P-256 with SHA-256 over timestamp + raw body.

SendGrid sends the signature (base64 DER) in `X-Twilio-Email-Event-Webhook-Signature` and
the time in `X-Twilio-Email-Event-Webhook-Timestamp`; the verification key is the one its
settings page shows (base64 DER), or the same key as PEM.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..config.providers import SendgridSettings
from ..errors import ConfigError
from .events import (
    Kind,
    ProviderEvent,
    Refused,
    Unreadable,
    Verified,
    check_fresh,
    event_id,
    from_epoch,
    header,
    json_body,
)

SIGNATURE = "x-twilio-email-event-webhook-signature"
TIMESTAMP = "x-twilio-email-event-webhook-timestamp"
KINDS = {"processed": Kind.ACCEPTED, "dropped": Kind.REJECTED, "delivered": Kind.DELIVERED,
         "bounce": Kind.BOUNCED, "spamreport": Kind.COMPLAINED, "open": Kind.OPENED,
         "click": Kind.CLICKED}


def public_key(text: bytes) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key from PEM or base64 DER text."""
    try:
        if b"-----BEGIN" in text:
            key = serialization.load_pem_public_key(text)
        else:
            key = serialization.load_der_public_key(base64.b64decode(text.strip(), validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ConfigError(f"the SendGrid public key is not a key: {exc}",
                          hint="paste the verification key SendGrid shows (base64) into"
                          " public_key_file") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("the SendGrid public key is not an ECDSA key")
    return key


class SendgridVerifier:
    """Verifies SendGrid event batches and reads their events."""

    name = "sendgrid"

    def __init__(self, settings: SendgridSettings) -> None:
        self.settings = settings

    def verify(self, body: bytes, headers: Mapping[str, str], url: str, now: float
               ) -> Verified:
        """Verify one signed event batch; Refused (401) or Unreadable (400) otherwise."""
        signature_text = header(headers, SIGNATURE)
        timestamp = header(headers, TIMESTAMP)
        try:
            signature = base64.b64decode(signature_text, validate=True)
        except (binascii.Error, ValueError):
            raise Refused("the SendGrid signature is not base64") from None
        key = public_key(self.settings.secret())
        try:
            key.verify(signature, timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise Refused("the SendGrid signature does not verify") from None
        check_fresh(timestamp, now, "the SendGrid timestamp")
        events = [_event(item) for item in _items(body)]
        return Verified(events, {SIGNATURE: signature_text, TIMESTAMP: timestamp},
                        {"verified": True, "method": "ecdsa-p256-sha256",
                         "signed_timestamp": timestamp})


def _items(body: bytes) -> list[dict[str, Any]]:
    """The batch: a JSON array of event objects."""
    items = json_body(body)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise Unreadable("the body is not a SendGrid event batch (a JSON array of objects)")
    return items


def _event(item: dict[str, Any]) -> ProviderEvent:
    """One SendGrid event; `sg_message_id` also under its first part (the send's
    `X-Message-Id`)."""
    message_id = item.get("sg_message_id")
    message_id = message_id if isinstance(message_id, str) and message_id else None
    aliases: tuple[str, ...] = ()
    if message_id:
        aliases = tuple(dict.fromkeys((message_id.split(".filter")[0],
                                       message_id.split(".")[0])))
    name = str(item.get("event", ""))
    return ProviderEvent(event_id(item.get("sg_event_id"), json.dumps(item, sort_keys=True)),
                         message_id, KINDS.get(name, Kind.OTHER),
                         from_epoch(item.get("timestamp", 0)), aliases)
