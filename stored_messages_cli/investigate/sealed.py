"""Reading sealed objects (SPEC 9.5): envelopes opened with the spool's recipient keys.

Every verified read (`verified.read_verified`: `sm fetch`, `find`, `show`, `export`,
`index rebuild`) hands the payload it checked to `opened`: a payload that is an envelope is
opened with the data key its `kid` names, found in the spool's `recipient_keys`; after
`sm forget` that is `Erased` ("erased on DATE"), and on a machine whose spool never held the
key (an investigator's read-only connection), `KeyUnavailable`: such a machine lists and
proves, and cannot read. The keys are the ones of the spool the command opened
(`use_keys`, called by the CLI when it opens a spool); without one, envelopes do not open
and recipient hashes are SHA-256 (SPEC 3).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config.privacy import KeyUnavailable, ProjectProtections
from ..errors import IntegrityError, SmError
from ..message import format_utc, sha256_hex
from ..message.envelope import EnvelopeError, looks_sealed, parse_envelope
from ..message.recipients import Digest
from ..spool import Spool
from ..spool.sealing import RecipientKeys
from .index import IndexEntry

_lock = threading.Lock()
_opener: list[Callable[[], Spool]] = []  # how to open the spool whose keys reads use
_open: list[RecipientKeys] = []  # its keys, once opened


def use_keys_of(opener: Callable[[], Spool] | None) -> None:
    """Read with the keys of the spool `opener` opens (on the first envelope), from now on
    in this process (None: no keys). The spool is opened apart from the command's own, and
    kept open, so reads after the command closed its spool (export, a remote find) still
    find their keys."""
    with _lock:
        _opener[:] = [] if opener is None else [opener]
        _open.clear()


def current_keys() -> RecipientKeys | None:
    """The keys reads use, if any (the spool opened on first use)."""
    with _lock:
        if not _open and _opener:
            _open.append(_opener[0]().intake.keys)  # type: ignore[arg-type]
        return _open[0] if _open else None


def digest_for(project_id: str) -> Digest:
    """The project's recipient hash (HMAC-SHA256 when it is keyed, else SHA-256)."""
    keys = current_keys()
    return sha256_hex if keys is None else keys.digest_of(project_id)


def opened(key: str, relative_key: str, payload: bytes) -> bytes:
    """The payload sealed in `payload` when it is an envelope (else `payload` itself).

    `relative_key` is the object key without the destination prefix (the envelope's
    binding). Raises `Erased` after `sm forget`, `KeyUnavailable` without the key, and
    IntegrityError when the envelope is malformed or does not open (altered, or moved
    from another object's key).
    """
    if not looks_sealed(payload):
        return payload
    try:
        envelope = parse_envelope(payload)
    except EnvelopeError as exc:
        raise IntegrityError(f"integrity check failed for {key}: {exc}",
                             hint="the object was altered after it was archived") from None
    keys = current_keys()
    if keys is None:
        raise KeyUnavailable(f"{key} is encrypted (key {envelope.kid}) and no spool with its"
                             " keys is open", hint="read it on the machine whose spool"
                             " archived it; without the keys sm can list and prove only")
    data_key = keys.key_for(envelope.kid, key)
    try:
        return data_key.open(envelope, relative_key)
    except EnvelopeError as exc:
        raise IntegrityError(f"integrity check failed for {key}: {exc}",
                             hint="the object was altered or moved from another key after it"
                                  " was archived; do not rely on it") from None


def keyed_digests(config_file: Path) -> list[Digest]:
    """The keyed recipient hashes of the projects config.toml sets to `hmac-sha256` (a
    search by recipient tries each as well as SHA-256)."""
    lookup = ProjectProtections(config_file)
    return [protection.digest for project in lookup.any_keyed()
            if (protection := lookup(project)) is not None]


def erased_at(entries: Sequence[IndexEntry]) -> dict[tuple[str, str], float]:
    """(project, message id) → when it was erased, for those of `entries` stored before
    their recipient's key was last destroyed (a message stored after that is sealed under a
    new key)."""
    keys = current_keys()
    if keys is None or not entries:
        return {}
    by_project: dict[str, set[str]] = {}
    for entry in entries:
        by_project.setdefault(entry.project_id, set()).add(entry.recipient_hash)
    try:
        erased = {project: keys.erased_at(project, sorted(recipients))
                  for project, recipients in by_project.items()}
    except SmError:  # the spool the keys came from is closed (a remote find prints later)
        return {}
    found: dict[tuple[str, str], float] = {}
    for entry in entries:
        moment = erased[entry.project_id].get(entry.recipient_hash)
        if moment is not None and (entry.stored_at is None or entry.stored_at <= moment):
            found[(entry.project_id, entry.message_id)] = moment
    return found


def find_results(entries: Sequence[IndexEntry]) -> list[dict[str, Any]]:
    """The `sm find --json` rows of `entries`; an erased message's carries `erased_at`."""
    erased = erased_at(entries)
    rows = []
    for entry in entries:
        row = entry.find_result()
        moment = erased.get((entry.project_id, entry.message_id))
        if moment is not None:
            row["erased_at"] = format_utc(datetime.fromtimestamp(moment, UTC))
        rows.append(row)
    return rows
