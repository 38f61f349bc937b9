"""Signed provider webhooks made with locally generated keys, by each provider's documented
algorithm (tests of `stored_messages_cli.webhooks`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

CERT_URL = ("https://sns.us-east-1.amazonaws.com/"
            "SimpleNotificationService-0123456789abcdef0123456789abcdef.pem")
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"


class SnsSigner:
    """A self-signed RSA certificate standing in for SNS's signing certificate."""

    def __init__(self, folder: Path, *, not_before: datetime | None = None,
                 days: int = 3650) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        start = not_before or datetime(2020, 1, 1, tzinfo=UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(start).not_valid_after(start + timedelta(days=days))
                     .sign(self.key, hashes.SHA256()))
        folder.mkdir(parents=True, exist_ok=True)
        self.pem_path = folder / CERT_URL.rsplit("/", 1)[1]
        self.pem_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def sign(self, document: dict[str, Any], version: str = "2") -> dict[str, Any]:
        """`document` with SignatureVersion, SigningCertURL and Signature set."""
        from stored_messages_cli.webhooks.ses import canonical_string

        document = {**document, "SignatureVersion": version}
        document.setdefault("SigningCertURL", CERT_URL)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(canonical_string(document), padding.PKCS1v15(), algorithm)
        document["Signature"] = base64.b64encode(signature).decode()
        return document


def ses_event(event_type: str, ses_message_id: str, *, sns_id: str = "sns-1",
              when: str = "2026-11-27T17:00:00.000Z") -> dict[str, Any]:
    """An unsigned SNS Notification carrying an SES event of `event_type`."""
    detail_name = event_type[:1].lower() + event_type[1:]
    message = {"eventType": event_type,
               "mail": {"timestamp": when, "messageId": ses_message_id,
                        "source": "news@shop.example", "destination": ["ann@example.com"]},
               detail_name: {"timestamp": when}}
    return {"Type": "Notification", "MessageId": sns_id, "TopicArn": TOPIC,
            "Message": json.dumps(message), "Timestamp": when}


def subscription(sns_id: str = "sns-sub") -> dict[str, Any]:
    """An unsigned SNS SubscriptionConfirmation."""
    return {"Type": "SubscriptionConfirmation", "MessageId": sns_id, "TopicArn": TOPIC,
            "Token": "2336412f37fb687f5d51e6e2425f004a",
            "Message": "You have chosen to subscribe to the topic.",
            "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
                            "&TopicArn=" + TOPIC + "&Token=2336412f37fb687f5d51e6e2425f004a",
            "Timestamp": "2026-11-27T17:00:00.000Z"}


class SendgridSigner:
    """A local ECDSA P-256 key standing in for SendGrid's."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    def public_b64(self) -> bytes:
        """The verification key as SendGrid shows it: base64 DER."""
        return base64.b64encode(self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))

    def headers(self, body: bytes, timestamp: str) -> dict[str, str]:
        """The signature headers of `body` sent at `timestamp`."""
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
                "x-twilio-email-event-webhook-timestamp": timestamp}


def twilio_signature(token: bytes, url: str, form: dict[str, str]) -> str:
    """Twilio's documented algorithm: base64 HMAC-SHA1 of the URL and the sorted fields."""
    signed = url + "".join(name + form[name] for name in sorted(form))
    return base64.b64encode(hmac.new(token, signed.encode(), hashlib.sha1).digest()).decode()


def twilio_form(form: dict[str, str]) -> bytes:
    """A form body as Twilio posts it."""
    return urlencode(form).encode()


def mailgun_body(key: bytes, event: dict[str, Any], *, timestamp: int, token: str) -> bytes:
    """A Mailgun webhook body signed with `key`."""
    signature = hmac.new(key, f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": str(timestamp), "token": token,
                                     "signature": signature},
                       "event-data": event}).encode()


def basic_auth(user: str, password: str) -> str:
    """An Authorization header for basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
