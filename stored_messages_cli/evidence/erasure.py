"""`sm forget`: erasure that coexists with WORM (SPEC 9.5).

The bucket's objects cannot be deleted (retention, create-only), so a recipient is erased
by destroying the data keys its messages are sealed with (`spool/recipient_keys.py`):
afterwards no key sm holds opens them, while every byte in the bucket stays as it was, so
`sm audit` stays clean and `sm prove` still proves each object was archived.

Which keys: those of every recipient hash the identifier may have been stored under (each
normalisation, hashed the project's way), and those of the recipient of every indexed
message where the identifier appears (a message to `ann@example.com` that also names
user id `u-1` is erased by `sm forget --recipient u-1`).

The log records it: one entry per erased message, `"outcome": "erased"`, with the stored
object's key and payload hash and the reason, in the open segment of the project's log
(sealed by the next seal: `sm run`, or `sm manifest seal` now).

It refuses while a legal hold covers the recipient (`holds_covering`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import SmError
from ..investigate.index import ArchiveIndex, FindQuery
from ..message import recipient_hash_candidates
from ..message.recipients import Digest
from ..spool import Spool
from ..spool.sealing import RecipientKeys
from ..states import ERASED_OUTCOME
from .holds import cases_covering_recipient

ERASED = ERASED_OUTCOME  # the log outcome (states.ENTRY_OUTCOMES)
CLOCK_SLACK = 300.0  # seconds: clocks of a fleet's machines may differ this much


class RecipientHeld(SmError):
    """A legal hold covers the recipient: erasure is refused."""

    def __init__(self, message: str, *, cases: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.cases = cases


class NotEncrypted(SmError):
    """The project does not encrypt per recipient: there are no keys to destroy."""


@dataclass
class Erasure:
    """What `sm forget` did."""

    project_id: str
    erased_at: float
    reason: str
    keys: list[str] = field(default_factory=list)  # the destroyed keys' ids
    messages: list[str] = field(default_factory=list)  # the indexed messages now unreadable

    def as_dict(self) -> dict[str, Any]:
        """The `sm forget --json` document."""
        from datetime import UTC, datetime

        from ..message import format_utc  # the same text as every other time sm prints

        return {"project_id": self.project_id, "reason": self.reason,
                "erased_at": format_utc(datetime.fromtimestamp(self.erased_at, UTC)),
                "keys_destroyed": len(self.keys), "messages": sorted(self.messages)}


def holds_covering(spool: Spool, project_id: str, recipient: str, *,
                   region: str | None = None, digests: Sequence[Digest] = ()) -> list[str]:
    """The open legal hold cases that cover `recipient` in `project_id` (empty: none): the
    holds ledger's `cases_covering_recipient`, with the project's keyed hash (`digests`)."""
    return cases_covering_recipient(spool, project_id, recipient, region, digests)


def forget(spool: Spool, keys: RecipientKeys, project_id: str, recipient: str, reason: str,
           *, region: str | None = None) -> Erasure:
    """Destroy the data keys of `recipient` in `project_id` and log the erasure.

    RecipientHeld when a hold covers the recipient; NotEncrypted when the project does not
    encrypt per recipient (nothing would become unreadable).
    """
    cases = holds_covering(spool, project_id, recipient, region=region,
                           digests=(keys.digest_of(project_id),))
    if cases:
        raise RecipientHeld(
            f"a legal hold covers this recipient of project {project_id}"
            f" (case {', '.join(cases)}); nothing was erased", cases=cases,
            hint="release the hold first (sm hold release CASE), then sm forget again")
    protection = keys.protection(project_id)
    if protection is None or protection.wrapper is None:
        raise NotEncrypted(
            f"project {project_id} does not encrypt per recipient: sm forget cannot make its"
            " messages unreadable", hint=f"set encryption = \"per-recipient\" for project"
            f" {project_id} (docs/privacy.md); messages stored before stay readable")
    if not reason.strip():
        raise SmError("--reason must say why (it goes into the log)",
                      hint="sm forget --project ID --recipient ADDRESS --reason \"GDPR art. 17"
                           " request 2026-118\"")
    digest = keys.digest_of(project_id)
    candidates = recipient_hash_candidates(recipient, region, digest)
    entries = ArchiveIndex.of(spool).find(FindQuery(
        recipient_hashes=tuple(candidates), project_id=project_id, limit=None)).entries
    recipients = sorted({*candidates, *(e.recipient_hash for e in entries
                                        if e.recipient_hash)})
    now = spool.clock.now()
    store = spool.store
    with store.write():
        erased = store.erase_recipient_keys(project_id, recipients, reason, now)
        made = {key.recipient: key.created_at for key in erased}
        # the messages sealed under a key destroyed now: stored after it was made
        logged = [entry for entry in entries if entry.recipient_hash in made
                  and (entry.stored_at is None or entry.stored_at >= made[
                      entry.recipient_hash] - CLOCK_SLACK)]
        for entry in logged:
            store.add_erased_entry(_entry_values(entry, reason, now))
    store.after_erasure()
    keys.forget_cached()
    return Erasure(project_id, now, reason, [key.kid for key in erased],
                   [entry.message_id for entry in logged])


def _entry_values(entry: Any, reason: str, now: float) -> tuple[Any, ...]:
    """The `ERASED_COLUMNS` values of an erased message's log entry."""
    return (entry.project_id, 0, entry.message_id, ERASED, entry.key, entry.key,
            entry.payload_sha256, None, None, entry.medium or "", entry.message_type or "",
            entry.campaign_id, entry.sent_at, entry.recipient_hash or "",
            json.dumps({"recipient": entry.recipient_hash}, separators=(",", ":")), now,
            reason[:500])
