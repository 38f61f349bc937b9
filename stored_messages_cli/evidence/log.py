"""The signed Merkle log a project's manifests form at its destination (SPEC 9.1).

Every entry line of every segment is a leaf of one RFC 6962 tree per log; a log is one project
at one destination (its `origin`). Sealing a segment extends the tree from the compact range
the spool kept with the previous segment (`merkle.Frontier`), writes the tree's size and root
in the segment's header, and signs a checkpoint of it (C2SP tlog-checkpoint, `note`) with the
spool's Ed25519 key (`signing`). The checkpoint is written beside the manifests after its
segment, then copied to `checkpoint_copies` and time-stamped by `timestamp_authorities` (the
anchors, `anchors.py`), none of which ever holds up archiving.

Segments sealed before logs existed (version 1) are the v1 prefix of their project's log: the
first seal that finds them counts their leaves from their bytes (the bucket's, checked against
the hash the spool kept) before extending the tree. A project reconnected to a new destination
starts a new log there, whose first segment names the one before (`previous_log`).
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.paths import Paths
from ..destinations.base import Destination
from ..message import sha256_hex
from ..spool import Spool
from ..spool.evidence_queries import LogHead, SegmentDraft
from .merkle import Frontier, leaf_hash
from .note import encode_base64, format_checkpoint, sign_note
from .segments import (
    ManifestFormatError,
    build_segment,
    entry_document,
    log_origin,
    parse_segment,
    retention_days_of,
    segment_header,
    segment_key,
    segment_line,
)
from .signing import LogSigner, key_home, load_or_create_signing_key, signing_key_path

log = logging.getLogger("sm.manifest")

COPY = "copy"  # an anchor: the checkpoint written create-only at another destination
TIMESTAMP = "timestamp"  # an anchor: an RFC 3161 time-stamp of the checkpoint's SHA-256


@dataclass(frozen=True)
class LogOptions:
    """How the log is signed and anchored: the signing key's file, the destinations every
    checkpoint is copied to, the time-stamp authorities that stamp it and the roots their
    tokens must chain to (`timestamp_ca_file`, a PEM file)."""

    key_file: Path
    copies: tuple[str, ...] = ()
    timestamp_authorities: tuple[str, ...] = ()
    timestamp_ca_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: Any, home: str | None = None) -> LogOptions:
        """The options the settings give (`log_key_file`, `checkpoint_copies`,
        `timestamp_authorities`, `timestamp_ca_file`), the key under the home folder when
        unset."""
        folder = key_home(Paths.resolve(home))
        ca_file = getattr(settings, "timestamp_ca_file", None)
        return cls(signing_key_path(folder, getattr(settings, "log_key_file", None)),
                   tuple(getattr(settings, "checkpoint_copies", ()) or ()),
                   tuple(getattr(settings, "timestamp_authorities", ()) or ()),
                   Path(ca_file).expanduser() if ca_file else None)

    @property
    def anchors(self) -> tuple[tuple[str, str], ...]:
        """(kind, target) of every anchor a checkpoint is owed."""
        return (*((COPY, url) for url in self.copies),
                *((TIMESTAMP, url) for url in self.timestamp_authorities))


class LogSealer:
    """Builds the version 2 segments of each project's log, and readies a log whose last
    segments were sealed before logs existed."""

    def __init__(self, spool: Spool, options: LogOptions) -> None:
        self.spool = spool
        self.options = options
        self._signer: LogSigner | None = None
        self._sealer: str | None = None

    @property
    def signer(self) -> LogSigner:
        """The spool's signing key, created on first use when it is missing."""
        if self._signer is None:
            self._signer, created = load_or_create_signing_key(self.options.key_file)
            if created:
                log.warning("created the manifest log's signing key %s; give its verifier key"
                            " (sm key show) to your auditor", self.options.key_file)
        return self._signer

    @property
    def sealer(self) -> str:
        """This spool's sealer id (the `sealer` of every segment it seals)."""
        if self._sealer is None:
            self._sealer = self.spool.evidence.sealer_id(secrets.token_hex(8))
        return self._sealer

    # ----------------------------------------------------------------------- before a seal

    def prepare(self, project_id: str, destination: Destination) -> bool:
        """Ready the project's log for its next seal: segments sealed before logs had an
        origin join this destination's log, and the tree of a v1 prefix is counted from its
        segments' bytes. False when that cannot be done now (the seal waits; nothing is lost).
        """
        self.signer, self.sealer  # noqa: B018 - read (or made) before the sealing transaction
        evidence = self.spool.evidence
        head = evidence.last_segment(project_id)
        if head is None:
            return True
        origin = log_origin(destination.url, project_id)
        if head.origin == "":
            evidence.adopt_unlogged_segments(project_id, origin)
            head = evidence.last_segment(project_id)
            assert head is not None
        if head.origin != origin or head.frontier is not None:
            return True
        try:
            frontier = self._count_v1_prefix(project_id, destination, origin)
        except (ManifestFormatError, OSError, ValueError) as exc:
            log.error("the manifests of project %s sealed before the signed log cannot be read"
                      " (%s); new segments wait until they can (sm audit shows why)",
                      project_id, exc)
            return False
        except Exception as exc:  # noqa: BLE001 - the destination's error: retried next tick
            log.warning("reading project %s's earlier manifests failed (%s); sealing waits",
                        project_id, exc)
            return False
        evidence.set_log_state(project_id, head.seq, frontier.size, encode_base64(frontier.root()),
                               json.dumps(frontier.to_json()))
        return True

    def _count_v1_prefix(self, project_id: str, destination: Destination, origin: str
                         ) -> Frontier:
        """The tree of every segment of the log `origin`, read from the spool (unwritten) or
        the bucket, each checked against the hash the spool kept."""
        frontier = Frontier()
        for row in self.spool.evidence.segments(project_id):
            if row["origin"] != origin:
                continue
            body = self.spool.evidence.segment_body(project_id, row["seq"])
            if body is None:
                body = destination.get(destination.prefix + row["key"]).body
            if sha256_hex(body) != row["sha256"]:
                raise ValueError(f"segment {row['log_seq']}'s bytes in the bucket are not those"
                                 " sealed")
            frontier.extend(leaf_hash(line) for line in parse_segment(body).lines)
        return frontier

    # ----------------------------------------------------------------------- the seal

    def draft(self, project_id: str, destination: Destination, sealed_at: float,
              rows: list[dict[str, Any]], head: LogHead | None) -> SegmentDraft:
        """The next segment of the project's log at `destination`, holding `rows` (its open
        entries): key, bytes, tree and signed checkpoint (inside the sealing transaction)."""
        origin = log_origin(destination.url, project_id)
        days = retention_days_of(destination)
        lines = [segment_line(entry_document(row, destination.prefix, days))[:-1]
                 for row in rows]
        log_fields: dict[str, Any] = {}
        if head is not None and head.origin == origin and head.frontier is not None:
            log_seq, prev_sha = head.log_seq + 1, head.sha256
            frontier = Frontier.from_json(int(head.tree_size or 0), json.loads(head.frontier))
        else:  # a new log: the project's first, or after a reconnect
            log_seq, prev_sha, frontier = 1, None, Frontier()
            if head is not None:
                log_fields["previous_log"] = {"origin": head.origin or None,
                                              "tree_size": head.tree_size, "root": head.root}
        frontier.extend(leaf_hash(line) for line in lines)
        root = frontier.root()
        root64 = encode_base64(root)
        log_fields = {"tree_size": frontier.size, "root": root64, "origin": origin,
                      "sealer": self.sealer, **log_fields}
        header = segment_header(project_id, log_seq, prev_sha, sealed_at, len(lines),
                                **log_fields)
        checkpoint = sign_note(format_checkpoint(origin, frontier.size, root), self.signer)
        return SegmentDraft(
            key=segment_key(project_id, log_seq, sealed_at), body=build_segment(header, lines),
            prev_sha256=prev_sha, origin=origin, log_seq=log_seq, version=2,
            tree_size=frontier.size, root=root64, frontier=json.dumps(frontier.to_json()),
            checkpoint=checkpoint, anchors=self.options.anchors)

