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
from pathlib import Path

from ..config.privacy import KeyUnavailable, ProjectProtections
from ..errors import IntegrityError
from ..message import sha256_hex
from ..message.envelope import EnvelopeError, looks_sealed, parse_envelope
from ..message.recipients import Digest
from ..spool.recipient_keys import RecipientKeys

_lock = threading.Lock()
_keys: list[RecipientKeys] = []


def use_keys(keys: RecipientKeys | None) -> None:
    """Read with `keys` from now on in this process (None: no keys)."""
    with _lock:
        _keys[:] = [] if keys is None else [keys]


def current_keys() -> RecipientKeys | None:
    """The keys reads use, if any."""
    with _lock:
        return _keys[0] if _keys else None


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
