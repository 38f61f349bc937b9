"""Read a spool over a connection of its own (what is committed), whichever backend it is.

SQLite: a `sqlite3` connection. PostgreSQL: a psycopg connection (autocommit, so `BEGIN` …
`COMMIT` are the caller's). Each takes its own database's SQL: write the parameter marks with
`mark(conn)` (`?` or `%s`), or `{p}` in the SQL given to `rows`.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from stored_messages_cli.spool import Spool


class PgRow(tuple[Any, ...]):
    """A PostgreSQL result row readable by position and by column name (as tests read
    `sqlite3.Row`)."""

    names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """The column names, in order."""
        return list(self.names)


def _pg_rows(cursor: Any) -> Any:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}

    def make(values: Any) -> PgRow:
        row = PgRow(values)
        row.names = names
        return row

    return make


def _pg_connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True, row_factory=_pg_rows)


def raw_connection(spool: Spool | Path | str) -> Any:
    """A new connection to the spool, in its own database's SQL (see `mark`).

    `spool` is an open Spool, or a home folder / spool.db path: with SM_SPOOL_URL set (the
    PostgreSQL run of the contract suite), that database is meant instead.
    """
    if isinstance(spool, Spool):
        if spool.url is not None:
            return _pg_connect(spool.url)
        path = spool.path
    else:
        if os.environ.get("SM_SPOOL_URL"):
            return _pg_connect(os.environ["SM_SPOOL_URL"])
        path = Path(spool)
        if path.is_dir():
            path = path / "spool.db"
    conn = sqlite3.connect(path, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def mark(conn: Any) -> str:
    """The parameter mark of a `raw_connection`: `?` (SQLite) or `%s` (psycopg)."""
    return "?" if isinstance(conn, sqlite3.Connection) else "%s"


def rows(spool: Spool | Path | str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """The rows of one query (parameter marks written `{p}`), over a connection opened and
    closed for it."""
    conn = raw_connection(spool)
    try:
        return list(conn.execute(sql.replace("{p}", mark(conn)), params).fetchall())
    finally:
        conn.close()
