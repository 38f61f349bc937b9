"""The SQLite store's legal hold verbs (`spool/holds.py`): cases, held objects, log entries."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from ...states import HoldState
from ..holds import (
    CASE_COLUMNS,
    ENTRY_INSERT,
    FAILING_ATTEMPTS,
    HOLDING_STATES,
    INDEX_COPY,
    ROW_COLUMNS,
    TODO_STATES,
    HoldCase,
    HoldRow,
    entry_marks,
    finished,
)
from ..index_filter import IndexFilter
from .base import StoreBase, marks

_TODO = ",".join(f"'{s.value}'" for s in TODO_STATES)
_HOLDING = ",".join(f"'{s.value}'" for s in HOLDING_STATES)
_CHUNK = 400


class HoldSql(StoreBase):
    """`HoldStore` on SQLite."""

    def add_case(self, case: HoldCase) -> bool:
        """Open a case; False when its id is taken."""
        cursor = self.conn.execute(
            f'INSERT OR IGNORE INTO "hold_cases" ({CASE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)',
            (case.case_id, case.project_id, json.dumps(case.filters, sort_keys=True),
             case.note, case.created_at, case.released_at))
        return cursor.rowcount == 1

    def hold_case(self, case_id: str) -> HoldCase | None:
        """One case, open or released."""
        rows = self._rows(f'SELECT {CASE_COLUMNS} FROM "hold_cases" WHERE "case_id" = ?',
                          (case_id,))
        return HoldCase.from_row(rows[0]) if rows else None

    def hold_cases(self, project_id: str | None, open_only: bool) -> list[HoldCase]:
        """Cases, oldest first."""
        clauses, params = [], []
        if project_id is not None:
            clauses.append('"project_id" = ?')
            params.append(project_id)
        if open_only:
            clauses.append('"released_at" IS NULL')
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return [HoldCase.from_row(r) for r in self._rows(
            f'SELECT {CASE_COLUMNS} FROM "hold_cases"{where} ORDER BY "created_at", "case_id"',
            params)]

    def add_hold_rows(self, case_id: str, wanted: IndexFilter,
                      message_ids: Sequence[str] | None, now: float) -> int:
        """Pending rows for the matching indexed messages the case does not hold yet."""
        where, params = wanted.where()
        sql = (f'INSERT OR IGNORE INTO "hold_objects" ("case_id", {INDEX_COPY}, "state",'
               f' "created_at") SELECT ?, {INDEX_COPY}, \'{HoldState.PENDING.value}\', ?'
               f" FROM archive_index WHERE {where}")
        if message_ids is None:
            return int(self.conn.execute(sql, (case_id, now, *params)).rowcount)
        added = 0
        for start in range(0, len(message_ids), _CHUNK):
            chunk = list(message_ids[start:start + _CHUNK])
            added += int(self.conn.execute(
                f"{sql} AND message_id IN ({marks(len(chunk))})",
                (case_id, now, *params, *chunk)).rowcount)
        return added

    def holds_to_do(self, case_id: str | None, project_ids: Sequence[str] | None,
                    after: tuple[str, str] | None, limit: int) -> list[HoldRow]:
        """Rows with work left, by (case id, message id), from after `after`."""
        clauses, params = [f'"state" IN ({_TODO})'], []
        if case_id is not None:
            clauses.append('"case_id" = ?')
            params.append(case_id)
        if project_ids is not None:
            clauses.append(f'"project_id" IN ({marks(len(project_ids))})')
            params.extend(project_ids)
        if after is not None:
            clauses.append('("case_id", "message_id") > (?, ?)')
            params.extend(after)
        return [HoldRow.from_row(r) for r in self._rows(
            f'SELECT {ROW_COLUMNS} FROM "hold_objects" WHERE {" AND ".join(clauses)}'
            ' ORDER BY "case_id", "message_id" LIMIT ?', (*params, limit))]

    def covered_elsewhere(self, case_id: str, keys: Sequence[str]) -> set[str]:
        """Keys another open case holds."""
        found: set[str] = set()
        for start in range(0, len(keys), _CHUNK):
            chunk = list(keys[start:start + _CHUNK])
            found.update(str(r[0]) for r in self._rows(
                'SELECT DISTINCT h."key" FROM "hold_objects" h JOIN "hold_cases" c'
                ' ON c."case_id" = h."case_id" WHERE c."released_at" IS NULL'
                f' AND h."case_id" <> ? AND h."state" IN ({_HOLDING})'
                f' AND h."key" IN ({marks(len(chunk))})', (case_id, *chunk)))
        return found

    def mark_holds_done(self, rows: Sequence[HoldRow], now: float) -> int:
        """Applied rows get a `hold` entry, released ones a `release` entry."""
        marked = 0
        for row in rows:
            new, outcome, stamped = finished(row)
            sets = f'{stamped} = ?'
            changed = self.conn.execute(
                f'UPDATE "hold_objects" SET "state" = ?, {sets}, "last_error" = NULL'
                ' WHERE "case_id" = ? AND "message_id" = ? AND "state" = ?'
                ' RETURNING "applied_at"',
                (new.value, now, row.case_id, row.message_id, row.state.value)).fetchall()
            if not changed:
                if row.state == HoldState.PENDING:  # released meanwhile: lift it (again)
                    self.conn.execute(
                        'UPDATE "hold_objects" SET "state" = ? WHERE "case_id" = ?'
                        ' AND "message_id" = ? AND "state" = ? AND "applied_at" IS NULL',
                        (HoldState.RELEASING.value, row.case_id, row.message_id,
                         HoldState.RELEASED.value))
                continue  # another process did it first
            marked += 1
            if changed[0][0] is None:
                continue  # released before its hold was ever applied: nothing to log
            self.conn.execute(
                f'INSERT INTO "manifest_entries" ({ENTRY_INSERT}) SELECT "project_id", 0,'
                ' "message_id", ?, "key", "key", "payload_sha256", "medium", "message_type",'
                ' "campaign_id", "sent_at", "recipient_hash", ?, ? FROM "hold_objects"'
                ' WHERE "case_id" = ? AND "message_id" = ?',
                (outcome.value, now, entry_marks(row), row.case_id, row.message_id))
        return marked

    def mark_hold_failed(self, row: HoldRow, error: str) -> None:
        """Count a failed attempt and keep why."""
        self.conn.execute(
            'UPDATE "hold_objects" SET "attempts" = "attempts" + 1, "last_error" = ?'
            ' WHERE "case_id" = ? AND "message_id" = ?', (error[:500], row.case_id,
                                                          row.message_id))

    def release_case(self, case_id: str, now: float) -> int:
        """The case is released; its rows are to be released."""
        self.conn.execute('UPDATE "hold_cases" SET "released_at" = ? WHERE "case_id" = ?'
                          ' AND "released_at" IS NULL', (now, case_id))
        return int(self.conn.execute(
            'UPDATE "hold_objects" SET "state" = ?, "attempts" = 0, "last_error" = NULL'
            ' WHERE "case_id" = ? AND "state" <> ? AND "state" <> ?',
            (HoldState.RELEASING.value, case_id, HoldState.RELEASED.value,
             HoldState.RELEASING.value)).rowcount)

    def hold_counts(self, case_id: str) -> tuple[int, int, int]:
        """(objects, pending, failing) of a case."""
        row = self._rows(
            f'SELECT COUNT(*), COALESCE(SUM("state" IN ({_TODO})), 0),'
            f' COALESCE(SUM("state" IN ({_TODO}) AND "attempts" > 0), 0)'
            ' FROM "hold_objects" WHERE "case_id" = ?', (case_id,))[0]
        return int(row[0]), int(row[1]), int(row[2])

    def hold_figures(self) -> tuple[int, int, int]:
        """(open cases, rows with work left, those failing)."""
        cases = self._one('SELECT COUNT(*) FROM "hold_cases" WHERE "released_at" IS NULL')
        todo, failing = self._rows(
            'SELECT COUNT(*), COUNT(CASE WHEN "attempts" >= ? THEN 1 END)'
            f' FROM "hold_objects" WHERE "state" IN ({_TODO})', (FAILING_ATTEMPTS,))[0]
        return int(cases), int(todo), int(failing)

    def holding_cases(self, project_id: str, message_ids: Sequence[str]
                      ) -> dict[str, list[str]]:
        """message id -> open cases holding it."""
        found: dict[str, list[str]] = {}
        for start in range(0, len(message_ids), _CHUNK):
            chunk = list(message_ids[start:start + _CHUNK])
            for message_id, case_id in self._rows(
                    'SELECT h."message_id", h."case_id" FROM "hold_objects" h JOIN'
                    ' "hold_cases" c ON c."case_id" = h."case_id" WHERE c."released_at" IS NULL'
                    f' AND h."project_id" = ? AND h."state" IN ({_HOLDING})'
                    f' AND h."message_id" IN ({marks(len(chunk))})'
                    ' ORDER BY h."case_id"', (project_id, *chunk)):
                found.setdefault(str(message_id), []).append(str(case_id))
        return found

    def applied_holds(self, project_id: str) -> list[tuple[str, str, str | None, str]]:
        """(message id, key, version id, case id) of applied rows of open cases."""
        return [(str(r[0]), str(r[1]), r[2], str(r[3])) for r in self._rows(
            'SELECT h."message_id", h."key", h."version_id", h."case_id" FROM "hold_objects" h'
            ' JOIN "hold_cases" c ON c."case_id" = h."case_id" WHERE c."released_at" IS NULL'
            ' AND h."project_id" = ? AND h."state" = ? ORDER BY h."key", h."case_id"',
            (project_id, HoldState.APPLIED.value))]


# Its schema step's SQLite body (`migrations.STEPS`): the ledger's tables.
HOLD_TABLES = """
CREATE TABLE IF NOT EXISTS "hold_cases" (
   "case_id" TEXT PRIMARY KEY,
   "project_id" TEXT NOT NULL,
   "filters" TEXT NOT NULL,
   "note" TEXT,
   "created_at" REAL NOT NULL,
   "released_at" REAL
);
CREATE TABLE IF NOT EXISTS "hold_objects" (
   "case_id" TEXT NOT NULL,
   "project_id" TEXT NOT NULL,
   "message_id" TEXT NOT NULL,
   "key" TEXT NOT NULL,
   "version_id" TEXT,
   "destination_url" TEXT,
   "medium" TEXT NOT NULL,
   "message_type" TEXT NOT NULL,
   "campaign_id" TEXT,
   "sent_at" TEXT,
   "recipient_hash" TEXT NOT NULL,
   "payload_sha256" TEXT,
   "state" TEXT NOT NULL,
   "created_at" REAL NOT NULL,
   "applied_at" REAL,
   "released_at" REAL,
   "attempts" INTEGER NOT NULL DEFAULT 0,
   "last_error" TEXT,
   PRIMARY KEY ("case_id", "message_id")
);
CREATE INDEX IF NOT EXISTS "idx_hold_objects_key" ON "hold_objects" ("key");
CREATE INDEX IF NOT EXISTS "idx_hold_objects_project_id_message_id"
    ON "hold_objects" ("project_id", "message_id");
CREATE INDEX IF NOT EXISTS "idx_hold_objects_to_do" ON "hold_objects" ("case_id", "message_id")
    WHERE "state" IN ('pending', 'releasing')
"""


def migrate_holds(conn: sqlite3.Connection) -> None:
    """Migration step: the legal hold ledger, cases and the objects each holds (safe to run
    twice)."""
    for statement in HOLD_TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)
