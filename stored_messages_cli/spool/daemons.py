"""Daemon heartbeats: which `sm run` processes work on this spool, and whether they live.

Each `sm run` registers one row in `daemons` when it starts (host, pid, version, the name it
leases messages under), beats its heartbeat as its loop turns, and stamps `stopped_at` when it
exits. A daemon killed with SIGKILL never stamps it: its heartbeat goes stale (and, on this
host, its pid is gone), so `sm status` shows it as not alive, and the messages it held
`in_flight` as held by a dead daemon (the next `sm run` returns them to the queue).

Read and written through the spool's store (`store.DaemonStore`), in short write
transactions, at most every `HEARTBEAT_EVERY` seconds.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .postgres import database_errors

if TYPE_CHECKING:
    from . import Spool

log = logging.getLogger("sm.daemons")

HEARTBEAT_EVERY = 5.0  # seconds between heartbeat writes (the loop ticks every 0.5 s)
STALE_AFTER_MIN = 30.0  # a heartbeat older than max(this, 3 × the daemon's interval) is stale
FORGET_AFTER = 7 * 86400.0  # rows of daemons stopped (or silent) this long ago are dropped

@dataclass(frozen=True, slots=True)
class DaemonRow:
    """One registered `sm run`, as `sm status` shows it."""

    id: int
    host: str
    pid: int
    version: str | None
    lease_owner: str | None
    projects: list[str]
    heartbeat_interval: float
    started_at: float
    last_heartbeat: float
    stopped_at: float | None
    alive: bool


def pid_exists(pid: int) -> bool:
    """True when a process with this pid runs on this host (or we may not signal it)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_after(heartbeat_interval: float) -> float:
    """How old a daemon's heartbeat may be while it still counts as alive."""
    return max(STALE_AFTER_MIN, 3 * heartbeat_interval)


def is_alive(host: str, pid: int, last_heartbeat: float, heartbeat_interval: float,
             stopped_at: float | None, now: float, this_host: str | None = None) -> bool:
    """Alive = not stopped, heartbeat recent, and (on this host) its pid still exists."""
    if stopped_at is not None:
        return False
    if now - last_heartbeat > stale_after(heartbeat_interval):
        return False
    if host == (this_host or socket.gethostname()):
        return pid_exists(pid)
    return True


class Daemons:
    """The `daemons` table of one spool (its rows are the store's, `store.DaemonStore`)."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.store = spool.store

    def register(self, *, version: str | None, lease_owner: str | None = None,
                 projects: list[str] | None = None, heartbeat_interval: float = HEARTBEAT_EVERY,
                 pid: int | None = None, host: str | None = None) -> int:
        """Record a starting daemon; returns its row id.

        Dead daemons of this host are marked stopped (their leases go back to the queue when
        the archiver starts), and rows stopped or silent for `FORGET_AFTER` are dropped.
        """
        now = self.store.clock.now()
        host = host or socket.gethostname()
        pid = os.getpid() if pid is None else pid
        with self.store.write():
            stopped = [row_id for row_id, other_pid in self.store.live_daemons_of(host)
                       if other_pid == pid or not pid_exists(other_pid)]
            return self.store.register_daemon(
                host, pid, version, lease_owner, json.dumps(projects or []), heartbeat_interval,
                now, stopped, now - FORGET_AFTER)

    def heartbeat(self, daemon_id: int) -> None:
        """The daemon is alive now."""
        with self.store.write():
            self.store.heartbeat(daemon_id, self.store.clock.now())

    def stopped(self, daemon_id: int) -> None:
        """The daemon exits normally."""
        now = self.store.clock.now()
        with self.store.write():
            self.store.daemon_stopped(daemon_id, now)

    def listed(self, *, include_stopped: bool = False) -> list[DaemonRow]:
        """Daemons that have not stopped (alive or dead), oldest first."""
        now = self.store.clock.now()
        here = socket.gethostname()
        return [DaemonRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5] or "[]"), r[6], r[7],
                          r[8], r[9], is_alive(r[1], r[2], r[8], r[6], r[9], now, here))
                for r in self.store.daemon_rows(include_stopped)]

    def in_flight_by_owner(self) -> dict[str, int]:
        """How many `in_flight` messages each lease owner holds."""
        return self.store.in_flight_by_owner()


def lease_owner_alive(owner: str, daemons: list[DaemonRow]) -> bool:
    """Whether the process holding a lease still runs (as far as this host can tell).

    A lease owner is `host:pid:stamp`. A registered daemon answers for itself; otherwise the
    owner counts as alive unless it names a process of this host that is gone (a sender or
    `sm replay` without a heartbeat row).
    """
    for daemon in daemons:
        if daemon.lease_owner == owner:
            return daemon.alive
    parts = owner.split(":")
    if len(parts) == 3 and parts[0] == socket.gethostname() and parts[1].isdigit():
        return pid_exists(int(parts[1]))
    return True


def discarded_by_reason(spool: Spool) -> dict[str, int]:
    """Discarded messages counted per reason code (`send_failed`, `never_confirmed`, …)."""
    return spool.store.discarded_by_reason()


class Heartbeat:
    """The `on_tick` hook of `sm run`: writes the heartbeat at most every `every` seconds."""

    def __init__(self, daemons: Daemons, daemon_id: int, every: float = HEARTBEAT_EVERY,
                 monotonic: Any = time.monotonic) -> None:
        self.daemons = daemons
        self.daemon_id = daemon_id
        self.every = every
        self._monotonic = monotonic
        self._last = monotonic()

    def __call__(self) -> None:
        now = self._monotonic()
        if now - self._last >= self.every:
            self._last = now
            try:
                self.daemons.heartbeat(self.daemon_id)
            except database_errors() as exc:  # a busy spool must not stop the archiver
                log.warning("could not write the daemon heartbeat: %s", exc)
