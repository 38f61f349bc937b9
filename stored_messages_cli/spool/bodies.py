"""Message bodies apart from their rows (schema step 8).

A message's rendered payload (~2-3 KB) lives in `message_bodies`, keyed by the message's row
id, from ingest until it is stored (or discarded for good). The `messages` row holds only
bookkeeping (~300 bytes), so what changes often — a claim's lease, a settle, a retry's
schedule — rewrites a few small pages instead of one page per message: a claim of 64 went
from ~8 ms to ~1 ms of writes here.

A body is kept as the object's gzip bytes (`gzip_body`, deterministic), made once at ingest:
about 400 bytes instead of 2.4 KB, and the upload sends it without compressing again. A body
kept by an earlier sm is the payload itself; `payload_of` reads either (a JSON payload never
starts with gzip's magic bytes).

- `HAS_BODY`: SQL true for a `messages` row whose body is still kept (replay, revival).
- `BODY_OF`: SQL giving a `messages` row's body (NULL when gone).
- A message row deleted (prune) takes its body with it (a trigger).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterable

from ..message import gzip_body

GZIP_HEADER = gzip_body(b"")[:10]  # what every body made by `gzip_body` starts with

HAS_BODY = 'EXISTS (SELECT 1 FROM "message_bodies" b WHERE b."id" = "messages"."id")'
BODY_OF = '(SELECT b."payload" FROM "message_bodies" b WHERE b."id" = "messages"."id")'

def encoded(payload: bytes) -> bytes:
    """The form a payload is kept in: the gzip object it will be uploaded as."""
    return gzip_body(payload)


def payload_of(kept: bytes) -> bytes:
    """The payload of a kept body (gzip, or a payload kept by an earlier sm). A damaged gzip
    body comes back as it is: its hash then fails the check against the one taken at
    ingest, and that message alone is not uploaded."""
    if kept[:2] != GZIP_HEADER[:2]:
        return kept
    try:
        return zlib.decompress(kept, wbits=31)
    except zlib.error:
        return kept


def object_of(kept: bytes) -> bytes | None:
    """The object bytes of a kept body made by `encoded` (None for an older plain one)."""
    return kept if kept[:10] == GZIP_HEADER else None


def put(conn: sqlite3.Connection, row_id: int, payload: bytes) -> None:
    """Keep (or replace) the body of message row `row_id` (`payload` in its kept form,
    `encoded`)."""
    conn.execute('INSERT INTO "message_bodies" ("id", "payload") VALUES (?, ?)'
                 ' ON CONFLICT ("id") DO UPDATE SET "payload" = excluded."payload"',
                 (row_id, payload))


def put_many(conn: sqlite3.Connection, bodies: Iterable[tuple[int, bytes]]) -> None:
    """Keep the bodies of rows just inserted (in their kept form, `encoded`)."""
    conn.executemany('INSERT INTO "message_bodies" ("id", "payload") VALUES (?, ?)', bodies)


def drop_many(conn: sqlite3.Connection, row_ids: list[int]) -> None:
    """The bodies of `row_ids` are no longer needed (stored): one statement."""
    conn.execute(f'DELETE FROM "message_bodies" WHERE "id" IN ({",".join("?" * len(row_ids))})',
                 row_ids)


def drop(conn: sqlite3.Connection, row_id: int) -> None:
    """The body of `row_id` is no longer needed (stored, or discarded for good)."""
    conn.execute('DELETE FROM "message_bodies" WHERE "id" = ?', (row_id,))


