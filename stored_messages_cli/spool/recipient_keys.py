"""Recipient data keys in the spool (`recipient_keys`, SPEC 9.5) and what intake does with them.

With `encryption = "per-recipient"` every message is sealed (`message/envelope.py`) under
the data key of its (project, recipient): the recipient being the object key's recipient
hash (SPEC 3, keyed when the project uses `recipient_hash = "hmac-sha256"`). A data key is
32 random bytes made the first time a recipient is seen, stored only wrapped (`KeyWrapper`:
the master key file, or an AWS KMS key) with a random key id (`kid`, in every envelope).

- `recipient_keys`: one row per data key: `kid`, `project_id`, `recipient`, `wrapped`
  (NULL once erased), `wrapped_with` (which master key or KMS key), `created_at`, and, once
  `sm forget` destroyed it, `erased_at` and `erase_reason` (the row stays: readers then say
  "erased on DATE"). At most one live key per (project, recipient): a unique partial index.
- The wrapped key is bound to its row: the wrapper authenticates `kid` and the project, so a
  wrapped key copied onto another row does not unwrap.
- Keys are made inside the caller's write transaction (intake's). A key this process has
  not yet seen committed is never cached: a rolled-back transaction takes its key with it,
  and the next message reads or makes the key again.

Each backend writes the SQL itself (`sqlite/recipient_keys.py`, `postgres/recipient_keys.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..config.privacy import KeyUnavailable

# `spool_meta` name of the last `sm spool backup` that held the keys.
KEYS_BACKED_UP = "recipient_keys_backed_up_at"
# The columns of an erased message's log entry (`add_erased_entry`), in order.
ERASED_COLUMNS = ('"project_id", "message_row", "message_id", "outcome", "stored_key",'
                  ' "relative_key", "payload_sha256", "object_sha256", "size", "medium",'
                  ' "message_type", "campaign_id", "sent_at", "recipient_hash",'
                  ' "recipient_hashes", "settled_at", "reason"')
KEY_COLUMNS = ('"kid", "project_id", "recipient", "wrapped", "wrapped_with", "created_at",'
               ' "erased_at", "erase_reason"')


class Erased(KeyUnavailable):
    """The data key was destroyed by `sm forget`: the message can never be read again."""

    def __init__(self, message: str, *, erased_at: float, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.erased_at = erased_at


@dataclass(frozen=True, slots=True)
class RecipientKey:
    """One `recipient_keys` row."""

    kid: str
    project_id: str
    recipient: str
    wrapped: bytes | None
    wrapped_with: str
    created_at: float
    erased_at: float | None = None
    erase_reason: str | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> RecipientKey:
        """A row of a `KEY_COLUMNS` read, as the driver gave it."""
        kid, project, recipient, wrapped, wrapped_with, created, erased, reason = tuple(row)
        return cls(str(kid), str(project), str(recipient),
                   None if wrapped is None else bytes(wrapped), str(wrapped_with),
                   float(created), None if erased is None else float(erased), reason)


class RecipientKeyStore(Protocol):
    """The verbs of `recipient_keys` (both backends)."""

    def add_recipient_key(self, key: RecipientKey) -> bool:
        """Insert `key` unless the recipient has a live key already (then nothing); True
        when it was inserted."""
        ...

    def add_recipient_keys(self, keys: Sequence[RecipientKey]) -> set[str]:
        """`add_recipient_key` of each key (at most one per recipient): the ids of those
        inserted, in as few statements as the backend allows (a batch's new keys)."""
        ...

    def recipient_key_live(self, kid: str) -> bool:
        """True when key `kid` exists (in this transaction's view) and is not erased."""
        ...

    def live_recipient_key(self, project_id: str, recipient: str) -> RecipientKey | None:
        """The recipient's key not erased, if any."""
        ...

    def live_recipient_keys(self, project_id: str, recipients: Sequence[str]
                            ) -> list[RecipientKey]:
        """The keys not erased of those of `recipients` that have one (a batch's lookup)."""
        ...

    def recipient_key(self, kid: str) -> RecipientKey | None:
        """The key with id `kid` (erased or not)."""
        ...

    def erase_recipient_keys(self, project_id: str, recipients: Sequence[str], reason: str,
                             now: float) -> list[RecipientKey]:
        """Destroy the live keys of `recipients`: their wrapped bytes overwritten and
        deleted, `erased_at` and `erase_reason` set; the keys as they were (wrapped bytes
        left out)."""
        ...

    def erased_recipients(self, project_id: str, recipients: Sequence[str]
                          ) -> dict[str, float]:
        """recipient → the latest time one of its keys was erased, for those of
        `recipients` that have an erased key."""
        ...

    def recipient_key_counts(self) -> tuple[int, int, float | None]:
        """(live keys, erased keys, when the newest key was made)."""
        ...

    def spool_meta_value(self, name: str) -> str | None:
        """A `spool_meta` value (None when unset)."""
        ...

    def set_spool_meta_value(self, name: str, value: str) -> None:
        """Set a `spool_meta` value."""
        ...

    def add_erased_entry(self, values: Sequence[Any]) -> None:
        """A complete `erased` entry in the project's open manifest segment (its
        `ERASED_COLUMNS` values)."""
        ...

    def sealed_as(self, project_id: str, message_id: str) -> tuple[str, str] | None:
        """(key without prefix, recipient hash) of a message row: what its envelope is
        bound to and whose key sealed it."""
        ...

    def after_erasure(self) -> None:
        """Outside any transaction, after an erasure commits: push freed pages that held
        keys out of the database's journal (SQLite: a truncating WAL checkpoint)."""
        ...
