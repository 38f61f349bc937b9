"""What an audit finds: findings, each project's figures, the whole result (`sm audit --json`).

The data of `sm audit` (SPEC 8), apart from the checks that fill it (`audit`, `audit_chain`,
`audit_bucket`) and the evidence bundle that writes it (`bundle`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..clock import to_rfc3339
from ..destinations.base import ObjectInfo
from ..message import parse_sent_at

FINDING_TYPES = ("missing_object", "altered_object", "unexpected_object", "manifest_missing",
                 "chain_broken", "unaccounted_message", "retention_short",
                 # the signed log (SPEC 9.1)
                 "signature_invalid", "unsigned_segment", "log_truncated", "log_forked",
                 "timestamp_invalid", "duplicate_message",
                 # legal holds (SPEC 9.4)
                 "hold_missing")


class Progress(Protocol):
    """Where a long audit says how far it is (the CLI draws it on a terminal)."""

    def stage(self, text: str, total: int | None = None) -> None:
        """A new step begins; `total` items when known."""

    def advance(self, count: int = 1) -> None:
        """`count` more items of the current step are done."""


class SilentProgress:
    """A Progress that says nothing (an audit run without a terminal)."""

    def stage(self, text: str, total: int | None = None) -> None:
        pass

    def advance(self, count: int = 1) -> None:
        pass


@dataclass(frozen=True)
class Finding:
    """One problem: its type, what it concerns, and one line of detail."""

    type: str
    detail: str
    message_id: str | None = None
    key: str | None = None
    seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The `--json` form: `type`, then whichever of message_id/key/seq apply, `detail`."""
        document: dict[str, Any] = {"type": self.type}
        for name in ("message_id", "key", "seq"):
            value = getattr(self, name)
            if value is not None:
                document[name] = value
        document["detail"] = self.detail
        return document


@dataclass
class ProjectAudit:
    """What the audit of one project found."""

    project_id: str
    manifests: int = 0
    entries: int = 0
    stored: int = 0
    expired: int = 0
    failed: int = 0
    pending: int = 0
    findings: list[Finding] = field(default_factory=list)
    # the signed log (SPEC 9.1)
    origin: str | None = None
    anchored: bool = False  # a trusted signature or an anchor was checked
    tree_size: int | None = None
    root: str | None = None  # base64
    unsealed: int = 0  # stored messages not yet in a sealed segment
    complete_through: str | None = None  # the last sealed_at (RFC 3339)
    adopted: int = 0
    backfilled: int = 0
    holds: int = 0  # `hold` entries: an object's hold applied for a case
    releases: int = 0  # `release` entries
    # for the evidence bundle
    segments: dict[int, bytes] = field(default_factory=dict)
    recorded_sha256: dict[int, str] = field(default_factory=dict)
    listing: dict[str, ObjectInfo] = field(default_factory=dict)
    object_sha256: dict[str, str] = field(default_factory=dict)
    retain_until: dict[str, float | None] = field(default_factory=dict)  # as --deep read it
    checkpoints: dict[int, str] = field(default_factory=dict)  # tree size -> exact text
    timestamps: dict[int, list[bytes]] = field(default_factory=dict)  # tree size -> .tsr

    def as_dict(self) -> dict[str, Any]:
        """The project's object in `sm audit --json`."""
        return {"project_id": self.project_id, "manifests": self.manifests,
                "entries": self.entries, "stored": self.stored, "expired": self.expired,
                "failed": self.failed, "pending": self.pending, "origin": self.origin,
                "anchored": self.anchored, "tree_size": self.tree_size, "root": self.root,
                "unsealed": self.unsealed, "complete_through": self.complete_through,
                "adopted": self.adopted, "backfilled": self.backfilled,
                "holds": self.holds, "releases": self.releases,
                "findings": [f.as_dict() for f in self.findings]}


@dataclass
class AuditResult:
    """The whole audit: `ok` exactly when no project has a finding; `warnings` say what it
    could not prove (a log checked against no trusted key or anchor)."""

    since: datetime | None
    until: datetime | None
    projects: list[ProjectAudit]
    warnings: list[str] = field(default_factory=list)  # what the audit could not prove

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not any(p.findings for p in self.projects)

    def as_dict(self) -> dict[str, Any]:
        """The `sm audit --json` document (SPEC 8)."""
        return {"ok": self.ok, "since": _iso(self.since), "until": _iso(self.until),
                "warnings": list(self.warnings),
                "projects": [p.as_dict() for p in self.projects]}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else to_rfc3339(moment.timestamp())


class Period:
    """The messages an audit checks: those sent between `since` and `until` (either open)."""

    def __init__(self, since: datetime | None, until: datetime | None) -> None:
        self.since, self.until = since, until

    def holds(self, sent_at: str | None) -> bool:
        """True when a message sent at `sent_at` is within the period."""
        if self.since is None and self.until is None:
            return True
        if not sent_at:
            return False
        try:
            moment = parse_sent_at(sent_at)
        except ValueError:
            return True  # unreadable: check it rather than skip it
        return (self.since is None or moment >= self.since) and (
            self.until is None or moment <= self.until)
