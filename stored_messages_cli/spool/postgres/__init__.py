"""The PostgreSQL spool: the URL rule, its connection, its errors; `schema` holds its DDL.

A fleet's senders and `sm run` workers share one PostgreSQL database (docs/fleet.md). The
schema is PostgreSQL's own (`postgres/schema.py`, one body per step of `migrations.STEPS`).
The store's statements are still written in SQLite's spelling for now: `PgConnection`
respells the few constructs PostgreSQL writes differently (`translate`) until the
PostgreSQL store holds its own SQL.

Transactions: a write transaction (`BEGIN IMMEDIATE` in SQLite) takes the spool's write lock
(a transaction-level advisory lock), so read-then-write steps keep SQLite's guarantees
across processes and hosts; claims take row locks only (`FOR UPDATE SKIP LOCKED`), so
workers lease disjoint messages in parallel.

psycopg is imported only here, and only when a `postgresql://` spool is opened.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ...errors import ConfigError, SmError
from ...network import is_loopback
from ..store import SpoolError, SpoolFull
from .session import WRITE_LOCK, PgSession

SCHEMES = ("postgresql", "postgres")
_TLS_MODES = ("require", "verify-ca", "verify-full")


def is_postgres_url(location: object) -> bool:
    """True when `location` names a PostgreSQL spool (`postgresql://…`)."""
    return isinstance(location, str) and location.split(":", 1)[0].lower() in SCHEMES


@functools.cache
def database_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the spool's database failed", on either backend."""
    import sqlite3

    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


def redact(url: str) -> str:
    """The URL without its password and query (for messages and `sm status`)."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def check_spool_url(url: str, *, source: str, allow_insecure: bool = False) -> None:
    """Refuse a spool URL that would leak a secret or send messages unencrypted (SPEC 7).

    A password never comes from `config.toml` (libpq reads PGPASSWORD, ~/.pgpass or a
    service file); a database on another host must be reached with `sslmode=require` or
    stronger (in the URL or PGSSLMODE), unless explicitly allowed.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ConfigError(f"spool URL {redact(url)} ({source}) is not a postgresql:// URL",
                          hint="use postgresql://USER@HOST:PORT/DATABASE, or a spool.db path")
    query = {k.lower(): v[-1] for k, v in parse_qs(parts.query).items()}
    if source == "config.toml" and (parts.password or "password" in query):
        raise ConfigError(
            f"spool_url {redact(url)} in config.toml carries a password; sm never stores a"
            " secret in config.toml",
            hint="remove it from the URL and give it through PGPASSWORD, ~/.pgpass or a"
            " pg_service.conf entry")
    hosts = [h for h in (parts.hostname, query.get("host"), os.environ.get("PGHOST")) if h]
    host = hosts[0] if hosts else ""
    if not host or host.startswith("/") or is_loopback(host):
        return  # a unix socket or this machine: nothing crosses a network
    sslmode = query.get("sslmode") or os.environ.get("PGSSLMODE") or "prefer"
    if sslmode in _TLS_MODES or allow_insecure:
        return
    raise ConfigError(
        f"spool URL {redact(url)} ({source}) reaches {host} without requiring TLS"
        f" (sslmode={sslmode}); messages must travel encrypted",
        hint="add ?sslmode=verify-full (or require) to the URL or set PGSSLMODE, or set"
        " SM_SPOOL_ALLOW_INSECURE=1 for a database on a trusted private network")


# --------------------------------------------------------------------------- SQL spelling

_INSERT_OR = re.compile(r"^\s*INSERT OR (IGNORE|REPLACE) INTO\s+(\"?\w+\"?)\s*\(([^)]*)\)",
                        re.IGNORECASE)
# Tables' conflict keys, for `INSERT OR REPLACE` (SQLite replaces on the primary key).
_REPLACE_KEYS = {"archive_index": ("project_id", "message_id")}
_JSON_IDS = re.compile(r"\(SELECT value FROM json_each\((\?\d*)\)\)", re.IGNORECASE)
_SCALAR_MIN = re.compile(r"MIN\(COALESCE\(([\w\"]+), (\?)\), (\?)\)")
_NUMBERED = re.compile(r"\?(\d+)")
_IS_PARAM = re.compile(r"\bIS \?")
_BLOB_LITERAL = re.compile(r"\bX'([0-9A-Fa-f]*)'")
# Tables whose writers read `cursor.lastrowid` after a plain INSERT: it comes from RETURNING.
_LASTROWID_TABLES = ("messages", "archive_locations", "archive_entries")


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> tuple[str, tuple[int, ...] | None]:
    """SQLite's spelling of a statement → PostgreSQL's, and how to order its parameters.

    Placeholders `?` become `%s` (a literal `%` is doubled); numbered ones (`?1`) are
    expanded, returning the parameter index of each placeholder in turn. The other rules
    cover exactly the spellings the spool's modules use.
    """
    text = sql.strip()
    if text.upper() == "BEGIN IMMEDIATE":
        return f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})", None
    suffix = ""
    match = _INSERT_OR.match(text)
    if match:
        verb, table, columns = match.group(1).upper(), match.group(2), match.group(3)
        text = f"INSERT INTO {table} ({columns})" + text[match.end():]
        if verb == "IGNORE":
            suffix = " ON CONFLICT DO NOTHING"
        else:
            keys = _REPLACE_KEYS[table.strip('"')]
            names = [c.strip().strip('"') for c in columns.split(",")]
            updates = ", ".join(f'"{n}" = EXCLUDED."{n}"' for n in names if n not in keys)
            suffix = f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
        returning = re.search(r"\sRETURNING\s", text, re.IGNORECASE)
        if returning:
            text = text[:returning.start()] + suffix + text[returning.start():]
            suffix = ""
    into = re.match(r'INSERT INTO "?(\w+)"?', text)
    if into and into.group(1) in _LASTROWID_TABLES and "RETURNING" not in text:
        suffix += ' RETURNING "id"'
    text = _IS_PARAM.sub("IS NOT DISTINCT FROM ?", text)
    text = _BLOB_LITERAL.sub(r"'\\x\1'::bytea", text)
    text = _JSON_IDS.sub(r"(SELECT jsonb_array_elements_text(CAST(\1 AS jsonb))::bigint)", text)
    text = _SCALAR_MIN.sub(r"LEAST(COALESCE(\1, \2), \3)", text)
    text = text.replace("json_each(COALESCE(", "jsonb_each_text(COALESCE(")
    text = text.replace("'{}')) j", "'{}')::jsonb) j")
    text += suffix
    return _placeholders(text)


def _placeholders(text: str) -> tuple[str, tuple[int, ...] | None]:
    """`?`/`?N` → `%s` outside string literals; `%` → `%%`."""
    out: list[str] = []
    order: list[int] = []
    numbered = False
    plain = 0
    for index, piece in enumerate(re.split(r"('(?:[^']|'')*')", text)):
        if index % 2:  # a string literal
            out.append(piece.replace("%", "%%"))
            continue
        piece = piece.replace("%", "%%")

        def number(match: re.Match[str]) -> str:
            nonlocal numbered
            numbered = True
            order.append(int(match.group(1)) - 1)
            return "%s"

        piece = _NUMBERED.sub(number, piece)
        plain += piece.count("?")
        out.append(piece.replace("?", "%s"))
    if numbered and plain:
        raise ValueError(f"mixed ? and ?N placeholders: {text}")
    return "".join(out), tuple(order) if numbered else None


# --------------------------------------------------------------------------- connection


class Row(tuple[Any, ...]):
    """A result row readable by position and by column name, like `sqlite3.Row`."""

    _names: dict[str, int]

    def __new__(cls, values: Sequence[Any], names: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """The column names, in order."""
        return list(self._names)


def _row_factory(cursor: Any) -> Any:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, names)


class PgCursor:
    """The part of `sqlite3.Cursor` the spool uses, over a psycopg cursor."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor  # None: a statement whose result nobody reads (BEGIN, a no-op)
        self.row_factory: Any = None  # rows are always `Row` (name and position)

    @property
    def rowcount(self) -> int:
        """Rows the statement changed."""
        return 0 if self._cursor is None else int(self._cursor.rowcount)

    @property
    def lastrowid(self) -> int | None:
        """The id an INSERT returned (`translate` adds `RETURNING "id"` where it is read)."""
        if self._cursor is None or self._cursor.description is None:
            return None
        row = self._cursor.fetchone()
        return None if row is None else int(row[0])

    @property
    def description(self) -> Any:
        """Column descriptions of the result."""
        return None if self._cursor is None else self._cursor.description

    def fetchone(self) -> Row | None:
        """The next row, or None."""
        return self._cursor.fetchone() if self.description else None

    def fetchall(self) -> list[Row]:
        """Every remaining row."""
        return self._cursor.fetchall() if self.description else []

    def fetchmany(self, size: int) -> list[Row]:
        """Up to `size` more rows."""
        return self._cursor.fetchmany(size) if self.description else []

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


class PgConnection:
    """The spool's PostgreSQL session seen through SQLite's spelling: `execute(sql, params)`
    with `?` placeholders, respelled by `translate`. Transitional: it serves `Spool.conn` and
    the spool's modules not yet given their PostgreSQL SQL (manifests, the archive index,
    maintenance); the store (`postgres/store.py`) runs its own SQL on the `PgSession`."""

    def __init__(self, target: str | PgSession) -> None:
        self.session = target if isinstance(target, PgSession) else PgSession(target)
        self.url = self.session.url
        self.errors = self.session.errors

    def set_trace_callback(self, callback: Any) -> None:
        """Call `callback(sql)` with each statement the session runs (PostgreSQL's text)."""
        self.session.set_trace_callback(callback)

    @staticmethod
    def _arguments(order: tuple[int, ...] | None, params: Iterable[Any]) -> Sequence[Any]:
        values = tuple(params)
        return values if order is None else tuple(values[i] for i in order)

    def execute(self, sql: str, params: Iterable[Any] = ()) -> PgCursor:
        """Run one statement (SQLite spelling) and return its cursor."""
        values = tuple(params)
        text, order = translate(sql)
        if text.startswith("BEGIN;"):
            for part in text.split(";"):  # BEGIN, then the write lock
                self.session.execute(part.strip())
            return PgCursor(None)
        if values or order is not None:
            return PgCursor(self.session.execute(text, self._arguments(order, values),
                                                 row_factory=_row_factory))
        return PgCursor(self.session.execute(text.replace("%%", "%"), row_factory=_row_factory))

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> PgCursor:
        """Run one statement for each parameter row; `rowcount` is their total."""
        text, order = translate(sql)
        return PgCursor(self.session.executemany(
            text, [self._arguments(order, row) for row in rows]))

    @property
    def in_transaction(self) -> bool:
        """True inside an explicit transaction (also a failed one, until ROLLBACK)."""
        return self.session.in_transaction

    def close(self) -> None:
        """Close the connection."""
        self.session.close()


def spool_error(exc: BaseException, url: str) -> SmError:
    """One clear error, with the next step, for what PostgreSQL (or libpq) said."""

    shown = redact(url)
    text = " ".join(str(exc).split())
    lowered = text.lower()
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate == "53100" or "could not extend" in lowered:
        return SpoolFull(f"the database of the spool {shown} is out of disk space;"
                         " nothing was written", hint="free space on the database server")
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return SpoolError(f"the spool database {shown} refused the login ({text[:200]})",
                          hint="give the password through PGPASSWORD, ~/.pgpass or"
                          " pg_service.conf")
    if sqlstate.startswith("08") or "connection" in lowered or "server closed" in lowered:
        return SpoolError(f"cannot reach the spool database {shown} ({text[:200]})",
                          hint="check that the database is up and reachable (pg_isready),"
                          " then retry")
    return SpoolError(f"the spool database {shown} failed: {text[:300]}")


__all__ = ["PgConnection", "PgSession", "check_spool_url", "database_errors", "is_postgres_url",
           "redact", "spool_error", "translate"]
