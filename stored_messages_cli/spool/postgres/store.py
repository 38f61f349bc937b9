"""The PostgreSQL store: the spool's SQL in PostgreSQL's spelling, one module per concern."""

from __future__ import annotations

from .daemons import DaemonPg
from .deliveries import DeliveryPg
from .evidence import EvidencePg
from .health import HealthPg
from .holds import HoldPg
from .intake import IntakePg
from .lookups import IndexPg
from .maintenance import MaintenancePg
from .queue import QueuePg
from .recipient_keys import RecipientKeyPg
from .report import ReportPg


class PostgresStore(IntakePg, QueuePg, HealthPg, ReportPg, DaemonPg, MaintenancePg,
                    EvidencePg, IndexPg, HoldPg, RecipientKeyPg, DeliveryPg):
    """Every verb of `SpoolStore`, in PostgreSQL's SQL (`%s` placeholders, `ANY`, `LEAST`,
    `RETURNING`, `FOR UPDATE SKIP LOCKED`)."""


__all__ = ["PostgresStore"]
