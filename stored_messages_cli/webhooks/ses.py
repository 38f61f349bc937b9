"""SES events through SNS: signature version 1 (SHA1withRSA) and 2 (SHA256withRSA).

The signing certificate is never fetched: it comes from the operator's trust store (a PEM
file or a folder of PEM files), and the message's `SigningCertURL` must match the trust
pattern all the same (a certificate of ours named by a URL that is not SNS's is refused).
A SubscriptionConfirmation is verified and recorded; its SubscribeURL is only visited when
the operator enabled `confirm_subscriptions` (the receiver does that, not this module).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..config.providers import SesSettings
from ..errors import ConfigError
from .events import (
    Kind,
    ProviderEvent,
    Refused,
    Unreadable,
    Verified,
    event_id,
    from_iso,
    json_body,
)

# The fields SNS signs, in order, per message type (AWS: "Verifying the signatures of
# Amazon SNS messages"); Subject only when present.
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SUBSCRIPTION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn",
                       "Type")
TYPES = {"Notification": NOTIFICATION_FIELDS, "SubscriptionConfirmation": SUBSCRIPTION_FIELDS,
         "UnsubscribeConfirmation": SUBSCRIPTION_FIELDS}
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
KINDS = {"send": Kind.ACCEPTED, "delivery": Kind.DELIVERED, "bounce": Kind.BOUNCED,
         "complaint": Kind.COMPLAINED, "reject": Kind.REJECTED,
         "rendering failure": Kind.REJECTED, "open": Kind.OPENED, "click": Kind.CLICKED}
# Where each SES event type keeps its own time (`mail.timestamp` is when it was sent).
TIME_OF = {"delivery": "timestamp", "bounce": "timestamp", "complaint": "timestamp",
           "open": "timestamp", "click": "timestamp", "deliverydelay": "timestamp"}
MAX_CERTS = 1000


def canonical_string(document: Mapping[str, Any]) -> bytes:
    """SNS's string to sign: each signed field's name and value, one per line."""
    fields = TYPES[str(document["Type"])]
    lines: list[str] = []
    for name in fields:
        if name == "Subject" and document.get(name) is None:
            continue
        value = document.get(name)
        if not isinstance(value, str):
            raise Refused(f"the SNS message has no {name}")
        lines += [name, value]
    return ("\n".join(lines) + "\n").encode("utf-8")


def load_trust_store(path: str) -> list[x509.Certificate]:
    """The PEM certificates of a file or of every file in a folder (the trust store)."""
    store = Path(path).expanduser()
    files = sorted(p for p in store.iterdir() if p.is_file()) if store.is_dir() else [store]
    certs: list[x509.Certificate] = []
    for file in files[:MAX_CERTS]:
        try:
            certs += x509.load_pem_x509_certificates(file.read_bytes())
        except (OSError, ValueError) as exc:
            if not store.is_dir():
                raise ConfigError(f"cannot read the SNS trust store {file}: {exc}",
                                  hint="trust_store names a PEM file or a folder of them"
                                  ) from None
    if not certs:
        raise ConfigError(f"no certificate in the SNS trust store {store}",
                          hint="put the SNS signing certificates (PEM) there")
    return certs


class SesVerifier:
    """Verifies SNS messages against the trust store, and reads SES events from them."""

    name = "ses"

    def __init__(self, settings: SesSettings) -> None:
        self.settings = settings
        self.cert_url = re.compile(settings.cert_url_pattern)

    def verify(self, body: bytes, headers: Mapping[str, str], url: str, now: float
               ) -> Verified:
        """Verify one SNS POST; Refused (401) or Unreadable (400) otherwise."""
        document = _document(body)
        kind = document.get("Type")
        if not isinstance(kind, str) or kind not in TYPES:
            raise Unreadable(f"not an SNS message type: {str(kind)[:40]!r}")
        version = str(document.get("SignatureVersion"))
        if version not in HASHES:
            raise Refused(f"SNS SignatureVersion {version[:10]!r} is not 1 or 2")
        cert_url = document.get("SigningCertURL")
        if not isinstance(cert_url, str) or not self.cert_url.match(cert_url):
            raise Refused("the SigningCertURL is outside the trusted pattern")
        try:
            signature = base64.b64decode(str(document.get("Signature", "")), validate=True)
        except (binascii.Error, ValueError):
            raise Refused("the SNS Signature is not base64") from None
        signed = canonical_string(document)
        cert = self._check(signature, signed, HASHES[version](), cert_url, now)
        topics = self.settings.topic_arns
        if topics and document.get("TopicArn") not in topics:
            raise Refused("the SNS topic is not one of topic_arns")
        used = {name: headers[name] for name in ("x-amz-sns-message-type",
                                                 "x-amz-sns-topic-arn") if name in headers}
        result = {"verified": True, "method": f"sns-signature-v{version}",
                  "signing_cert_url": cert_url,
                  "certificate_sha256": cert.fingerprint(hashes.SHA256()).hex(),
                  "sns_type": kind, "sns_message_id": document.get("MessageId"),
                  "topic_arn": document.get("TopicArn")}
        if kind != "Notification":
            notes = {"subscribe_url": document.get("SubscribeURL"), "sns_type": kind}
            return Verified([], used, result, notes)
        return Verified([_event(document)], used, result)

    def _check(self, signature: bytes, signed: bytes, algorithm: hashes.HashAlgorithm,
               cert_url: str, now: float) -> x509.Certificate:
        """The trusted certificate that signed `signed` (valid now); Refused otherwise."""
        certs = load_trust_store(self.settings.trust_store)
        named = Path(urlsplit(cert_url).path).name
        moment = datetime.fromtimestamp(now, UTC)
        for cert in _preferred(certs, named, self.settings.trust_store):
            key = cert.public_key()
            if not isinstance(key, rsa.RSAPublicKey):
                continue
            if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
                continue
            try:
                key.verify(signature, signed, padding.PKCS1v15(), algorithm)
            except InvalidSignature:
                continue
            return cert
        raise Refused("no certificate of the SNS trust store verifies the signature")


def _preferred(certs: list[x509.Certificate], named: str, store: str
               ) -> list[x509.Certificate]:
    """The certificate stored under the URL's file name when the store is a folder holding
    one; every certificate otherwise."""
    folder = Path(store).expanduser()
    if folder.is_dir() and (folder / named).is_file():
        try:
            return x509.load_pem_x509_certificates((folder / named).read_bytes())
        except ValueError:
            return []
    return certs


def _document(body: bytes) -> dict[str, Any]:
    """The SNS message: a JSON object."""
    document = json_body(body)
    if not isinstance(document, dict):
        raise Unreadable("the body is not an SNS message (a JSON object)")
    return document


def _event(document: Mapping[str, Any]) -> ProviderEvent:
    """The SES event an SNS Notification carries (event publishing or notifications)."""
    received = from_iso(document.get("Timestamp"), "1970-01-01T00:00:00Z")
    try:
        message = json_body(str(document["Message"]))
    except Unreadable:
        message = None
    if not isinstance(message, dict):
        return ProviderEvent(event_id(document.get("MessageId"), document["Message"]), None,
                             Kind.OTHER, received)
    kind_name = str(message.get("eventType") or message.get("notificationType") or "")
    mail_value = message.get("mail")
    mail: dict[str, Any] = mail_value if isinstance(mail_value, dict) else {}
    provider_id = mail.get("messageId") if isinstance(mail.get("messageId"), str) else None
    lowered = kind_name.lower()
    detail = message.get(_detail_field(kind_name))
    at = from_iso(mail.get("timestamp"), received)
    if lowered in TIME_OF and isinstance(detail, dict):
        at = from_iso(detail.get(TIME_OF[lowered]), at)
    return ProviderEvent(event_id(document.get("MessageId"), document["Message"]), provider_id,
                         KINDS.get(lowered, Kind.OTHER), at)


def _detail_field(kind_name: str) -> str:
    """The field holding an event type's details ("Delivery" -> "delivery",
    "DeliveryDelay" -> "deliveryDelay")."""
    return kind_name[:1].lower() + kind_name[1:].replace(" ", "")
