"""`sm prove`: the proof that one message was archived, checkable without sm (SPEC 9.1).

A proof is one JSON document: the message's manifest entry (its exact line: a leaf of its
project's log), the leaf's index, the RFC 6962 inclusion path from that leaf to the root of a
signed checkpoint, the checkpoint's exact text, the RFC 3161 time-stamp tokens stored beside
it, and the object's key and SHA-256. It is made from the bucket's own bytes: the log's
segments are read in order, the tree recomputed, and the newest checkpoint whose signature
verifies with a trusted key and whose root is the recomputed root at its size is the one the
proof points to. Nothing is written anywhere, so an investigator's read-only connection
proves as well as the archiver. `proof_check` checks a proof (`sm verify-proof`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..destinations.base import Destination
from ..errors import SmError
from ..spool import Spool
from ..states import State
from .merkle import HASH_SIZE, Frontier, leaf_hash
from .note import (
    NoteError,
    NoteVerifier,
    encode_base64,
    open_note,
    parse_checkpoint,
    parse_verifier_keys,
)
from .segments import (
    CHECKPOINT_FOLDER,
    MAX_CHECKPOINT_BYTES,
    MAX_SEGMENT_BYTES,
    ManifestFormatError,
    checkpoint_key,
    log_origin,
    manifest_prefix,
    parse_segment,
    seq_of_key,
)
from .signing import load_signing_key
from .timestamp import MAX_REPLY_BYTES

PROOF_VERSION = 1
# The fields of a proof, exactly these, in this order (SPEC 9.1).
PROOF_FIELDS = ("proof_version", "message_id", "project_id", "origin", "entry", "leaf_index",
                "tree_size", "inclusion", "checkpoint", "timestamps", "object_key",
                "object_sha256")
NOT_SEALED = "not sealed yet: sm manifest seal, then prove again"


class ProofError(SmError):
    """No proof can be made for the message now; the text says why, the hint what next."""


def trusted_verifiers(keys: Sequence[str], key_file: Path | None = None
                      ) -> list[NoteVerifier]:
    """The verifier keys a checkpoint must be signed by: `keys` (from `--trust`, or the
    setting `trusted_keys`), else the verifier of the spool's own signing key at `key_file`
    when it exists (never created here). ProofError for a malformed key."""
    try:
        verifiers = list(parse_verifier_keys(keys))
    except NoteError as exc:
        raise ProofError(str(exc), hint="pass the line sm key show prints on the archiver"
                         ) from None
    if not verifiers and key_file is not None and key_file.is_file():
        verifiers.append(load_signing_key(key_file).verifier())
    return verifiers


class PackedLeaves:
    """A log's leaf hashes in order, packed 32 bytes each in one buffer (a list of a million
    hashes would cost twice the memory), with the RFC 6962 subtree roots and audit paths
    computed from them in one pass each, keeping only a few hashes aside (`Frontier`)."""

    def __init__(self) -> None:
        self._packed = bytearray()

    def __len__(self) -> int:
        return len(self._packed) // HASH_SIZE

    def append(self, leaf: bytes) -> None:
        """Add the next leaf hash."""
        self._packed += leaf

    def root(self, low: int, high: int) -> bytes:
        """The Merkle tree hash of leaves `low` to `high` (excluded)."""
        frontier = Frontier()
        view = memoryview(self._packed)
        frontier.extend(bytes(view[i * HASH_SIZE:(i + 1) * HASH_SIZE])
                        for i in range(low, high))
        return frontier.root()

    def inclusion(self, index: int, tree_size: int) -> list[bytes]:
        """The audit path (RFC 6962 PATH) of leaf `index` in the tree of the first
        `tree_size` leaves, lowest sibling first."""
        path: list[bytes] = []
        low, high = 0, tree_size
        while high - low > 1:
            middle = low + (1 << ((high - low - 1).bit_length() - 1))
            if index < middle:
                path.append(self.root(middle, high))
                high = middle
            else:
                path.append(self.root(low, middle))
                low = middle
        path.reverse()  # found from the top down; a proof lists the lowest sibling first
        return path


@dataclass
class _Log:
    """What was read of a log's segments: every leaf hash in order, where the message's
    entry lies, and why reading stopped early (if it did)."""

    leaves: PackedLeaves = field(default_factory=PackedLeaves)
    entry: bytes | None = None
    entry_document: dict[str, Any] | None = None
    leaf_index: int | None = None
    stopped: str | None = None

    @property
    def entry_document_key(self) -> Any:
        """The key of the entry found so far (None before one is found)."""
        return None if self.entry_document is None else self.entry_document.get("key")


def make_proof(destination: Destination, project_id: str, message_id: str,
               verifiers: Sequence[NoteVerifier], *, spool: Spool | None = None,
               object_key: str | None = None) -> dict[str, Any]:
    """The proof (PROOF_FIELDS) that `message_id` of `project_id` is a stored entry of the
    project's log at `destination`, against the newest checkpoint in the bucket signed by one
    of `verifiers` whose root the bucket's segments give. `spool` (the archiver's) tells which
    segments the log has; without it, or when it knows none, the bucket's listing does.
    `object_key` (the index's key of the message, when known) is preferred among its stored
    entries; else the first one is proved. Reads only."""
    if not verifiers:
        raise ProofError("no trusted key to check the log's checkpoints with",
                         hint="sm prove MESSAGE_ID --trust VKEY (the line sm key show prints"
                         " on the archiver), or the setting trusted_keys")
    origin = log_origin(destination.url, project_id)
    log = _read_log(destination, project_id, origin, message_id, spool, object_key)
    if log.entry is None or log.leaf_index is None or log.entry_document is None:
        raise _not_found(spool, project_id, message_id, destination, log)
    checkpoint, rejected = _latest_checkpoint(destination, project_id, origin, log, verifiers)
    if checkpoint is None:
        why = "; ".join(rejected[:3]) or "there is none in the bucket"
        raise ProofError(f"message {message_id} is in the log, but no checkpoint covering it"
                         f" verifies ({why}); {NOT_SEALED}",
                         hint="sm manifest seal (on the archiver), or pass the log's verifier"
                         " key with --trust")
    text, tree_size = checkpoint
    path = log.leaves.inclusion(log.leaf_index, tree_size)
    entry = log.entry_document
    return {
        "proof_version": PROOF_VERSION, "message_id": message_id, "project_id": project_id,
        "origin": origin, "entry": log.entry.decode("utf-8"), "leaf_index": log.leaf_index,
        "tree_size": tree_size, "inclusion": [encode_base64(h) for h in path], "checkpoint": text,
        "timestamps": _timestamps(destination, project_id, tree_size),
        "object_key": entry.get("key"), "object_sha256": entry.get("object_sha256")}


# --------------------------------------------------------------------------- the segments


def _segment_keys(destination: Destination, project_id: str, origin: str,
                  spool: Spool | None) -> Iterator[tuple[str, int | None]]:
    """(key, listed size) of each segment of the log in order, up to the first one the
    bucket does not have; the spool's rows name them when it knows the log."""
    listed: dict[int, list[tuple[str, int | None]]] = {}
    for info in destination.list(manifest_prefix(destination.prefix, project_id)):
        seq = seq_of_key(info.key)
        if seq is not None:
            listed.setdefault(seq, []).append((info.key, info.size))
    sizes = {key: size for found in listed.values() for key, size in found}
    rows = [r for r in (spool.evidence.segments(project_id) if spool else [])
            if r["origin"] == origin]
    if rows:
        for row in sorted(rows, key=lambda r: int(r["log_seq"])):
            key = destination.prefix + row["key"]
            if key not in sizes:
                return
            yield key, sizes[key]
        return
    seq = 1
    while len(listed.get(seq, ())) == 1:
        yield listed[seq][0]
        seq += 1
    if len(listed.get(seq, ())) > 1:
        raise ProofError(f"segment {seq} of project {project_id}'s log exists"
                         f" {len(listed[seq])} times in the bucket; which one is the log's"
                         " cannot be told from the bucket alone",
                         hint=f"sm audit --project {project_id}")


def _read_log(destination: Destination, project_id: str, origin: str, message_id: str,
              spool: Spool | None, object_key: str | None) -> _Log:
    """Every leaf of the log the bucket holds, and the message's stored entry among them."""
    log = _Log()
    for key, size in _segment_keys(destination, project_id, origin, spool):
        if size is not None and size > MAX_SEGMENT_BYTES:
            log.stopped = f"{key} is over {MAX_SEGMENT_BYTES} bytes (not read)"
            break
        try:
            segment = parse_segment(destination.get(key).body, key)
        except ManifestFormatError as exc:
            log.stopped = f"{key}: {exc}"
            break
        for line, document in zip(segment.lines, segment.entries, strict=True):
            if document.get("message_id") == message_id and \
                    document.get("outcome") == State.STORED and (log.entry is None or (
                        document.get("key") == object_key != log.entry_document_key)):
                log.entry, log.entry_document, log.leaf_index = line, document, len(log.leaves)
            log.leaves.append(leaf_hash(line))
    return log


def _not_found(spool: Spool | None, project_id: str, message_id: str,
               destination: Destination, log: _Log) -> ProofError:
    """Why the message has no stored entry in the bucket's log, and what to do."""
    if spool is not None and _awaits_seal(spool, project_id, message_id):
        return ProofError(f"message {message_id} is stored but {NOT_SEALED}",
                          hint=f"sm manifest seal --project {project_id}")
    where = f" (reading stopped at {log.stopped})" if log.stopped else ""
    return ProofError(f"no manifest of project {project_id} at {destination.url} lists"
                      f" message {message_id} as stored{where}",
                      hint=f"sm show {message_id} --project {project_id}; sm audit --project"
                      f" {project_id}")


def _awaits_seal(spool: Spool, project_id: str, message_id: str) -> bool:
    """True when the message's entry is in the open segment or a segment not yet written."""
    evidence = spool.evidence
    if any(mid == message_id and outcome == State.STORED  # not its delivery evidence
           for mid, outcome, _key in evidence.open_outcomes(project_id)):
        return True
    for row in evidence.segments(project_id, unwritten_only=True):
        body = evidence.segment_body(project_id, int(row["seq"]))
        if body is not None and any(e.get("message_id") == message_id and
                                    e.get("outcome") == State.STORED
                                    for e in parse_segment(body).entries):
            return True
    return False


# --------------------------------------------------------------------------- checkpoints


def _latest_checkpoint(destination: Destination, project_id: str, origin: str, log: _Log,
                       verifiers: Sequence[NoteVerifier]
                       ) -> tuple[tuple[str, int] | None, list[str]]:
    """((text, tree size) of the newest checkpoint covering the entry that verifies and
    whose root is the log's at its size, or None; why each newer one was passed over)."""
    assert log.leaf_index is not None
    folder = f"{destination.prefix}{CHECKPOINT_FOLDER}{project_id}/"
    found = []
    for info in destination.list(folder):
        name = info.key[len(folder):]
        if len(name) == 16 and name.endswith(".txt") and name[:12].isdigit():
            found.append((int(name[:12]), info.key, info.size))
    rejected: list[str] = []
    for tree_size, key, size in sorted(found, reverse=True):
        if tree_size <= log.leaf_index:
            break
        if tree_size > len(log.leaves):
            rejected.append(f"{key}: the bucket's segments hold fewer entries")
            continue
        text, problem = _read_checkpoint(destination, key, size, origin, tree_size, log,
                                         verifiers)
        if text is None:
            rejected.append(f"{key}: {problem}")
            continue
        return (text, tree_size), rejected
    return None, rejected


def _read_checkpoint(destination: Destination, key: str, size: int | None, origin: str,
                     tree_size: int, log: _Log, verifiers: Sequence[NoteVerifier]
                     ) -> tuple[str | None, str]:
    """(the checkpoint's exact text, "") when the one at `key` holds: at most
    MAX_CHECKPOINT_BYTES, signed by a trusted key, of this log at this size, with the root
    of the bucket's leaves; else (None, what is wrong)."""
    if size is not None and size > MAX_CHECKPOINT_BYTES:
        return None, f"over {MAX_CHECKPOINT_BYTES} bytes (not read)"
    body = destination.get(key).body
    if len(body) > MAX_CHECKPOINT_BYTES:
        return None, f"over {MAX_CHECKPOINT_BYTES} bytes"
    try:
        text = body.decode("utf-8")
        opened = open_note(text, verifiers)
        checkpoint = parse_checkpoint(opened.text)
    except (UnicodeDecodeError, NoteError) as exc:
        return None, f"not a valid signed checkpoint ({exc})"
    if not opened.verified_by:
        return None, "not signed by a trusted key"
    if checkpoint.origin != origin or checkpoint.tree_size != tree_size:
        return None, f"it names {checkpoint.origin} at size {checkpoint.tree_size}"
    if checkpoint.root != log.leaves.root(0, tree_size):
        return None, "its root is not the root of the bucket's segments at its size"
    return text, ""


def _timestamps(destination: Destination, project_id: str, tree_size: int) -> list[str]:
    """The time-stamp token stored beside the checkpoint (base64), if there is one."""
    key = destination.prefix + checkpoint_key(project_id, tree_size, ".tsr")
    info = destination.head(key)
    if info is None or (info.size is not None and info.size > MAX_REPLY_BYTES):
        return []
    body = destination.get(key).body
    return [encode_base64(body)] if len(body) <= MAX_REPLY_BYTES else []


def proof_json(proof: dict[str, Any]) -> str:
    """A proof as the file `sm prove` writes: JSON, two-space indented, a final newline."""
    return json.dumps(proof, ensure_ascii=False, indent=2) + "\n"
