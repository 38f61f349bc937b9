"""What differs between the spool's two databases, in one place per backend.

The spool's modules write SQL once (SQLite's spelling; `postgres.translate` respells it) and
ask the dialect only for what cannot be respelled: how a claim locks the rows it takes, and
which exceptions mean "the database failed" rather than "this message is wrong".
`chunks` slices a list of ids so that one statement's parameters stay within both
backends' limits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

_Item = TypeVar("_Item")


def chunks(items: Sequence[_Item], size: int = 500) -> Iterator[Sequence[_Item]]:
    """`items` in slices small enough to bind as one statement's parameters (`IN (…)`,
    `VALUES …`) on either backend."""
    return (items[start:start + size] for start in range(0, len(items), size))


@dataclass(frozen=True, slots=True)
class Dialect:
    """One backend's answers."""

    name: str
    # Begins the transaction of a claim: SQLite takes its one write lock; PostgreSQL only
    # the row locks of what it claims, so workers on many hosts claim side by side.
    begin_claim: str
    # Appended to a claim's SELECTs: locked rows (another worker's claim) are skipped.
    skip_locked: str
    # The same for a claim's SELECT of `messages` joined with their bodies: only the
    # messages are locked (PostgreSQL locks no side of an outer join it may leave empty).
    skip_locked_joined: str
    errors: tuple[type[BaseException], ...]


SQLITE = Dialect(name="sqlite", begin_claim="BEGIN IMMEDIATE", skip_locked="",
                 skip_locked_joined="", errors=(sqlite3.Error,))


def postgres_dialect(errors: tuple[type[BaseException], ...]) -> Dialect:
    """PostgreSQL's answers (`errors` are psycopg's, imported only when one is opened)."""
    return Dialect(name="postgresql", begin_claim="BEGIN", skip_locked=" FOR UPDATE SKIP LOCKED",
                   skip_locked_joined=" FOR UPDATE OF messages SKIP LOCKED", errors=errors)
