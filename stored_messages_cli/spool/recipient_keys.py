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

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..config.privacy import KeyUnavailable, KeyWrapper, Protection
from ..config.privacy_choices import HMAC_SHA256
from ..message import Message, gzip_member, identifier_hashes_json, search_hashes, sha256_hex
from ..message.envelope import DataKey, looks_sealed, parse_envelope
from ..message.recipients import Digest

# A key read back this long (seconds) after it was made is surely committed: cached.
SETTLED_AFTER = 300.0
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

    def add_recipient_key(self, key: RecipientKey) -> None:
        """Insert `key` unless the recipient has a live key already (then nothing)."""
        ...

    def live_recipient_key(self, project_id: str, recipient: str) -> RecipientKey | None:
        """The recipient's key not erased, if any."""
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


ProtectionLookup = Callable[[str], Protection | None]


def wrap_context(kid: str, project_id: str) -> bytes:
    """What a wrapped key is bound to: its id and its project."""
    return b"sm-recipient-key-v1\x00" + kid.encode("ascii") + b"\x00" + project_id.encode()


class RecipientKeys:
    """Data keys of the spool's recipients: made, cached, opened, for intake and readers."""

    def __init__(self, store: Any, protection_for: ProtectionLookup) -> None:
        self.store = store
        self._protection_for = protection_for
        self._live: dict[tuple[str, str], DataKey] = {}
        self._by_kid: dict[str, DataKey] = {}
        self._digests: dict[str, tuple[Protection | None, Digest]] = {}

    def protection(self, project_id: str) -> Protection | None:
        """The project's settings (None: the defaults, nothing to do)."""
        return self._protection_for(project_id)

    def digest_of(self, project_id: str) -> Digest:
        """The project's identity hash (SHA-256 unless it uses a keyed one)."""
        protection = self._protection_for(project_id)
        known = self._digests.get(project_id)
        if known is None or known[0] is not protection:
            known = (protection, sha256_hex if protection is None else protection.digest)
            self._digests[project_id] = known
        return known[1]

    # ------------------------------------------------------------------------ intake

    def protect(self, msg: Message, region: str | None = None) -> Message:
        """`msg` as its project stores it: with the keyed recipient hashes and, when
        encrypted, its object sealed (the envelope is then the payload every stored-bytes
        check hashes). Inside the caller's write transaction (a new key is inserted)."""
        protection = self._protection_for(msg.project_id)
        if protection is None or protection.plain:
            return msg
        if protection.recipient_hash == HMAC_SHA256:
            hashes = search_hashes(msg.document["recipient"], region, self.digest_of(
                msg.project_id))
            msg = replace(msg, recipient_hash=next(iter(hashes.values())),
                          recipient_hashes=identifier_hashes_json(hashes))
        if protection.wrapper is None:
            return msg
        envelope = self.data_key(msg.project_id, msg.recipient_hash, protection.wrapper).seal(
            msg.payload_bytes, msg.key, msg.payload_sha)
        return replace(msg, payload_sha=sha256_hex(envelope),
                       object_bytes=gzip_member(envelope))

    def reopened(self, project_id: str, message_id: str, kept_payload: bytes) -> bytes:
        """The payload of a kept body: itself, or what its envelope seals (a late `sent`
        confirmation renders the message again)."""
        if not looks_sealed(kept_payload):
            return kept_payload
        where = self.store.sealed_as(project_id, message_id)
        if where is None:
            raise KeyUnavailable(f"message {message_id} of project {project_id} has no row")
        envelope = parse_envelope(kept_payload)
        return self.key_for(envelope.kid, f"message {message_id}").open(envelope, where[0])

    def resealed(self, project_id: str, message_id: str, payload: bytes) -> bytes:
        """`payload` sealed as the message's project stores it (unchanged when the project
        is not encrypted)."""
        protection = self._protection_for(project_id)
        where = self.store.sealed_as(project_id, message_id)
        if protection is None or protection.wrapper is None or where is None:
            return payload
        return self.data_key(project_id, where[1], protection.wrapper).seal(payload, where[0])

    def data_key(self, project_id: str, recipient: str, wrapper: KeyWrapper) -> DataKey:
        """The recipient's live data key, made (and inserted, in the caller's transaction)
        when it has none."""
        cached = self._live.get((project_id, recipient))
        if cached is not None:
            return cached
        row = self.store.live_recipient_key(project_id, recipient)
        if row is None:
            kid = secrets.token_hex(16)
            secret = secrets.token_bytes(32)
            self.store.add_recipient_key(RecipientKey(
                kid, project_id, recipient, wrapper.wrap(secret, wrap_context(kid, project_id)),
                wrapper.name, self.store.clock.now()))
            row = self.store.live_recipient_key(project_id, recipient)
            assert row is not None  # ours, or one another process committed first
        key = self._unwrapped(row, wrapper)
        if row.created_at <= self.store.clock.now() - SETTLED_AFTER:
            self._live[(project_id, recipient)] = key
        return key

    # ------------------------------------------------------------------------ readers

    def key_for(self, kid: str, what: str) -> DataKey:
        """The data key `kid` to open `what` with; Erased, or KeyUnavailable naming why."""
        cached = self._by_kid.get(kid)
        if cached is not None:
            return cached
        row = self.store.recipient_key(kid)
        if row is None:
            raise KeyUnavailable(
                f"{what} is encrypted with key {kid}, which this spool does not hold",
                hint="read it with the spool that archived it, or one restored from its"
                     " backup (sm spool backup); an investigator's connection can list and"
                     " prove, not read")
        if row.erased_at is not None or row.wrapped is None:
            raise Erased(f"{what} was erased on {_day(row.erased_at)}: its recipient's key"
                         " was destroyed (sm forget)", erased_at=row.erased_at or 0.0,
                         hint="the object is still archived and provable (sm prove), but"
                              " no one can read it")
        protection = self._protection_for(row.project_id)
        if protection is None or protection.wrapper is None:
            raise KeyUnavailable(
                f"{what} is encrypted, and project {row.project_id} has no master_key_file"
                " or kms_key_id configured here to unwrap its key",
                hint=f"set encryption, master_key_file or kms_key_id for project"
                     f" {row.project_id} as on the machine that archived it")
        key = self._unwrapped(row, protection.wrapper)
        self._by_kid[kid] = key
        return key

    def erased_at(self, project_id: str, recipients: Sequence[str]) -> dict[str, float]:
        """recipient → when its key was last erased (those with an erased key)."""
        return self.store.erased_recipients(project_id, list(recipients))

    def _unwrapped(self, row: RecipientKey, wrapper: KeyWrapper) -> DataKey:
        if row.wrapped is None:
            raise Erased(f"the key of this recipient was erased on {_day(row.erased_at)}",
                         erased_at=row.erased_at or 0.0)
        if not row.wrapped_with == wrapper.name:
            raise KeyUnavailable(
                f"key {row.kid} was wrapped with {row.wrapped_with}, but project"
                f" {row.project_id} is set to use {wrapper.name}",
                hint="set master_key_file or kms_key_id back to the one that wrapped the"
                     " keys (docs/privacy.md: rotating keys)")
        return DataKey(row.kid, wrapper.unwrap(row.wrapped, wrap_context(row.kid,
                                                                          row.project_id)))

    def forget_cached(self) -> None:
        """Drop every cached key (after an erasure)."""
        self._live.clear()
        self._by_kid.clear()


def _day(moment: float | None) -> str:
    """A time as its UTC date and time, for "erased on DATE"."""
    from datetime import UTC, datetime

    if moment is None:
        return "an unknown date"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
