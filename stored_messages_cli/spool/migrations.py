"""The spool's one list of numbered schema steps: each a name, with a body per backend.

Append-only: never edit a released step, add the next one at the end with its SQLite body
(`sqlite/schema.py`) and its PostgreSQL body (`postgres/schema.py`); `tests/test_migrations.py`
fails when a step lacks either. A SQLite spool records how many steps it applied in
`PRAGMA user_version`; a PostgreSQL spool, one `schema_migrations` row per step (number and
name). Every body must be safe to run twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from .postgres import deliveries as pg_deliveries
from .postgres import holds as pg_holds
from .postgres import schema as pg
from .postgres.recipient_keys import recipient_keys as pg_recipient_keys
from .postgres.session import PgSession
from .sqlite import deliveries as lite_deliveries
from .sqlite import holds as lite_holds
from .sqlite import schema as lite
from .sqlite.recipient_keys import migrate_recipient_keys


@dataclass(frozen=True, slots=True)
class Step:
    """One schema step: its name and what it runs on each backend."""

    name: str
    sqlite: Callable[[sqlite3.Connection], None]
    postgres: Callable[[PgSession], None]


STEPS: tuple[Step, ...] = (
    Step("the 0.1.0 layout", sqlite=lite.v1_layout, postgres=pg.v1_layout),
    Step("final reason codes", sqlite=lite.v2_reason_codes, postgres=pg.nothing),
    Step("claim and status indexes, failed probe counts", sqlite=lite.v2_claim_indexes,
         postgres=pg.claim_indexes),
    Step("daemon heartbeats", sqlite=lite.migrate_daemons, postgres=pg.daemons),
    Step("manifest segments", sqlite=lite.migrate_manifests, postgres=pg.manifests),
    Step("every recipient identifier indexed, index coverage per project",
         sqlite=lite.migrate_identifiers, postgres=pg.identifiers),
    Step("a lean archive index: binary hashes, layout keys and destinations stored once",
         sqlite=lite.migrate_archive, postgres=pg.archive),
    Step("message bodies apart from their rows", sqlite=lite.migrate_bodies,
         postgres=pg.bodies),
    Step("partial indexes for the claim order and recent stored messages",
         sqlite=lite.v9_partial_indexes, postgres=pg.partial_indexes),
    Step("the inbox of SQL senders", sqlite=lite.migrate_inbox, postgres=pg.inbox),
    Step("manifest entries complete when a stored message settles",
         sqlite=lite.migrate_complete_entries, postgres=pg.complete_entries),
    Step("the settle trigger's condition without a table per row",
         sqlite=lite.migrate_settle_condition, postgres=pg.nothing),
    Step("the manifests become a signed Merkle log per destination",
         sqlite=lite.migrate_manifest_log, postgres=pg.manifest_log),
    Step("a pruned message keeps its content hash in the archive index",
         sqlite=lite.migrate_pruned_identity, postgres=pg.pruned_identity),
    Step("the legal hold ledger: cases and the objects each holds",
         sqlite=lite_holds.migrate_holds, postgres=pg_holds.holds),
    Step("wrapped recipient data keys (per-recipient encryption)",
         sqlite=migrate_recipient_keys, postgres=pg_recipient_keys),
    Step("provider events, the provider message ids they name, one-time tokens",
         sqlite=lite_deliveries.migrate_deliveries, postgres=pg_deliveries.deliveries),
)
LATEST_VERSION = len(STEPS)


def postgres_steps() -> list[tuple[str, Callable[[PgSession], None]]]:
    """(name, PostgreSQL body) of every step, for `postgres.schema.migrate`."""
    return [(step.name, step.postgres) for step in STEPS]
