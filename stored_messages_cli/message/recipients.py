"""Who a message went to: the recipient's identity, its hash (the key's), every identifier's hash.

SPEC 3: the key's recipient hash is the SHA-256 of the first present field of `email`,
`user_id`, `phone_number`, `device_token`, stripped (and lowercased for email and device
token), so a search by any of them finds the message without storing it in the clear.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable
from typing import Any, Final

from ..errors import InvalidMessage

# The recipient fields in the order the hash rule looks at them.
RECIPIENT_FIELDS: Final[tuple[str, ...]] = ("email", "user_id", "phone_number", "device_token")


def _identity_of(field: str, value: Any) -> str | None:
    """One recipient field's value normalised as the hash rule reads it; None if it is
    missing, true/false or blank."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    if not text:
        return None
    return text.lower() if field in ("email", "device_token") else text


def recipient_identity(recipient: dict[str, Any]) -> str | None:
    """The normalised string the recipient hash is taken of: the first present field."""
    for field in RECIPIENT_FIELDS:
        text = _identity_of(field, recipient.get(field))
        if text is not None:
            return text
    return None


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


# How an identity is hashed: `sha256_hex` (SPEC 3, the default), or a project's keyed
# HMAC-SHA256 (`recipient_hash = "hmac-sha256"`, SPEC 9.5: `envelope.keyed_digest`).
Digest = Callable[[bytes], str]


def recipient_hash(recipient: dict[str, Any], digest: Digest = sha256_hex) -> str:
    """Lowercase hex SHA-256 of the recipient's normalised identity (SPEC 3), or its
    project's keyed `digest`."""
    identity = recipient_identity(recipient)
    if identity is None:
        raise InvalidMessage(
            "recipient needs at least one of email, user_id, phone_number, device_token"
        )
    return digest(identity.encode("utf-8"))


def identifier_hashes(recipient: Any, digest: Digest = sha256_hex) -> dict[str, str]:
    """The hash of every recipient identifier present, by field name (`email`, `user_id`,
    `phone_number`, `device_token`), each normalised as the key's rule normalises that field
    (SPEC 3); blank and missing fields are left out, and so is anything not an object.
    `digest` is the project's hash (SHA-256 unless it uses a keyed one)."""
    hashes: dict[str, str] = {}
    if isinstance(recipient, dict):
        for name in RECIPIENT_FIELDS:
            identity = _identity_of(name, recipient.get(name))
            if identity is not None:
                hashes[name] = digest(identity.encode("utf-8"))
    return hashes


# The search-only forms (SPEC 9.2): never the key's hash, only more ways to find a message.
SEARCH_FORMS: Final[tuple[str, ...]] = ("email_nfc", "phone_number_e164")
_SORTED_RECIPIENT_FIELDS: Final = tuple(sorted(RECIPIENT_FIELDS + SEARCH_FORMS))


def e164(text: str, region: str | None = None) -> str | None:
    """`text` as an E.164 phone number (`+15550100000`), read with `region` when it has no
    +country; None when it does not parse as a possible number."""
    # here, not at the top: only a phone number loads phonenumbers (`sm status` never does)
    import phonenumbers

    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def search_hashes(recipient: Any, region: str | None = None, digest: Digest = sha256_hex
                  ) -> dict[str, str]:
    """`identifier_hashes` plus the search-only forms (SPEC 9.2) where they differ: the
    email NFC-normalised (`email_nfc`) and the phone number in E.164 (`phone_number_e164`,
    read with `region` when it has no +country; left out when it does not parse), each
    hashed with `digest`."""
    hashes = identifier_hashes(recipient, digest)
    if not hashes:
        return hashes
    email = _identity_of("email", recipient.get("email"))
    if email is not None and unicodedata.normalize("NFC", email) != email:
        hashes["email_nfc"] = digest(unicodedata.normalize("NFC", email).encode("utf-8"))
    phone = _identity_of("phone_number", recipient.get("phone_number"))
    if phone is not None:
        number = e164(phone, region)
        if number is not None and number != phone:
            hashes["phone_number_e164"] = digest(number.encode("utf-8"))
    return hashes


def identifier_hashes_json(hashes: dict[str, str]) -> str:
    """`identifier_hashes` as compact JSON with sorted keys (`messages.recipient_hashes`).

    Written by hand: the names and hex digits need no escaping, so this is exactly what
    `json.dumps(hashes, separators=(",", ":"), sort_keys=True)` gives, at a fraction of it.
    """
    return "{" + ",".join(f'"{name}":"{hashes[name]}"' for name in _SORTED_RECIPIENT_FIELDS
                          if name in hashes) + "}"


def recipient_hash_candidates(value: str, region: str | None = None,
                              digest: Digest = sha256_hex) -> list[str]:
    """Hashes a free-form recipient search term may have been stored under.

    The caller does not say whether `value` is an email, user id, phone number or device
    token, so every normalisation is tried: stripped, and stripped + lowercased; each of
    those NFC-normalised (an email's search form, SPEC 9.2); and, when it reads as a phone
    number (with `region` when it has no +country), its E.164 form.
    """
    stripped = value.strip()
    # Both forms even with an `@`: a user id or phone number like `Bob@Corp` keeps its case.
    forms = [stripped, stripped.lower()]
    forms += [unicodedata.normalize("NFC", form) for form in forms]
    if stripped and "@" not in stripped and any(c.isdigit() for c in stripped):
        number = e164(stripped, region)
        if number is not None:
            forms.append(number)
    return list(dict.fromkeys(digest(form.encode("utf-8")) for form in forms))
