"""The PostgreSQL spool: the URL rule, its connection, its errors; `schema` holds its DDL.

A fleet's senders and `sm run` workers share one PostgreSQL database (docs/fleet.md). The
schema is PostgreSQL's own (`postgres/schema.py`, one body per step of `migrations.STEPS`).
Every statement is PostgreSQL's too: the PostgreSQL store (`postgres/store.py`, one module
per concern) runs its own SQL on the spool's `PgSession` (`session.py`); nothing respells
SQLite's SQL.

Transactions: a write transaction (`BEGIN IMMEDIATE` in SQLite) takes the spool's write lock
(a transaction-level advisory lock), so read-then-write steps keep SQLite's guarantees
across processes and hosts; claims take row locks only (`FOR UPDATE SKIP LOCKED`), so
workers lease disjoint messages in parallel.

psycopg is imported only here, and only when a `postgresql://` spool is opened.
"""

from __future__ import annotations

import functools
import os
from urllib.parse import parse_qs, urlsplit

from ...errors import ConfigError, SmError
from ...network import is_loopback
from ..store import SpoolError, SpoolFull
from .session import PgSession

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


__all__ = ["PgSession", "check_spool_url", "database_errors", "is_postgres_url", "redact",
           "spool_error"]
