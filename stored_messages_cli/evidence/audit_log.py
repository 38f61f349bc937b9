"""`sm audit`, the signed log (SPEC 9.1): checkpoints, signatures, the tree and the anchors.

The segments `audit_chain` read are the bucket's log: every entry line a leaf, in seq order.
Here the tree is recomputed from those lines and compared with each segment header's
`tree_size`/`root` (`chain_broken`), with every checkpoint beside the manifests, with the
checkpoints the spool signed, and with the anchors the auditor brings: checkpoints saved
earlier and checkpoint-copy locations (`log_truncated` when the bucket's log is shorter,
`log_forked` when it is not an extension: comparing the root at the anchor's size from the
leaves themselves is what an RFC 6962 consistency proof would establish). A checkpoint whose
signature does not verify with a trusted key is `signature_invalid`; a segment no valid
checkpoint covers, or beyond the last one the spool sealed, is `unsigned_segment`; a time-stamp
token that does not stamp its checkpoint is `timestamp_invalid`.

Checkpoints and tokens are bytes from a bucket: their sizes are bounded and garbage is a
finding, never an exception.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..destinations.base import Destination
from ..errors import SmError
from .findings import Finding, ProjectAudit
from .merkle import Frontier, leaf_hash
from .merkle import root as merkle_root
from .note import (
    Checkpoint,
    NoteError,
    NoteVerifier,
    encode_base64,
    open_note,
    parse_checkpoint,
)
from .segments import (
    CHECKPOINT_FOLDER,
    MAX_CHECKPOINT_BYTES,
    Segment,
    checkpoint_key,
    copy_checkpoint_key,
)
from .timestamp import check_timestamp

MAX_TOKEN_BYTES = 1024 * 1024  # a time-stamp reply, as `request_timestamp` accepts it
_NAME_DIGITS = 12


@dataclass(frozen=True)
class Anchor:
    """Something the auditor saved away from the bucket: a checkpoint's text (`text`), or a
    checkpoint-copy location (`destination`); `source` names it in findings."""

    source: str
    text: str | None = None
    destination: Destination | None = None


@dataclass(frozen=True)
class Trust:
    """What the audit trusts beyond the bucket: verifier keys (`--trust`, `trusted_keys`),
    anchors (`--anchor`), the roots a time-stamp must chain to (`--tsa-ca`)."""

    verifiers: tuple[NoteVerifier, ...] = ()
    anchors: tuple[Anchor, ...] = ()
    tsa_ca: bytes | None = None


@dataclass
class SpoolLog:
    """What the spool knows of a log it sealed: the last segment number, and the checkpoint
    it signed at each tree size, with whether it was written to the bucket."""

    last_seq: int | None = None
    checkpoints: dict[int, tuple[str, bool]] = field(default_factory=dict)


@dataclass
class _Tree:
    """The bucket's log recomputed: every leaf hash, and the root after each segment."""

    leaves: list[bytes]
    roots: dict[int, bytes]
    ends: list[tuple[int, int]]  # (seq, tree size after it)
    complete: bool = True  # False when a segment is missing: the tree stops before it
    forked: bool = False  # a signed checkpoint names another tree (coverage is moot)

    @property
    def size(self) -> int:
        return len(self.leaves)

    def root_at(self, size: int) -> bytes:
        """The root of the first `size` leaves (size at most the tree's)."""
        if size in self.roots:
            return self.roots[size]
        return merkle_root(self.leaves[:size])


@dataclass
class _Read:
    """The checkpoints and tokens of one location, as read."""

    texts: dict[int, str] = field(default_factory=dict)
    tokens: dict[int, list[bytes]] = field(default_factory=dict)


def check_log(destination: Destination, project_id: str, origin: str, segments: list[Segment],
              result: ProjectAudit, trust: Trust, spool_log: SpoolLog) -> None:
    """Check the project's log at `destination` (its segments as `audit_chain` read them)
    against its header trees, checkpoints, the spool's record and the anchors; findings and
    the log's figures (`tree_size`, `root`, `anchored`, `checkpoints`, `timestamps`) go into
    `result`."""
    result.origin = origin
    tree = _recompute(segments, result)
    result.tree_size, result.root = tree.size, encode_base64(tree.root_at(tree.size))
    _check_sealers(segments, origin, result)
    bucket = _read_location(destination, project_id, result, "the bucket")
    result.checkpoints.update(bucket.texts)
    for size, tokens in bucket.tokens.items():
        result.timestamps.setdefault(size, []).extend(tokens)
    covered = max(_check_checkpoints(bucket.texts, "the bucket", origin, tree, trust, result),
                  _check_spool_checkpoints(destination, project_id, spool_log, bucket, origin,
                                           tree, trust, result))
    _check_tokens(bucket, "the bucket", trust, result)
    _check_anchors(project_id, origin, tree, trust, result)
    _check_coverage(segments, tree, covered, spool_log, result)


# --------------------------------------------------------------------------- the tree


def _recompute(segments: list[Segment], result: ProjectAudit) -> _Tree:
    """The tree over every entry line in seq order, as far as the segments are contiguous from
    1 (past a missing one nothing can be recomputed: that is already a finding); the first
    segment whose header names another tree is `chain_broken` (every later header depends
    on it), unless its bytes were already found altered."""
    frontier = Frontier()
    tree = _Tree([], {0: merkle_root([])}, [])
    broken = {f.seq for f in result.findings if f.type == "chain_broken"}
    header_reported = False
    for segment in segments:
        if _int(segment.header.get("seq")) != len(tree.ends) + 1:
            tree.complete = False
            break
        hashes = [leaf_hash(line) for line in segment.lines]
        frontier.extend(hashes)
        tree.leaves.extend(hashes)
        root = frontier.root()
        tree.roots[frontier.size] = root
        seq = _int(segment.header.get("seq"))
        tree.ends.append((seq, frontier.size))
        if seq in broken:  # its lines are not those sealed: every later tree differs too
            header_reported = True
        if segment.version < 2 or header_reported:
            continue
        header = segment.header
        if header.get("tree_size") != frontier.size or header.get("root") != encode_base64(root):
            header_reported = True
            result.findings.append(Finding(
                "chain_broken", f"segment {seq}: its header's tree (size"
                f" {header.get('tree_size')}) is not the tree of the log's {frontier.size}"
                " entries through it (later headers not compared)", seq=seq))
    return tree


def _check_sealers(segments: list[Segment], origin: str, result: ProjectAudit) -> None:
    """Every version 2 segment names this log's origin and one sealer: a second sealer in
    one log is two spools writing it (`chain_broken`, once)."""
    first: str | None = None
    for segment in segments:
        if segment.version < 2:
            continue
        seq = _int(segment.header.get("seq"))
        if segment.header.get("origin") != origin:
            result.findings.append(Finding(
                "chain_broken", f"segment {seq} names the log {segment.header.get('origin')!r},"
                f" not {origin!r}", seq=seq))
        sealer = str(segment.header.get("sealer"))
        if first is None:
            first = sealer
        elif sealer != first:
            result.findings.append(Finding(
                "chain_broken", f"segment {seq}: a second sealer ({sealer}) writes this log,"
                f" sealed by {first} before it (two spools sealing one project's log)",
                seq=seq))
            return


# --------------------------------------------------------------------------- checkpoints


def _read_location(destination: Destination, project_id: str, result: ProjectAudit,
                   where: str, origin: str | None = None) -> _Read:
    """Every checkpoint (`.txt`) and time-stamp token (`.tsr`) under the project's
    checkpoint folder at `destination` (at a copy location, `origin`'s own folder in it),
    bounded; what cannot be read is a finding."""
    read = _Read()
    folder = f"{destination.prefix}{CHECKPOINT_FOLDER}{project_id}/" if origin is None else \
        destination.prefix + copy_checkpoint_key(project_id, origin, 0).rsplit("/", 1)[0] + "/"
    try:
        listed = list(destination.list(folder))
    except (SmError, OSError) as exc:
        result.findings.append(Finding("signature_invalid", f"the checkpoints in {where}"
                                       f" cannot be listed ({exc})"))
        return read
    for info in listed:
        name = info.key.rsplit("/", 1)[-1]
        digits, _, suffix = name.partition(".")
        if len(digits) != _NAME_DIGITS or not digits.isdigit() or suffix not in ("txt", "tsr"):
            continue
        size = int(digits)
        limit = MAX_CHECKPOINT_BYTES if suffix == "txt" else MAX_TOKEN_BYTES
        kind = "signature_invalid" if suffix == "txt" else "timestamp_invalid"
        body = _get_bounded(destination, info.key, info.size, limit)
        if isinstance(body, str):
            result.findings.append(Finding(kind, f"{name} in {where}: {body}", key=info.key))
            continue
        if suffix == "tsr":
            read.tokens.setdefault(size, []).append(body)
            continue
        try:
            read.texts[size] = body.decode("utf-8")
        except UnicodeDecodeError:
            result.findings.append(Finding("signature_invalid", f"{name} in {where} is not"
                                           " UTF-8 text (not a checkpoint)", key=info.key))
    return read


def _get_bounded(destination: Destination, key: str, listed_size: int | None, limit: int
                 ) -> bytes | str:
    """The object's bytes, or one line saying why they were not read."""
    if listed_size is not None and listed_size > limit:
        return f"{listed_size} bytes, over the {limit} it may hold (not read)"
    try:
        body = destination.get(key).body
    except (SmError, OSError) as exc:
        return f"cannot be read ({exc})"
    if len(body) > limit:
        return f"{len(body)} bytes, over the {limit} it may hold"
    return body


def _open(text: str, trust: Trust) -> tuple[Checkpoint | None, str | None]:
    """The checkpoint a signed note holds, or why it is not acceptable: a malformed note, or
    (with trusted keys) no signature of theirs that verifies."""
    try:
        opened = open_note(text, trust.verifiers)
        if trust.verifiers and not opened.verified_by:
            names = ", ".join(sorted({name for name, _ in opened.unknown})) or "nobody"
            return None, f"no signature by a trusted key (signed by {names})"
        return parse_checkpoint(opened.text), None
    except NoteError as exc:
        return None, str(exc)


def _check_checkpoints(texts: dict[int, str], where: str, origin: str, tree: _Tree,
                       trust: Trust, result: ProjectAudit) -> int:
    """Each checkpoint of `texts` (tree size in its name -> text): signed, of this log, of
    the bucket's tree at its size. Returns the largest tree size an acceptable one covers;
    the first that disagrees with the tree is one finding."""
    covered = 0
    forked = False
    for name_size in sorted(texts):
        key_name = checkpoint_key("", name_size).rsplit("/", 1)[-1]
        checkpoint, problem = _open(texts[name_size], trust)
        if checkpoint is None:
            result.findings.append(Finding("signature_invalid",
                                           f"checkpoint {key_name} in {where}: {problem}"))
            continue
        if checkpoint.origin != origin:
            result.findings.append(Finding(
                "log_forked", f"checkpoint {key_name} in {where} is of the log"
                f" {checkpoint.origin!r}, not {origin!r}"))
            continue
        if checkpoint.tree_size != name_size:
            result.findings.append(Finding(
                "log_forked", f"checkpoint {key_name} in {where} says tree size"
                f" {checkpoint.tree_size}"))
            continue
        if trust.verifiers:
            result.anchored = True
        verdict = _compare(checkpoint, tree)
        if verdict is None:
            covered = max(covered, checkpoint.tree_size)
        elif not forked:
            forked = verdict[0] == "log_forked"
            tree.forked = tree.forked or forked
            result.findings.append(Finding(verdict[0], f"checkpoint {key_name} in {where}:"
                                           f" {verdict[1]}"))
    return covered


def _compare(checkpoint: Checkpoint, tree: _Tree) -> tuple[str, str] | None:
    """None when the bucket's log holds the checkpoint's tree (or cannot tell, past a
    missing segment); else (type, detail)."""
    if checkpoint.tree_size > tree.size and not tree.complete:
        return None
    if checkpoint.tree_size > tree.size:
        return ("log_truncated", f"signed a tree of {checkpoint.tree_size} entries; the"
                f" bucket's log holds {tree.size}")
    if tree.root_at(checkpoint.tree_size) != checkpoint.root:
        return ("log_forked", f"its root is not the tree of the bucket's first"
                f" {checkpoint.tree_size} entries (the log was rewritten)")
    return None


def _check_spool_checkpoints(destination: Destination, project_id: str, spool_log: SpoolLog,
                             bucket: _Read, origin: str, tree: _Tree, trust: Trust,
                             result: ProjectAudit) -> int:
    """The checkpoints the spool signed: each one written is still in the bucket
    (`manifest_missing`), and every one holds for the bucket's tree. Returns the largest
    tree size they cover."""
    texts = {}
    for size, (text, written) in sorted(spool_log.checkpoints.items()):
        if written and size not in bucket.texts:
            result.findings.append(Finding(
                "manifest_missing", f"checkpoint {size:012d}.txt is not in the bucket (the"
                " spool signed and wrote it)",
                key=destination.prefix + checkpoint_key(project_id, size)))
        if bucket.texts.get(size) != text:
            texts[size] = text
    return _check_checkpoints(texts, "the spool", origin, tree, trust, result)


# --------------------------------------------------------------------------- tokens, anchors


def _check_tokens(read: _Read, where: str, trust: Trust, result: ProjectAudit) -> None:
    """Every token time-stamps the SHA-256 of the checkpoint beside it."""
    for size in sorted(read.tokens):
        text = read.texts.get(size)
        for token in read.tokens[size]:
            if text is None:
                result.findings.append(Finding(
                    "timestamp_invalid", f"{size:012d}.tsr in {where}: no checkpoint of tree"
                    f" size {size} beside it"))
                continue
            check = check_timestamp(token, hashlib.sha256(text.encode("utf-8")).digest(),
                                    ca_pem=trust.tsa_ca)
            if not check.ok:
                result.findings.append(Finding(
                    "timestamp_invalid", f"{size:012d}.tsr in {where}: {check.detail}"))


def _check_anchors(project_id: str, origin: str, tree: _Tree, trust: Trust,
                   result: ProjectAudit) -> None:
    """Each anchor of this log: its checkpoints must be in the bucket's log."""
    for anchor in trust.anchors:
        if anchor.text is not None:
            checkpoint, problem = _open(anchor.text, trust)
            if checkpoint is None:
                result.findings.append(Finding("signature_invalid",
                                               f"the anchor {anchor.source}: {problem}"))
            elif checkpoint.origin == origin:
                result.anchored = True
                verdict = _compare(checkpoint, tree)
                if verdict is not None:
                    tree.forked = tree.forked or verdict[0] == "log_forked"
                    result.findings.append(Finding(verdict[0], f"the anchor {anchor.source}:"
                                                   f" {verdict[1]}"))
            continue
        if anchor.destination is None:
            continue
        where = f"the copy at {anchor.source}"
        read = _read_location(anchor.destination, project_id, result, where, origin)
        mine = {size: text for size, text in read.texts.items() if _origin_of(text) in
                (origin, None)}
        if mine:
            result.anchored = True
        _check_checkpoints(mine, where, origin, tree, trust, result)
        _check_tokens(_Read(mine, {s: t for s, t in read.tokens.items() if s in mine}),
                      where, trust, result)
        for size, tokens in read.tokens.items():
            known = result.timestamps.setdefault(size, [])
            known.extend(t for t in tokens if size in mine and t not in known)


def _origin_of(text: str) -> str | None:
    """The origin line of a checkpoint text (None when it has none)."""
    first = text.split("\n", 1)[0]
    return first or None


# --------------------------------------------------------------------------- coverage


def _check_coverage(segments: list[Segment], tree: _Tree, covered: int, spool_log: SpoolLog,
                    result: ProjectAudit) -> None:
    """A segment beyond the last one the spool sealed, or that no acceptable checkpoint
    covers, is `unsigned_segment` (a log of version 1 segments only has no checkpoints)."""
    signed = any(s.version >= 2 for s in segments) or bool(result.checkpoints)
    beyond = set()
    if spool_log.last_seq is not None:
        for segment in segments:
            seq = _int(segment.header.get("seq"))
            if seq > spool_log.last_seq:
                beyond.add(seq)
                result.findings.append(Finding(
                    "unsigned_segment", f"segment {seq} is beyond the last segment the spool"
                    f" sealed in this log ({spool_log.last_seq})", seq=seq))
    for seq, end in tree.ends:
        if signed and not tree.forked and end > covered and seq not in beyond:
            result.findings.append(Finding(
                "unsigned_segment", f"no valid checkpoint covers segment {seq} (tree size"
                f" {end}; the largest signed one is {covered})", seq=seq))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


