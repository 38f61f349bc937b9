"""`sent_at`: RFC 3339 text or an aware datetime in, an aware UTC datetime and its `Z` form out.

SPEC 8: a time without an offset would mean a different instant on each host, so a naive
datetime is refused, never read as local time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

from ..errors import InvalidMessage

RFC3339_RE: Final = re.compile(  # ASCII digits only: `\d` would also match Arabic-Indic digits
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def parse_sent_at(value: Any) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset into an aware UTC datetime.

    Also takes an aware `datetime`. Raises InvalidMessage (a ValueError) for anything else: a
    naive datetime (SPEC 8: it has no offset, so it would mean a different instant on each
    host), a time that leaves the representable range once normalised to UTC
    (`0001-01-01T00:00:00+01:00`), or any other type.
    """
    if isinstance(value, datetime):
        return aware_utc(value)
    if not isinstance(value, str) or not RFC3339_RE.fullmatch(value):
        raise InvalidMessage("sent_at must be an RFC 3339 timestamp such as 2026-11-27T17:00:00Z")
    text = value.replace("t", "T").replace(" ", "T").replace("z", "Z")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidMessage(f"sent_at is not a valid date/time ({exc})") from None
    return aware_utc(parsed)


def aware_utc(moment: datetime, name: str = "sent_at") -> datetime:
    """`moment` in UTC; InvalidMessage if it is naive or falls outside years 1-9999 in UTC."""
    try:
        offset = moment.utcoffset()
    except Exception as exc:  # a broken tzinfo
        raise InvalidMessage(f"{name} has an unusable time zone ({type(exc).__name__})") from None
    if offset is None:
        raise InvalidMessage(f"{name} must be a timezone-aware datetime (a naive datetime has no"
                             " UTC offset, so it would be read as this host's local time)")
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidMessage(f"{name} is out of range: it falls outside years 1-9999 in"
                             " UTC") from None


def format_utc(moment: datetime, name: str = "sent_at") -> str:
    """Render an aware datetime as RFC 3339 UTC with a `Z` (the form stored in the index).

    Raises InvalidMessage naming `name` for a naive datetime or one outside UTC's range.
    """
    return aware_utc(moment, name).isoformat().replace("+00:00", "Z")


def utc_text(given: Any, moment: datetime) -> str:
    """`format_utc(moment)`, where `given` is the text `moment` was parsed from: text already
    in that form (`2026-11-27T17:00:00Z`: UTC, whole seconds) is returned as it is."""
    if type(given) is str and len(given) == 20 and given[10] == "T" and given[19] == "Z":
        return given
    return format_utc(moment)
