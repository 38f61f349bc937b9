"""Twilio's `X-Twilio-Signature`: HMAC-SHA1 of the public URL and the sorted form fields.

The URL is the one Twilio calls, as configured (`public_url`): behind a proxy the request's
own URL is not what Twilio signed. A JSON body is signed through the URL's `bodySHA256`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qs, parse_qsl, urlsplit

from ..config.providers import TwilioSettings
from .events import (
    Kind,
    ProviderEvent,
    Refused,
    Unreadable,
    Verified,
    event_id,
    from_epoch,
    header,
    json_body,
)

SIGNATURE = "x-twilio-signature"
KINDS = {"accepted": Kind.ACCEPTED, "queued": Kind.ACCEPTED, "sending": Kind.ACCEPTED,
         "sent": Kind.ACCEPTED, "delivered": Kind.DELIVERED, "undelivered": Kind.BOUNCED,
         "failed": Kind.REJECTED, "read": Kind.OPENED}


def signature(auth_token: bytes, url: str, fields: list[tuple[str, str]]) -> str:
    """Twilio's signature of a request: base64 HMAC-SHA1 of the URL followed by each field
    name and value, sorted by name (then value)."""
    signed = url + "".join(name + value for name, value in sorted(fields))
    return base64.b64encode(hmac.new(auth_token, signed.encode("utf-8"), hashlib.sha1)
                            .digest()).decode("ascii")


class TwilioVerifier:
    """Verifies Twilio status callbacks and reads their message status."""

    name = "twilio"

    def __init__(self, settings: TwilioSettings) -> None:
        self.settings = settings

    def verify(self, body: bytes, headers: Mapping[str, str], url: str, now: float
               ) -> Verified:
        """Verify one status callback; Refused (401) or Unreadable (400) otherwise."""
        given = header(headers, SIGNATURE)
        public_url = self.settings.public_url
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Unreadable("the body is not UTF-8") from None
        body_hash = parse_qs(urlsplit(url).query).get("bodySHA256")
        if body_hash:  # a JSON body: Twilio adds its SHA-256 to the URL, and signs the URL
            fields: list[tuple[str, str]] = []
            if not hmac.compare_digest(hashlib.sha256(body).hexdigest(), body_hash[0]):
                raise Refused("the body's SHA-256 is not the URL's bodySHA256")
            public_url += ("&" if "?" in public_url else "?") + f"bodySHA256={body_hash[0]}"
        else:
            fields = parse_qsl(text, keep_blank_values=True)
        expected = signature(self.settings.secret(), public_url, fields)
        if not hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8", "replace")):
            raise Refused("the X-Twilio-Signature does not verify")
        form = _json_fields(text) if body_hash else dict(fields)
        sid = form.get("MessageSid") or form.get("SmsSid")
        status = form.get("MessageStatus") or form.get("SmsStatus") or ""
        if not sid:
            raise Unreadable("the callback names no MessageSid")
        at = from_epoch(now)  # a status callback carries no time: when it arrived
        kind = KINDS.get(status, Kind.OTHER)
        event = ProviderEvent(event_id(f"{sid}-{status}" if status else None, sid, text),
                              sid, kind, at)
        return Verified([event], {SIGNATURE: given},
                        {"verified": True, "method": "hmac-sha1", "public_url": public_url})


def _json_fields(text: str) -> dict[str, str]:
    """A JSON callback's top-level text fields (to read its sid and status)."""
    document = json_body(text)
    if not isinstance(document, dict):
        raise Unreadable("the body is not a JSON object")
    return {k: v for k, v in document.items() if isinstance(v, str)}
