"""The object key layout (SPEC 3), defined once as data.

    {prefix}{medium}/{project_id}/{recipient_hash}/{campaign_id}/{message_id}.json.gz

`KEY_FIELDS`, `KEY_SEPARATOR`, `KEY_SUFFIX` and `WHEN_ABSENT` are the layout; `key_pieces`
lays them out in order for whoever builds a key in another language (the spool's SQL views),
and `object_key`, `recipient_prefix` and `parse_key` are built from the same data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, TypeVar, cast

from .fields import MEDIUMS

# The message fields a key is made of, in order.
KEY_FIELDS: Final[tuple[str, ...]] = ("medium", "project_id", "recipient_hash", "campaign_id",
                                      "message_id")
KEY_SEPARATOR: Final = "/"
KEY_SUFFIX: Final = ".json.gz"
# The campaign part of a message sent outside any campaign (`campaign_id` absent or null).
UNASSOCIATED: Final = "unassociated"
# What stands in for a field that may be absent; every other key field is always present.
WHEN_ABSENT: Final[Mapping[str, str]] = MappingProxyType({"campaign_id": UNASSOCIATED})

_Piece = TypeVar("_Piece")


def key_pieces(field: Callable[[str, str | None], _Piece],
               text: Callable[[str], _Piece]) -> list[_Piece]:
    """The layout in order, without the destination prefix: `field(name, when_absent)` for
    each key field (`when_absent` is the text standing in for a null value, None when the
    field is always present) and `text(literal)` for each separator and the suffix.

    The spool builds its SQL views' key column from this, for example in SQLite::

        'l."key_prefix" || ' + " || ".join(key_pieces(
            lambda name, absent: f'e."{name}"' if absent is None
            else f"COALESCE(e.\\"{name}\\", '{absent}')",
            lambda literal: f"'{literal}'"))
    """
    pieces: list[_Piece] = []
    for index, name in enumerate(KEY_FIELDS):
        if index:
            pieces.append(text(KEY_SEPARATOR))
        pieces.append(field(name, WHEN_ABSENT.get(name)))
    pieces.append(text(KEY_SUFFIX))
    return pieces


# Where each stand-in goes among the key's fields (`object_key` fills them in by position).
_STAND_INS: Final = tuple((KEY_FIELDS.index(name), text) for name, text in WHEN_ABSENT.items())


def object_key(
    medium: str, project_id: str, recipient_hash_hex: str, campaign_id: str | None,
    message_id: str, prefix: str = "",
) -> str:
    """The object key of a message (SPEC 3); `prefix` is the destination's path."""
    fields: list[str | None] = [medium, project_id, recipient_hash_hex, campaign_id,
                                message_id]  # in KEY_FIELDS' order
    for at, stand_in in _STAND_INS:
        if fields[at] is None:
            fields[at] = stand_in
    # what `key_pieces` lays out: the fields between separators, then the suffix (every None
    # has its stand-in by now)
    return prefix + KEY_SEPARATOR.join(cast("list[str]", fields)) + KEY_SUFFIX


def recipient_prefix(
    medium: str, project_id: str, recipient_hash_hex: str, prefix: str = "",
) -> str:
    """The key prefix under which every message to one recipient of a project lies."""
    # the fields up to the recipient hash, as `object_key` lays them out
    return prefix + KEY_SEPARATOR.join((medium, project_id, recipient_hash_hex)) + KEY_SEPARATOR


def parse_key(key: str, prefix: str = "") -> dict[str, Any] | None:
    """Split an object key back into its parts, or None if it is not an `sm` message key.

    The parts are named as in `KEY_FIELDS`; a stand-in (`unassociated`) reads back as None.
    """
    if not key.startswith(prefix) or not key.endswith(KEY_SUFFIX):
        return None
    parts = key[len(prefix) : -len(KEY_SUFFIX)].split(KEY_SEPARATOR)
    if len(parts) != len(KEY_FIELDS):
        return None
    fields: dict[str, Any] = dict(zip(KEY_FIELDS, parts, strict=True))
    if fields["medium"] not in MEDIUMS:
        return None
    for name, stand_in in WHEN_ABSENT.items():
        if fields[name] == stand_in:
            fields[name] = None
    return fields
