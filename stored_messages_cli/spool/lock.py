"""The spool's lock: re-entrant, and able to say whether the calling thread holds it."""

from __future__ import annotations

import threading


class SpoolLock:
    """The re-entrant lock guarding a spool's connection, which also knows whether the calling
    thread holds it (`threading.RLock` keeps its owner private)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock (again, from the thread that holds it)."""
        taken = self._lock.acquire(blocking, timeout)
        if taken:
            self._owner = threading.get_ident()
            self._depth += 1
        return taken

    def release(self) -> None:
        """Give back one level of the lock."""
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
        self._lock.release()

    def held_here(self) -> bool:
        """True when the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
