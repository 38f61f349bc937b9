"""The values of the privacy settings (SPEC 9.5), checked without importing pydantic."""

from __future__ import annotations

from typing import Final

SHA256: Final = "sha256"
HMAC_SHA256: Final = "hmac-sha256"
NO_ENCRYPTION: Final = "none"
PER_RECIPIENT: Final = "per-recipient"
CHOICES: Final = {"recipient_hash": (SHA256, HMAC_SHA256),
                  "encryption": (NO_ENCRYPTION, PER_RECIPIENT)}


def privacy_choice(setting: str, value: str) -> str:
    """`value` when `setting` allows it; ValueError naming the choices otherwise."""
    allowed = CHOICES.get(setting, ())
    if value not in allowed:
        raise ValueError(f"use {' or '.join(repr(a) for a in allowed)}, not {value!r}")
    return value
