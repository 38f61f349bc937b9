"""The PostgreSQL store's `daemons` verbs: registration, heartbeats, listing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import PgStoreBase


class DaemonPg(PgStoreBase):
    """`DaemonStore` on PostgreSQL."""

    def live_daemons_of(self, host: str) -> list[tuple[int, int]]:
        """`(id, pid)` of daemons of `host` not stopped."""
        return [(int(r[0]), int(r[1])) for r in self._all(
            "SELECT id, pid FROM daemons WHERE stopped_at IS NULL AND host = %s", (host,))]

    def register_daemon(self, host: str, pid: int, version: str | None,
                        lease_owner: str | None, projects: str, heartbeat_interval: float,
                        now: float, stopped_ids: Sequence[int], forget_before: float) -> int:
        """Stamp `stopped_ids` stopped, drop rows silent since `forget_before`, and add the
        starting daemon; its id."""
        for row_id in stopped_ids:
            self.pg.execute("UPDATE daemons SET stopped_at = %s WHERE id = %s", (now, row_id))
        self.pg.execute("DELETE FROM daemons WHERE COALESCE(stopped_at, last_heartbeat) < %s",
                          (forget_before,))
        rows = self._all(
            "INSERT INTO daemons (host, pid, version, lease_owner, projects,"
            " heartbeat_interval, started_at, last_heartbeat)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
            (host, pid, version, lease_owner, projects, heartbeat_interval, now, now))
        return int(rows[0][0])

    def heartbeat(self, daemon_id: int, now: float) -> None:
        """The daemon is alive now."""
        self.pg.execute("UPDATE daemons SET last_heartbeat = %s WHERE id = %s", (now, daemon_id))

    def daemon_stopped(self, daemon_id: int, now: float) -> None:
        """The daemon exits normally."""
        self.pg.execute("UPDATE daemons SET last_heartbeat = %s, stopped_at = %s WHERE id = %s",
                          (now, now, daemon_id))

    def daemon_rows(self, include_stopped: bool) -> list[tuple[Any, ...]]:
        """`(id, host, pid, version, lease_owner, projects, heartbeat_interval, started_at,
        last_heartbeat, stopped_at)` of registered daemons, oldest first."""
        where = "" if include_stopped else " WHERE stopped_at IS NULL"
        return [tuple(r) for r in self._rows(
            "SELECT id, host, pid, version, lease_owner, projects, heartbeat_interval,"
            f" started_at, last_heartbeat, stopped_at FROM daemons{where} ORDER BY id")]
