"""Read a spool over a connection of its own (what is committed), whichever backend it is."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from stored_messages_cli.spool import Spool
from stored_messages_cli.spool.postgres import PgConnection


def raw_connection(spool: Spool | Path | str) -> Any:
    """A new connection to the spool (SQLite's spelling of SQL works on both).

    `spool` is an open Spool, or a home folder / spool.db path: with SM_SPOOL_URL set (the
    PostgreSQL run of the contract suite), that database is meant instead.
    """
    if isinstance(spool, Spool):
        url = spool._db.url
        if url is not None:
            return PgConnection(url)
        path = spool.path
    else:
        if os.environ.get("SM_SPOOL_URL"):
            return PgConnection(os.environ["SM_SPOOL_URL"])
        path = Path(spool)
        if path.is_dir():
            path = path / "spool.db"
    conn = sqlite3.connect(path, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def rows(spool: Spool | Path | str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """The rows of one query, over a connection opened and closed for it."""
    conn = raw_connection(spool)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()
