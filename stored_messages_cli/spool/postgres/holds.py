"""The PostgreSQL store's legal hold verbs (`spool/holds.py`): cases, held objects, log entries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

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
from .base import PgStoreBase
from .session import PgSession

_TODO = ",".join(f"'{s.value}'" for s in TODO_STATES)
_HOLDING = ",".join(f"'{s.value}'" for s in HOLDING_STATES)


class HoldPg(PgStoreBase):
    """`HoldStore` on PostgreSQL."""

    def add_case(self, case: HoldCase) -> bool:
        """Open a case; False when its id is taken."""
        cursor = self.pg.execute(
            f'INSERT INTO "hold_cases" ({CASE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)'
            ' ON CONFLICT DO NOTHING',
            (case.case_id, case.project_id, json.dumps(case.filters, sort_keys=True),
             case.note, case.created_at, case.released_at))
        return bool(cursor.rowcount == 1)

    def hold_case(self, case_id: str) -> HoldCase | None:
        """One case, open or released."""
        rows = self._rows(f'SELECT {CASE_COLUMNS} FROM "hold_cases" WHERE "case_id" = %s',
                          (case_id,))
        return HoldCase.from_row(rows[0]) if rows else None

    def hold_cases(self, project_id: str | None, open_only: bool) -> list[HoldCase]:
        """Cases, oldest first."""
        clauses, params = [], []
        if project_id is not None:
            clauses.append('"project_id" = %s')
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
        where, params = wanted.where(mark="%s", text_as_bytes=True)
        sql = (f'INSERT INTO "hold_objects" ("case_id", {INDEX_COPY}, "state",'
               f' "created_at") SELECT %s, {INDEX_COPY}, \'{HoldState.PENDING.value}\', %s'
               f" FROM archive_index WHERE {where}")
        if message_ids is not None:
            sql += " AND message_id = ANY(%s)"
            params = [*params, list(message_ids)]
        return int(self.pg.execute(sql + " ON CONFLICT DO NOTHING",
                                   (case_id, now, *params)).rowcount)

    def holds_to_do(self, case_id: str | None, project_ids: Sequence[str] | None,
                    after: tuple[str, str] | None, limit: int) -> list[HoldRow]:
        """Rows with work left, by (case id, message id), from after `after`."""
        clauses, params = [f'"state" IN ({_TODO})'], list[Any]()
        if case_id is not None:
            clauses.append('"case_id" = %s')
            params.append(case_id)
        if project_ids is not None:
            clauses.append('"project_id" = ANY(%s)')
            params.append(list(project_ids))
        if after is not None:
            clauses.append('("case_id", "message_id") > (%s, %s)')
            params.extend(after)
        return [HoldRow.from_row(r) for r in self._rows(
            f'SELECT {ROW_COLUMNS} FROM "hold_objects" WHERE {" AND ".join(clauses)}'
            ' ORDER BY "case_id", "message_id" LIMIT %s', (*params, limit))]

    def covered_elsewhere(self, case_id: str, keys: Sequence[str]) -> set[str]:
        """Keys another open case holds."""
        return {str(r[0]) for r in self._rows(
            'SELECT DISTINCT h."key" FROM "hold_objects" h JOIN "hold_cases" c'
            ' ON c."case_id" = h."case_id" WHERE c."released_at" IS NULL'
            f' AND h."case_id" <> %s AND h."state" IN ({_HOLDING})'
            ' AND h."key" = ANY(%s)', (case_id, list(keys)))}

    def mark_holds_done(self, rows: Sequence[HoldRow], now: float) -> int:
        """Applied rows get a `hold` entry, released ones a `release` entry."""
        marked = 0
        for row in rows:
            new, outcome, stamped = finished(row)
            sets = f'{stamped} = %s'
            changed = self.pg.execute(
                f'UPDATE "hold_objects" SET "state" = %s, {sets}, "last_error" = NULL'
                ' WHERE "case_id" = %s AND "message_id" = %s AND "state" = %s'
                ' RETURNING "applied_at"',
                (new.value, now, row.case_id, row.message_id, row.state.value)).fetchall()
            if not changed:
                if row.state == HoldState.PENDING:  # released meanwhile: lift it (again)
                    self.pg.execute(
                        'UPDATE "hold_objects" SET "state" = %s WHERE "case_id" = %s'
                        ' AND "message_id" = %s AND "state" = %s AND "applied_at" IS NULL',
                        (HoldState.RELEASING.value, row.case_id, row.message_id,
                         HoldState.RELEASED.value))
                continue  # another process did it first
            marked += 1
            if changed[0][0] is None:
                continue  # released before its hold was ever applied: nothing to log
            self.pg.execute(
                f'INSERT INTO "manifest_entries" ({ENTRY_INSERT}) SELECT "project_id", 0,'
                ' "message_id", %s, "key", "key", "payload_sha256", "medium", "message_type",'
                ' "campaign_id", "sent_at", "recipient_hash", %s, %s FROM "hold_objects"'
                ' WHERE "case_id" = %s AND "message_id" = %s',
                (outcome.value, now, entry_marks(row), row.case_id, row.message_id))
        return marked

    def mark_hold_failed(self, row: HoldRow, error: str) -> None:
        """Count a failed attempt and keep why."""
        self.pg.execute(
            'UPDATE "hold_objects" SET "attempts" = "attempts" + 1, "last_error" = %s'
            ' WHERE "case_id" = %s AND "message_id" = %s', (error[:500], row.case_id,
                                                          row.message_id))

    def release_case(self, case_id: str, now: float) -> int:
        """The case is released; its rows are to be released."""
        self.pg.execute('UPDATE "hold_cases" SET "released_at" = %s WHERE "case_id" = %s'
                          ' AND "released_at" IS NULL', (now, case_id))
        return int(self.pg.execute(
            'UPDATE "hold_objects" SET "state" = %s, "attempts" = 0, "last_error" = NULL'
            ' WHERE "case_id" = %s AND "state" <> %s AND "state" <> %s',
            (HoldState.RELEASING.value, case_id, HoldState.RELEASED.value,
             HoldState.RELEASING.value)).rowcount)

    def hold_counts(self, case_id: str) -> tuple[int, int, int]:
        """(objects, pending, failing) of a case."""
        row = self._rows(
            f'SELECT COUNT(*), COUNT(*) FILTER (WHERE "state" IN ({_TODO})),'
            f' COUNT(*) FILTER (WHERE "state" IN ({_TODO}) AND "attempts" > 0)'
            ' FROM "hold_objects" WHERE "case_id" = %s', (case_id,))[0]
        return int(row[0]), int(row[1]), int(row[2])

    def hold_figures(self) -> tuple[int, int, int]:
        """(open cases, rows with work left, those failing)."""
        cases = self._one('SELECT COUNT(*) FROM "hold_cases" WHERE "released_at" IS NULL')
        todo, failing = self._rows(
            'SELECT COUNT(*), COUNT(CASE WHEN "attempts" >= %s THEN 1 END)'
            f' FROM "hold_objects" WHERE "state" IN ({_TODO})', (FAILING_ATTEMPTS,))[0]
        return int(cases), int(todo), int(failing)

    def holding_cases(self, project_id: str, message_ids: Sequence[str]
                      ) -> dict[str, list[str]]:
        """message id -> open cases holding it."""
        found: dict[str, list[str]] = {}
        for message_id, case_id in self._rows(
                'SELECT h."message_id", h."case_id" FROM "hold_objects" h JOIN'
                ' "hold_cases" c ON c."case_id" = h."case_id" WHERE c."released_at" IS NULL'
                f' AND h."project_id" = %s AND h."state" IN ({_HOLDING})'
                ' AND h."message_id" = ANY(%s) ORDER BY h."case_id"',
                (project_id, list(message_ids))):
            found.setdefault(str(message_id), []).append(str(case_id))
        return found

    def applied_holds(self, project_id: str) -> list[tuple[str, str, str | None, str]]:
        """(message id, key, version id, case id) of applied rows of open cases."""
        return [(str(r[0]), str(r[1]), r[2], str(r[3])) for r in self._rows(
            'SELECT h."message_id", h."key", h."version_id", h."case_id" FROM "hold_objects" h'
            ' JOIN "hold_cases" c ON c."case_id" = h."case_id" WHERE c."released_at" IS NULL'
            ' AND h."project_id" = %s AND h."state" = %s ORDER BY h."key", h."case_id"',
            (project_id, HoldState.APPLIED.value))]


HOLD_TABLES = """
CREATE TABLE IF NOT EXISTS "hold_cases" (
   "case_id" TEXT PRIMARY KEY,
   "project_id" TEXT NOT NULL,
   "filters" TEXT NOT NULL,
   "note" TEXT,
   "created_at" DOUBLE PRECISION NOT NULL,
   "released_at" DOUBLE PRECISION
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
   "created_at" DOUBLE PRECISION NOT NULL,
   "applied_at" DOUBLE PRECISION,
   "released_at" DOUBLE PRECISION,
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


def holds(conn: PgSession) -> None:
    """The legal hold ledger (SPEC 9.4): cases and the objects each holds."""
    for statement in HOLD_TABLES.split(";"):
        if statement.strip():
            conn.execute(statement.strip())
