"""How config.toml and the command line spell a length of time: `90`, `30s`, `15m`, `8h`, `7d`."""

from __future__ import annotations

import re
from typing import Any

_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as `90`, `15m`, `8h`, `7d`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION_RE.fullmatch(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration (examples: 30s, 15m, 8h, 7d)")
    return float(match.group(1)) * _UNITS[match.group(2)]
