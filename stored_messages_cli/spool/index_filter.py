"""What the archive index can be asked (`IndexFilter`), as a condition in either dialect.

Both stores build `sm find`'s condition here, each with its own placeholder (`?` for SQLite,
`%s` for PostgreSQL) and its own spelling of odd hashes (`archive.packed`); the rest of the
condition is SQL both databases read alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..message import UNASSOCIATED
from .archive import packed

# The columns of one indexed message, in the order lookups return them.
INDEX_COLUMNS: tuple[str, ...] = (
    "project_id", "message_id", "medium", "message_type", "campaign_id", "recipient_hash",
    "sent_at", "key", "payload_sha256", "version_id", "destination_url", "stored_at",
)
# The fraction of a second of a stored `sent_at` (`…:SS.ffffffZ` or `…:SSZ`), as a number.
_SQL_FRACTION = "CAST('0' || rtrim(substr(sent_at, 20), 'Z') AS REAL)"

# One message learnt from the bucket: its values in INDEX_COLUMNS order (stored_at may be
# None: now), and the hashes of its recipient's identifiers.
LearntEntry = tuple[Sequence[Any], Sequence[str]]


def recipient_condition(hashes: Sequence[str], *, mark: str = "?", text_as_bytes: bool = False
                        ) -> tuple[str, list[bytes | str | None]]:
    """SQL on `archive_index` matching entries any of whose identifiers has one of `hashes`
    (`text_as_bytes`: as `packed` wrote them on this backend; `mark`: the placeholder)."""
    values = [packed(h, text_as_bytes=text_as_bytes) for h in hashes]
    marks = ",".join([mark] * len(values))
    return (f'"entry" IN (SELECT "id" FROM "archive_entries" WHERE "recipient_hash" IN ({marks})'
            f' UNION SELECT "entry" FROM "archive_recipient_hashes" WHERE "recipient_hash"'
            f" IN ({marks}))"), values + values


@dataclass(frozen=True)
class IndexFilter:
    """What the index can be asked; every given filter must match (AND).

    `recipient_hashes`: a message matches when any identifier of its recipient has one of
    them. `campaign_id="unassociated"` means no campaign (the key's `unassociated` folder,
    which a campaign literally named so shares).
    """

    recipient_hashes: tuple[str, ...] = ()
    message_id: str | None = None
    campaign_id: str | None = None
    project_id: str | None = None
    medium: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self, *, mark: str = "?", text_as_bytes: bool = False) -> tuple[str, list[Any]]:
        """The SQL condition and parameters for these filters (`mark`: the dialect's
        placeholder; `text_as_bytes`: the index's hash columns hold odd text as bytes, see
        `spool.archive.packed`)."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.recipient_hashes:
            condition, values = recipient_condition(self.recipient_hashes, mark=mark,
                                                    text_as_bytes=text_as_bytes)
            clauses.append(condition)
            params.extend(values)
        if self.campaign_id == UNASSOCIATED:
            clauses.append(f"(campaign_id IS NULL OR campaign_id = {mark})")
            params.append(UNASSOCIATED)
        for column, wanted in (("message_id", self.message_id),
                               ("campaign_id", None if self.campaign_id == UNASSOCIATED
                                else self.campaign_id),
                               ("project_id", self.project_id), ("medium", self.medium)):
            if wanted is not None:
                clauses.append(f"{column} = {mark}")
                params.append(wanted)
        # sent_at is text; `…:00.5Z` sorts before `…:00Z`, so the second is compared as text
        # (which the sent_at indexes serve) and its fraction as a number.
        if self.since is not None:
            second, fraction = _split_second(self.since)
            clauses.append(f"sent_at >= {mark} AND (substr(sent_at, 1, 19) > {mark}"
                           f" OR {_SQL_FRACTION} >= {mark})")
            params.extend([second, second, fraction])
        if self.until is not None:
            second, fraction = _split_second(self.until)
            clauses.append(f"sent_at <= {mark} AND (substr(sent_at, 1, 19) < {mark}"
                           f" OR {_SQL_FRACTION} <= {mark})")
            params.extend([second + "Z", second, fraction])
        return (" AND ".join(clauses) or "1 = 1"), params


def _split_second(moment: datetime) -> tuple[str, float]:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S"), utc.microsecond / 1_000_000
