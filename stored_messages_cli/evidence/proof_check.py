"""`sm verify-proof`: check a proof `sm prove` made, with no spool and no bucket (SPEC 9.1).

Every check reads only the proof, the trusted verifier keys, the time-stamp authorities'
roots and (optionally) the object's bytes: the document has exactly the proof's fields; the
checkpoint is a signed note a trusted key signed, of the proof's origin and tree size; the
entry's leaf hash and the inclusion path give the checkpoint's root at the leaf's index; the
entry names the message, its key and its object's SHA-256; each time-stamp token stamps the
SHA-256 of the checkpoint's exact text; the object's bytes hash to the entry's SHA-256. The
proof is hostile input: it is read bounded, and nothing in it raises.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from ..errors import InvalidMessage
from ..message import decode_json
from .merkle import HASH_SIZE, leaf_hash, verify_inclusion
from .note import NoteError, NoteVerifier, open_note, parse_checkpoint
from .prove import PROOF_FIELDS, PROOF_VERSION
from .segments import MAX_CHECKPOINT_BYTES
from .timestamp import MAX_REPLY_BYTES, check_timestamp

MAX_PROOF_BYTES = 16 * 1024 * 1024  # a proof is a few KiB; its time-stamp tokens ≤ 1 MiB each
MAX_TIMESTAMPS = 8  # one per time-stamp authority
MAX_INCLUSION = 64  # a tree of at most 2**63 leaves has a path of at most 63 hashes
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ProofCheck:
    """One check of a proof: its name, whether it held, and what was found, in one line."""

    check: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """The check as `sm verify-proof --json` lists it."""
        return {"check": self.check, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class StampResult:
    """What one time-stamp token of a proof says: when (RFC 3339), which authority, valid."""

    time: str | None
    tsa: str | None
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """The token as `sm verify-proof --json` lists it."""
        return {"time": self.time, "tsa": self.tsa, "ok": self.ok}


@dataclass
class ProofReport:
    """Every check of one proof, and its time-stamps."""

    message_id: str | None = None
    checks: list[ProofCheck] = field(default_factory=list)
    timestamps: list[StampResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check ran and held."""
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[ProofCheck]:
        """The checks that did not hold."""
        return [c for c in self.checks if not c.ok]

    def add(self, check: str, ok: bool, detail: str) -> None:
        """Record one check."""
        self.checks.append(ProofCheck(check, ok, detail))

    def as_dict(self) -> dict[str, Any]:
        """`sm verify-proof --json`: ok, message_id, checks, timestamps."""
        return {"ok": self.ok, "message_id": self.message_id,
                "checks": [c.as_dict() for c in self.checks],
                "timestamps": [t.as_dict() for t in self.timestamps]}


def read_bounded(stream: IO[bytes], limit: int = MAX_PROOF_BYTES) -> bytes | None:
    """At most `limit` bytes of `stream`; None when it holds more (nothing more is read)."""
    body = stream.read(limit + 1)
    return None if len(body) > limit else body


def object_digest(stream: IO[bytes]) -> tuple[str, int]:
    """(SHA-256 hex, size) of an object file, read a chunk at a time."""
    digest, size = hashlib.sha256(), 0
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def check_proof(raw: bytes | None, verifiers: Sequence[NoteVerifier], *,
                object_file: tuple[str, int] | None = None, ca_pem: bytes | None = None
                ) -> ProofReport:
    """Check a proof's bytes (None: a file over MAX_PROOF_BYTES) against the trusted
    `verifiers`, the time-stamp roots `ca_pem` and, when given, the object's (SHA-256 hex,
    size) (`object_digest`)."""
    report = ProofReport()
    proof = _format(raw, report)
    if proof is None:
        return report
    report.message_id = proof["message_id"]
    checkpoint = _signature(proof, verifiers, report)
    entry = _entry(proof, report)
    _inclusion(proof, checkpoint, report)
    _stamps(proof, ca_pem, report)
    if object_file is not None:
        _object(proof, entry, object_file, report)
    return report


# --------------------------------------------------------------------------- the document


def _hash(text: Any) -> bytes | None:
    """A hash in canonical base64 (re-encoding gives the same text), else None."""
    decoded = _canonical_base64(text)
    return decoded if decoded is not None and len(decoded) == HASH_SIZE else None


def _canonical_base64(text: Any) -> bytes | None:
    """`text` decoded as standard base64 only when it is its one canonical spelling (unused
    bits zero, padding as written), so no two texts of a proof stand for the same bytes."""
    if not isinstance(text, str) or not text.isascii():
        return None
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if base64.b64encode(decoded).decode("ascii") == text else None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# The shape of each field, and the words for a value that does not have it.
_SHAPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "proof_version": (lambda v: v == PROOF_VERSION and not isinstance(v, bool),
                      f"is not {PROOF_VERSION}"),
    "message_id": (lambda v: isinstance(v, str) and bool(v), "is not a message id"),
    "project_id": (lambda v: isinstance(v, str) and bool(v), "is not a project id"),
    "origin": (lambda v: isinstance(v, str) and bool(v), "is not a log origin"),
    "entry": (lambda v: isinstance(v, str) and bool(v), "is not a manifest line"),
    "leaf_index": (_is_count, "is not a leaf index (a whole number from 0)"),
    "tree_size": (lambda v: _is_count(v) and v > 0, "is not a tree size (a whole number)"),
    "inclusion": (lambda v: isinstance(v, list) and len(v) <= MAX_INCLUSION
                  and all(_hash(h) is not None for h in v),
                  "is not a list of SHA-256 hashes in canonical base64"),
    "checkpoint": (lambda v: isinstance(v, str) and len(v) <= MAX_CHECKPOINT_BYTES,
                   "is not a checkpoint's text"),
    "timestamps": (lambda v: isinstance(v, list) and len(v) <= MAX_TIMESTAMPS
                   and all(isinstance(t, str) and len(t) <= 2 * MAX_REPLY_BYTES
                           and _canonical_base64(t) is not None for t in v),
                   "is not a list of time-stamp tokens in canonical base64"),
    "object_key": (lambda v: isinstance(v, str) and bool(v), "is not an object key"),
    "object_sha256": (lambda v: isinstance(v, str) and len(v) == 64 and set(v) <= _HEX,
                      "is not a SHA-256 in hex"),
}


def _format(raw: bytes | None, report: ProofReport) -> dict[str, Any] | None:
    """The proof document when it has exactly the proof's fields, each of its shape."""
    if raw is None:
        report.add("format", False, f"the file is over {MAX_PROOF_BYTES} bytes: not a proof"
                   " (not read)")
        return None
    try:
        document = decode_json(raw.decode("utf-8"))
    except UnicodeDecodeError:
        document, problem = None, "it is not UTF-8 text"
    except (InvalidMessage, RecursionError) as exc:
        document, problem = None, f"it is not JSON ({exc})"
    else:
        problem = "it is not a JSON object"
    if not isinstance(document, dict):
        report.add("format", False, f"not a proof: {problem}")
        return None
    if set(document) != set(PROOF_FIELDS):
        missing = [name for name in PROOF_FIELDS if name not in document]
        extra = sorted(name for name in document if name not in PROOF_FIELDS)
        words = (["missing " + ", ".join(missing)] if missing else []) + \
            (["unknown " + ", ".join(extra)] if extra else [])
        report.add("format", False, f"not a proof of version {PROOF_VERSION}: "
                   + "; ".join(words))
        return None
    bad = [f"{name} {_SHAPES[name][1]}" for name in PROOF_FIELDS
           if not _SHAPES[name][0](document[name])]
    if bad:
        report.add("format", False, "not a valid proof: " + "; ".join(bad))
        return None
    report.add("format", True, f"a proof of version {PROOF_VERSION} with every field")
    return document


# --------------------------------------------------------------------------- the checks


def _signature(proof: dict[str, Any], verifiers: Sequence[NoteVerifier],
               report: ProofReport) -> Any:
    """The checkpoint when its note is signed by a trusted key; the `signature` and
    `checkpoint` checks. Returns the parsed checkpoint (even unsigned) or None."""
    try:
        opened = open_note(proof["checkpoint"], verifiers)
        checkpoint = parse_checkpoint(opened.text)
    except NoteError as exc:
        report.add("signature", False, f"the checkpoint is not a valid signed note ({exc})")
        return None
    if not verifiers:
        report.add("signature", False, "the signature could not be checked: no trusted key"
                   " (pass --trust VKEY, the line sm key show prints on the archiver)")
    elif not opened.verified_by:
        names = ", ".join(f"{name}+{key_id.hex()}" for name, key_id in opened.unknown)
        report.add("signature", False, f"the checkpoint is signed by {names or 'no one'},"
                   " not by a trusted key")
    else:
        report.add("signature", True, "the checkpoint is signed by "
                   + ", ".join(opened.verified_by))
    if checkpoint.origin != proof["origin"]:
        report.add("checkpoint", False, f"the checkpoint is of the log {checkpoint.origin},"
                   f" the proof names {proof['origin']}")
    elif checkpoint.tree_size != proof["tree_size"]:
        report.add("checkpoint", False, f"the checkpoint is at tree size"
                   f" {checkpoint.tree_size}, the proof says {proof['tree_size']}")
    else:
        report.add("checkpoint", True, f"the log {checkpoint.origin} at tree size"
                   f" {checkpoint.tree_size}")
    return checkpoint


def _inclusion(proof: dict[str, Any], checkpoint: Any, report: ProofReport) -> None:
    """The `inclusion` check: the entry's leaf is at `leaf_index` under the checkpoint's
    root (at the checkpoint's own size: the proof's is checked against it above)."""
    if checkpoint is None:
        report.add("inclusion", False, "no checkpoint root to check the path against")
        return
    path = [_hash(h) for h in proof["inclusion"]]
    leaf = leaf_hash(proof["entry"].encode("utf-8"))
    if verify_inclusion(leaf, proof["leaf_index"], checkpoint.tree_size,
                        [h for h in path if h is not None], checkpoint.root):
        report.add("inclusion", True, f"the entry is leaf {proof['leaf_index']} of"
                   f" {checkpoint.tree_size} under the checkpoint's root")
    else:
        report.add("inclusion", False, f"the entry, leaf {proof['leaf_index']} and the"
                   " inclusion path do not give the checkpoint's root")


def _entry(proof: dict[str, Any], report: ProofReport) -> dict[str, Any] | None:
    """The `entry` check: a stored entry of this message, key and object SHA-256."""
    try:
        entry = decode_json(proof["entry"])
    except (InvalidMessage, RecursionError):
        entry = None
    if not isinstance(entry, dict):
        report.add("entry", False, "the entry is not a manifest line (a JSON object)")
        return None
    wrong = [f"its {name} is {entry.get(name)!r}, the proof says {proof[wanted]!r}"
             for name, wanted in (("message_id", "message_id"), ("key", "object_key"),
                                  ("object_sha256", "object_sha256"))
             if entry.get(name) != proof[wanted]]
    if entry.get("outcome") != "stored":
        wrong.insert(0, f"its outcome is {entry.get('outcome')!r}, not stored")
    if wrong:
        report.add("entry", False, "the entry does not match the proof: " + "; ".join(wrong))
        return None
    report.add("entry", True, f"a stored entry of message {proof['message_id']}, key"
               f" {proof['object_key']}")
    return entry


def _stamps(proof: dict[str, Any], ca_pem: bytes | None, report: ProofReport) -> None:
    """One `timestamp` check per token, over the SHA-256 of the checkpoint's exact text."""
    digest = hashlib.sha256(proof["checkpoint"].encode("utf-8")).digest()
    for number, token in enumerate(proof["timestamps"], start=1):
        checked = check_timestamp(_canonical_base64(token) or b"", digest, ca_pem=ca_pem)
        when = checked.time.isoformat().replace("+00:00", "Z") if checked.time else None
        report.timestamps.append(StampResult(when, checked.tsa, checked.ok, checked.detail))
        label = f"token {number}" + (f" by {checked.tsa}" if checked.tsa else "")
        if checked.ok:
            report.add("timestamp", True, f"{label}: the checkpoint existed at {when}"
                       f" ({checked.detail})")
        else:
            report.add("timestamp", False, f"{label}: {checked.detail}")


def _object(proof: dict[str, Any], entry: dict[str, Any] | None,
            object_file: tuple[str, int], report: ProofReport) -> None:
    """The `object` check: the file's SHA-256 (and size) are the proof's."""
    digest, size = object_file
    if digest != proof["object_sha256"]:
        report.add("object", False, f"the object's sha256 is {digest}, the proof says"
                   f" {proof['object_sha256']}")
    elif entry is not None and entry.get("size") != size:
        report.add("object", False, f"the object is {size} bytes, the entry says"
                   f" {entry.get('size')}")
    else:
        report.add("object", True, f"its {size} bytes hash to the proof's sha256")
