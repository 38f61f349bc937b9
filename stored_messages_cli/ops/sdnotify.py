"""The sd_notify protocol (systemd `Type=notify`), without libsystemd.

When `NOTIFY_SOCKET` is set, `sm run` sends `READY=1` once it is archiving, `WATCHDOG=1` every
half `WATCHDOG_USEC` while its loop turns (a stuck loop is restarted by systemd), `STATUS=…`
with the queue depth, and `STOPPING=1` when asked to stop. Each is one datagram on a unix
socket (a leading `@` names an abstract socket).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("sm.sdnotify")


class SdNotifier:
    """Sends sd_notify datagrams to one socket; errors are logged once, never raised."""

    def __init__(self, address: str, watchdog_usec: int | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_every = watchdog_usec / 2e6 if watchdog_usec else None
        self._monotonic = monotonic
        self._last_watchdog = float("-inf")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SdNotifier | None:
        """A notifier when `NOTIFY_SOCKET` is set, else None."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET")
        if not address:
            return None
        watchdog: int | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec)
        return cls(address, watchdog)

    def notify(self, *lines: str) -> bool:
        """Send `KEY=VALUE` lines as one datagram; False when it could not be sent."""
        try:
            self._sock.sendto("\n".join(lines).encode(), self.address)
            return True
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("sd_notify: cannot send to NOTIFY_SOCKET: %s", exc)
            return False

    def watchdog_due(self) -> bool:
        """True (and the clock restarted) when a `WATCHDOG=1` is due."""
        if self.watchdog_every is None:
            return False
        now = self._monotonic()
        if now - self._last_watchdog < self.watchdog_every:
            return False
        self._last_watchdog = now
        return True

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()
