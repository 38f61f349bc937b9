"""The SQLite store: the spool's SQL in SQLite's spelling, one module per concern.

`SqliteStore` implements `store.SpoolStore` over the spool's connection (`db.SpoolDB`).
"""

from __future__ import annotations

from .daemons import DaemonSql
from .deliveries import DeliverySql
from .evidence import EvidenceSql
from .health import HealthSql
from .holds import HoldSql
from .index import IndexSql
from .intake import IntakeSql
from .maintenance import MaintenanceSql
from .queue import QueueSql
from .recipient_keys import RecipientKeySql
from .report import ReportSql


class SqliteStore(IntakeSql, QueueSql, HealthSql, ReportSql, DaemonSql, MaintenanceSql,
                  EvidenceSql, IndexSql, HoldSql, RecipientKeySql, DeliverySql):
    """Every verb of `SpoolStore`, in SQLite's SQL."""


__all__ = ["SqliteStore"]
