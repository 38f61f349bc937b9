"""What intake and readers do with recipient data keys (SPEC 9.5): `RecipientKeys`.

Intake seals each message of an encrypted project under its recipient's data key (`protect`)
and hashes identities the project's way; readers open envelopes by key id (`key_for`). The
keys themselves are rows of `recipient_keys` (`recipient_keys.py`, the store's verbs).

Keys are made inside the caller's write transaction (intake's) and cached; a cached key is
checked in the transaction that uses it (one primary-key read): a transaction that rolled
back took its key with it, and a key `sm forget` destroyed (in any process) is never used
again, so no message is ever sealed under a key the spool does not hold. A batch
(`protect_many`, one write transaction) looks up the live keys of all its recipients in one
query per project and checks each cached key against them once: write transactions exclude
each other (SQLite's write lock, PostgreSQL's advisory write lock), so `sm forget` cannot
erase a key between that lookup and the batch's COMMIT.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ..config.privacy import KeyUnavailable, KeyWrapper, Protection
from ..config.privacy_choices import HMAC_SHA256
from ..errors import MessageConflict
from ..message import (
    Message,
    gzip_member,
    identifier_hashes_json,
    search_hashes,
    sha256_hex,
)
from ..message.envelope import DataKey, looks_sealed, parse_envelope
from ..message.recipients import Digest
from ..message.validate import sealed_as
from .recipient_keys import KEYS_BACKED_UP, Erased, RecipientKey
from .store import SpoolStore

ProtectionLookup = Callable[[str], Protection | None]


def wrap_context(kid: str, project_id: str) -> bytes:
    """What a wrapped key is bound to: its id and its project."""
    return b"sm-recipient-key-v1\x00" + kid.encode("ascii") + b"\x00" + project_id.encode()


class RecipientKeys:
    """Data keys of the spool's recipients: made, cached, opened, for intake and readers."""

    def __init__(self, store: SpoolStore, protection_for: ProtectionLookup) -> None:
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

    def seals(self, project_id: str) -> bool:
        """True when the project's objects are sealed (`protect` makes them): validation
        then makes no plain gzip object for its messages. Never raises: a project whose
        settings do not load here fails in `protect`, in the transaction, as before."""
        try:
            return self.sealing(project_id)
        except Exception:  # noqa: BLE001 - reported by `protect`, where it always was
            return False

    def sealing(self, project_id: str) -> bool:
        """True when the project's objects are sealed; raises when its settings do not load
        (a caller that would otherwise store plaintext must not guess)."""
        protection = self._protection_for(project_id)
        return protection is not None and protection.wrapper is not None

    def protect(self, msg: Message, region: Callable[[], str | None] | None = None
                ) -> Message:
        """`msg` as its project stores it: with the keyed recipient hashes and, when
        encrypted, its object sealed (the envelope is then the payload every stored-bytes
        check hashes). Inside the caller's write transaction (a new key is inserted). `region`
        gives `default_phone_region` (read only for a keyed project)."""
        return self.protect_many([msg], region)[0]

    def protect_many(self, msgs: Sequence[Message],
                     region: Callable[[], str | None] | None = None) -> list[Message]:
        """`protect` of each message, in the caller's one write transaction: the batch's
        keys looked up together (`batch_keys`). The envelopes are compressed on this thread:
        two threads (`gzip_bodies`) took ~30% less time but 4-10 µs more CPU an envelope
        here (base64 deflates slowly; docs/performance.md), and CPU is issue 28's budget."""
        done = list(msgs)
        sealing: list[tuple[int, tuple[str, str]]] = []
        wrappers: dict[tuple[str, str], KeyWrapper] = {}
        for index, msg in enumerate(done):
            protection = self._protection_for(msg.project_id)
            if protection is None or protection.plain:
                continue
            if protection.recipient_hash == HMAC_SHA256:
                hashes = search_hashes(msg.document["recipient"], region() if region else None,
                                       protection.digest)
                msg = done[index] = replace(msg, recipient_hash=next(iter(hashes.values())),
                                            recipient_hashes=identifier_hashes_json(hashes))
            if protection.wrapper is not None:
                sealing.append((index, (msg.project_id, msg.recipient_hash)))
                wrappers[(msg.project_id, msg.recipient_hash)] = protection.wrapper
        if not sealing:
            return done
        keys = self.batch_keys(wrappers)
        envelopes = [keys[whose].seal(done[index].payload_bytes, done[index].key,
                                      done[index].payload_sha) for index, whose in sealing]
        for (index, _), envelope in zip(sealing, envelopes, strict=True):
            done[index] = sealed_as(done[index], sha256_hex(envelope), gzip_member(envelope))
        return done

    def batch_keys(self, wanted: dict[tuple[str, str], KeyWrapper]
                   ) -> dict[tuple[str, str], DataKey]:
        """The live data key of each (project, recipient) in `wanted`, in the caller's write
        transaction, as `data_key` gives it: one lookup per project for all of them. A
        cached key is used only when it is still the recipient's live key in this
        transaction (not erased by `sm forget` in any process, not rolled back); write
        transactions exclude each other, so it stays so until this one commits."""
        recipients: dict[str, list[str]] = {}
        for project_id, recipient in wanted:
            recipients.setdefault(project_id, []).append(recipient)
        keys: dict[tuple[str, str], DataKey] = {}
        made: list[tuple[RecipientKey, bytes]] = []  # new keys: the row and the secret
        for project_id, some in recipients.items():
            live = {row.recipient: row
                    for row in self.store.live_recipient_keys(project_id, some)}
            for recipient in some:
                whose = (project_id, recipient)
                row, cached = live.get(recipient), self._live.get(whose)
                if row is None:
                    made.append(self._new_key(project_id, recipient, wanted[whose]))
                    continue
                if cached is None or cached.kid != row.kid:
                    cached = self._live[whose] = self._unwrapped(row, wanted[whose])
                keys[whose] = cached
        inserted = self.store.add_recipient_keys([row for row, _ in made]) if made else set()
        for row, secret in made:
            whose = (row.project_id, row.recipient)
            if row.kid in inserted:
                keys[whose] = self._live[whose] = DataKey(row.kid, secret)
            else:  # another process committed one first
                keys[whose] = self._made_or_read(row.project_id, row.recipient,
                                                 wanted[whose])
        return keys

    def _new_key(self, project_id: str, recipient: str, wrapper: KeyWrapper
                 ) -> tuple[RecipientKey, bytes]:
        """A new random data key for the recipient: its row (wrapped) and its secret."""
        kid = secrets.token_hex(16)
        secret = secrets.token_bytes(32)
        return RecipientKey(kid, project_id, recipient,
                            wrapper.wrap(secret, wrap_context(kid, project_id)), wrapper.name,
                            self.store.clock.now()), secret
    def reopened(self, project_id: str, message_id: str, kept_payload: bytes) -> bytes:
        """The payload of a kept body: itself, or what its envelope seals (a late `sent`
        confirmation renders the message again)."""
        if not looks_sealed(kept_payload):
            return kept_payload
        where = self.store.sealed_as(project_id, message_id)
        if where is None:
            raise KeyUnavailable(f"message {message_id} of project {project_id} has no row")
        envelope = parse_envelope(kept_payload)
        try:
            return self.key_for(envelope.kid, f"message {message_id}").open(envelope, where[0])
        except KeyUnavailable as exc:  # erased while it awaited its confirmation
            raise MessageConflict(f"{exc}; it cannot be confirmed now") from None

    def resealed(self, project_id: str, message_id: str, payload: bytes) -> bytes:
        """`payload` sealed as the message's project stores it (unchanged when the project
        is not encrypted)."""
        protection = self._protection_for(project_id)
        where = self.store.sealed_as(project_id, message_id)
        if protection is None or protection.wrapper is None or where is None:
            return payload
        return self.data_key(project_id, where[1], protection.wrapper).seal(payload, where[0])

    def seal_evidence(self, project_id: str, recipient: str, relative_key: str,
                      payload: bytes) -> bytes:
        """An evidence object's payload (provider events hold addresses) sealed under its
        message's recipient key, bound to the evidence object's own key (without the
        destination prefix); unchanged when the project is not encrypted. Inside a write
        transaction, as `protect`. Readers open it as any object (`investigate.sealed`)."""
        protection = self._protection_for(project_id)
        if protection is None or protection.wrapper is None:
            return payload
        return self.data_key(project_id, recipient, protection.wrapper).seal(payload,
                                                                             relative_key)

    def data_key(self, project_id: str, recipient: str, wrapper: KeyWrapper) -> DataKey:
        """The recipient's live data key, made (and inserted, in the caller's transaction)
        when it has none."""
        cached = self._live.get((project_id, recipient))
        # A cached key is checked in this transaction before it is used: still there (its
        # transaction may have rolled back since) and not erased (by `sm forget`, maybe in
        # another process). One primary-key read.
        if cached is not None and self.store.recipient_key_live(cached.kid):
            return cached
        return self._made_or_read(project_id, recipient, wrapper)

    def _made_or_read(self, project_id: str, recipient: str, wrapper: KeyWrapper) -> DataKey:
        """The recipient's live key read from the spool, or a new one inserted."""
        row = self.store.live_recipient_key(project_id, recipient)
        if row is None:
            new, secret = self._new_key(project_id, recipient, wrapper)
            if self.store.add_recipient_key(new):
                key = DataKey(new.kid, secret)
                self._live[(project_id, recipient)] = key
                return key
            row = self.store.live_recipient_key(project_id, recipient)
            assert row is not None  # another process committed one first
        key = self._unwrapped(row, wrapper)
        self._live[(project_id, recipient)] = key
        return key

    # ------------------------------------------------------------------------ readers

    def key_for(self, kid: str, what: str) -> DataKey:
        """The data key `kid` to open `what` with; Erased, or KeyUnavailable naming why."""
        cached = self._by_kid.get(kid)
        if cached is not None and self.store.recipient_key_live(kid):  # erased since?
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
    if moment is None:
        return "an unknown date"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# `sm status` warns when keys exist and no `sm spool backup` holding them is newer than this.
KEYS_BACKUP_MAX_AGE = 7 * 86400.0


def note_keys_backed_up(store: SpoolStore, now: float) -> None:
    """A backup of the spool (with its wrapped keys) was just made (`sm spool backup`)."""
    with store.write():
        store.set_spool_meta_value(KEYS_BACKED_UP, repr(now))


def keys_backup_status(store: SpoolStore, now: float, *, postgres: bool) -> dict[str, Any]:
    """`sm status`'s `recipient_keys`: live and erased keys, the newest key, the last
    `sm spool backup` that held them, and whether that is older than a week (`stale`; a
    PostgreSQL spool is backed up with its database, which sm cannot see: never stale)."""
    live, erased, newest = store.recipient_key_counts()
    stamp = store.spool_meta_value(KEYS_BACKED_UP)
    try:
        backed_up = None if stamp is None else float(stamp)
    except ValueError:
        backed_up = None
    stale = not postgres and live > 0 and (
        backed_up is None or now - backed_up > KEYS_BACKUP_MAX_AGE)
    return {"live": live, "erased": erased, "newest_at": _rfc3339(newest),
            "last_backup_at": _rfc3339(backed_up), "backup_stale": bool(stale)}


def keys_backup_problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """`sm status --check`'s problem when recipient keys have no recent backup."""
    keys = doc.get("recipient_keys") or {}
    if not keys.get("backup_stale"):
        return []
    when = keys.get("last_backup_at") or "never"
    return [("recipient_keys_not_backed_up",
             f"{keys.get('live')} recipient data key(s) are only in the spool (last backup:"
             f" {when}); losing the spool loses those messages for good: sm spool backup FILE")]


def _rfc3339(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
