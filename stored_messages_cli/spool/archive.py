"""The archive index on disk: a lean row per stored message, read through the `archive_index` view.

Migration step 7 (issue: "the spool stays small"). What an investigation or an audit needs of
a stored message stays for good, so it is kept in as few bytes as it takes:

- `archive_entries`: one row per stored message. Hashes are 32-byte BLOBs, not 64 hex
  characters; the key is NULL when it is the SPEC 3 layout key under its location's prefix (it
  is then rebuilt by the view); the destination URL and key prefix live once in
  `archive_locations`. A hash that is not lowercase hex (a bucket's odd key) stays text in
  SQLite (told apart by its type); PostgreSQL's BYTEA column holds its UTF-8 bytes, with a
  zero byte added when they are 32 long, so that it is never read back as a hash.
- `archive_recipients`: the recipient's other identifiers' hashes (the key's own is in the
  entry row), one `(hash, entry)` pair each.
- `archive_index`: a view giving readers the columns they always had (hex hashes, the full
  key, the destination URL), so `sm find`, `fetch`, audits and metrics read it unchanged.

Writers (the settle of a stored message, `sm index rebuild`, remote finds) go through
`index_entries`, in the caller's transaction, with the store's `IndexWriter`
(`sqlite/index_writer.py`'s `SqliteIndex`, `postgres/index.py`'s `PgIndex`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..message import object_key
from ..states import State
from .dialect import chunks


@dataclass(frozen=True, slots=True)
class EntryRow:
    """One stored message to index, as its writers know it (hex hashes, full key)."""

    project_id: str
    message_id: str
    medium: str | None
    message_type: str | None
    campaign_id: str | None
    recipient_hash: str | None
    sent_at: str | None
    key: str
    payload_sha256: str | None
    version_id: str | None
    destination_url: str | None
    stored_at: float | None
    recipient_hashes: Sequence[str] = ()


def entry_row(values: Sequence[Any], hashes: Sequence[str] = ()) -> EntryRow:
    """An EntryRow from the 12 values in `archive_index`'s column order."""
    (project_id, message_id, medium, message_type, campaign_id, recipient_hash, sent_at, key,
     payload_sha256, version_id, destination_url, stored_at) = values[:12]
    return EntryRow(project_id, message_id, medium, message_type, campaign_id, recipient_hash,
                    sent_at, key, payload_sha256, version_id, destination_url, stored_at,
                    tuple(hashes))


def packed(value: str | None, *, text_as_bytes: bool = False) -> bytes | str | None:
    """A lowercase hex SHA-256 as its 32 bytes; anything else (None, odd text) as it is, or
    with `text_as_bytes` (a BYTEA column: PostgreSQL) as UTF-8 bytes that are never 32 long."""
    if value is None:
        return None
    if len(value) == 64 and value == value.lower():
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    if not text_as_bytes:
        return value
    encoded = value.encode("utf-8")
    return encoded + b"\0" if len(encoded) == 32 else encoded


def unpacked(value: bytes | str | None) -> str | None:
    """The text of what `packed` stored (SQLite's column types)."""
    return value.hex() if isinstance(value, bytes) else value


def _split_key(row: EntryRow) -> tuple[str, str | None]:
    """(key prefix, key or None when the key is the layout key under that prefix)."""
    rhash = row.recipient_hash
    if (row.medium is None or row.project_id is None or rhash is None
            or not isinstance(packed(rhash), bytes)):
        return "", row.key
    layout = object_key(row.medium, row.project_id, rhash, row.campaign_id, row.message_id)
    if row.key.endswith(layout):
        return row.key[: -len(layout)], None
    return "", row.key


class IndexWriter(Protocol):
    """The statements `write_entries` needs, in one database's SQL (the caller's transaction).
    `sqlite.index_writer.SqliteIndex`; `postgres.index.PgIndex` for PostgreSQL."""

    text_as_bytes: bool  # odd (non-hex) hashes are stored as bytes (PostgreSQL's BYTEA)

    def location_id(self, url: str | None, prefix: str) -> int:
        """The `archive_locations` row of a destination URL and key prefix (made if new)."""
        ...

    def indexed(self, project_id: str, message_ids: Sequence[str]) -> list[tuple[int, str]]:
        """`(entry, message_id)` of those of a project's messages already indexed."""
        ...

    def entry_of(self, project_id: str, message_id: str) -> int | None:
        """The entry of one message, if indexed."""
        ...

    def key_of(self, entry: int) -> str:
        """The full key an entry gives (as the `archive_index` view reads it)."""
        ...

    def insert(self, values: Sequence[tuple[Any, ...]]) -> None:
        """Insert entries (`_ENTRY_COLUMNS` values each)."""
        ...

    def insert_one(self, values: tuple[Any, ...]) -> int:
        """Insert one entry; its id."""
        ...

    def replace(self, entry: int, values: tuple[Any, ...]) -> None:
        """Overwrite an entry and forget its identifier hashes."""
        ...

    def add_hashes(self, entry: int, hashes: Sequence[bytes | str | None]) -> None:
        """Add identifier hashes (packed) to an entry (those it has are kept)."""
        ...


def index_entries(index: IndexWriter, rows: Iterable[EntryRow], *,
                  replace: str = "always") -> int:
    """Index `rows` in the caller's transaction; returns how many rows were written.

    `replace="always"`: a message already indexed is overwritten (the spool's own settle);
    `"other_key"`: only when the new key differs (what the bucket says replaces an old row,
    an identical one is kept as written at settle). A replaced row's identifier hashes are
    replaced with it.
    """
    rows = list(rows)
    locations: dict[tuple[str | None, str], int] = {}
    as_bytes = index.text_as_bytes
    # Which messages are indexed already: one read per project and slice, not one per row
    # (on a shared PostgreSQL spool each statement is a round trip under the write lock).
    keys = [(row.project_id, row.message_id) for row in rows]
    indexed = _indexed_entries(index, keys) if len(set(keys)) == len(keys) else None
    plain: list[tuple[Any, ...]] = []  # new rows with no other identifier: inserted together

    def flush() -> None:
        if plain:
            index.insert(plain)
            plain.clear()

    written = 0
    for row in rows:
        prefix, key = _split_key(row)
        where = (row.destination_url, prefix)
        if where not in locations:
            locations[where] = index.location_id(*where)
        if indexed is not None:
            old = indexed.get((row.project_id, row.message_id))
        else:  # the same message twice in one call: each sees the one before
            flush()
            old = index.entry_of(row.project_id, row.message_id)
        others = [packed(h, text_as_bytes=as_bytes) for h in
                  sorted({h for h in row.recipient_hashes if h and h != row.recipient_hash})]
        if old is not None and replace == "other_key" and index.key_of(old) == row.key:
            index.add_hashes(old, others)  # the same object: only learn identifiers
            continue
        values = (row.project_id, row.message_id, row.medium, row.message_type,
                  row.campaign_id, packed(row.recipient_hash, text_as_bytes=as_bytes),
                  row.sent_at, key, packed(row.payload_sha256, text_as_bytes=as_bytes),
                  row.version_id, locations[where], row.stored_at)
        written += 1
        if old is None and not others:
            plain.append(values)
            continue
        flush()  # entries keep the order of `rows`
        if old is None:
            entry = index.insert_one(values)
        else:
            entry = old
            index.replace(entry, values)
        index.add_hashes(entry, others)
    flush()
    return written


def _indexed_entries(index: IndexWriter, keys: Sequence[tuple[str, str]]
                     ) -> dict[tuple[str, str], int]:
    """The `archive_entries` id of each (project, message) of `keys` already indexed."""
    by_project: dict[str, list[str]] = {}
    for project_id, message_id in keys:
        by_project.setdefault(project_id, []).append(message_id)
    found: dict[tuple[str, str], int] = {}
    for project_id, message_ids in by_project.items():
        for chunk in chunks(message_ids):
            found.update(((project_id, message_id), entry)
                         for entry, message_id in index.indexed(project_id, chunk))
    return found


CONTENT_PREFIX_BYTES = 8  # of a content SHA-256 kept by prune (see `kept_identities`)


def content_prefix(content_sha256: str) -> str:
    """The part of a content hash (hex) an index entry keeps once prune deleted the row."""
    return content_sha256[: 2 * CONTENT_PREFIX_BYTES]


def kept_identities(deleted: Iterable[Sequence[Any]], *, text_as_bytes: bool = False
                    ) -> list[tuple[Any, ...]]:
    """For the stored ones of the message rows prune deleted (`state, project_id,
    message_id, content_sha256, payload_sha256` each): `(content prefix, message_id,
    project_id, payload hash)` to keep on the entry of the same payload. With the entry's
    payload hash and key it is the message's identity after the prune (`identity.py`).

    Eight bytes of the content hash, not 32: they only tell whether an unconfirmed copy
    recorded again is the same message (a duplicate) or not (a conflict), and such a copy
    is never archived; what reaches the bucket is compared by the full payload hash."""
    kept = []
    for state, project_id, message_id, content, payload in deleted:
        if state != State.STORED or content is None or payload is None:
            continue
        try:
            prefix = bytes.fromhex(content_prefix(content))
        except ValueError:
            continue  # not a hash this sm wrote: the entry keeps none
        kept.append((prefix, message_id, project_id,
                     packed(payload, text_as_bytes=text_as_bytes)))
    return kept


MESSAGE_ENTRY_COLUMNS = (
    '"project_id", "message_id", "medium", "message_type", "campaign_id", "recipient_hash",'
    ' "sent_at", "stored_key", "payload_sha256", "version_id", "destination_url",'
    ' "stored_at", "recipient_hashes"')


def message_entry(row: Sequence[Any]) -> EntryRow:
    """The EntryRow of a stored message, from its `MESSAGE_ENTRY_COLUMNS` in `messages`."""
    try:
        hashes = list(json.loads(row[12]).values()) if row[12] else []
    except (ValueError, AttributeError):
        hashes = []
    return entry_row(row, [h for h in hashes if isinstance(h, str)])
