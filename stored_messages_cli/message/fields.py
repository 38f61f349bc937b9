"""The message's fields: the closed sets (mediums, types), the id rules, the schema version.

Pure rules with no dependency: the pydantic models (`models.py`), the validator, the key
layout and the CLI's option checks all read them from here.
"""

from __future__ import annotations

import re
from typing import Any, Final

from ..states import Medium, MessageType

SCHEMA_VERSION: Final = 1
MEDIUMS: Final[tuple[str, ...]] = tuple(Medium)
MESSAGE_TYPES: Final[tuple[str, ...]] = tuple(MessageType)
# Fields stored as strings whatever JSON type they arrived as.
REFERENCE_FIELDS: Final[tuple[str, ...]] = ("project_id", "campaign_id", "template_id",
                                            "journey_id")
# Fields a later `sent` event adds; excluded when deciding duplicate vs conflict.
CONFIRMATION_FIELDS: Final[tuple[str, ...]] = ("sent_at", "provider")

MESSAGE_ID_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")
REFERENCE_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


def check_message_id(value: Any) -> str:
    """Return `value` if it is a valid message id, else raise ValueError with the reason."""
    if not isinstance(value, str):
        raise ValueError("message_id must be a string")
    if not MESSAGE_ID_RE.fullmatch(value):
        raise ValueError("message_id must be 1-128 characters of A-Z a-z 0-9 . _ -")
    return value


def normalise_reference(name: str, value: Any) -> str:
    """Return a project/campaign/template/journey id as a string, or raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{name} must be an integer or a string")
    if isinstance(value, int) and value.bit_length() > 430:  # > 128 digits: never str() it
        raise ValueError(f"{name} must be 1-128 characters of A-Z a-z 0-9 _ -")
    text = str.__str__(value) if isinstance(value, str) else int.__repr__(value)
    if not REFERENCE_RE.fullmatch(text):
        raise ValueError(f"{name} must be 1-128 characters of A-Z a-z 0-9 _ -")
    return text


def schema_version_ok(raw: dict[str, Any]) -> bool:
    """`schema_version` is absent or exactly the integer 1 (not true, not 1.0, not "1")."""
    if "schema_version" not in raw:
        return True
    value = raw["schema_version"]
    return type(value) is int and value == SCHEMA_VERSION
