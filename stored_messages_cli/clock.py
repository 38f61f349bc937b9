"""Time as a parameter: everything that schedules takes a Clock, so tests control it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """A source of the current time in seconds since the epoch."""

    def now(self) -> float:
        """Current time, epoch seconds."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        """Current time, epoch seconds."""
        return time.time()


class FakeClock:
    """A clock that only moves when told to (tests, benchmarks)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        """Current fake time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        with self._lock:
            self._now += seconds

    def set(self, moment: float) -> None:
        """Jump to `moment`."""
        with self._lock:
            self._now = moment


def to_rfc3339(epoch: float | None) -> str | None:
    """Epoch seconds as an RFC 3339 UTC string (`…Z`), None stays None."""
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
