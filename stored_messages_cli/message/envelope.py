"""The encrypted form of a payload (SPEC 9.5): AES-256-GCM under one recipient's data key.

With `encryption = "per-recipient"` the object stored for a message is `gzip_member` of the
canonical JSON envelope

    {"alg":"AES-256-GCM","ciphertext":B64,"kid":KID,"nonce":B64,"sm_envelope":1}

whose plaintext is the payload's canonical bytes (SPEC 3). The envelope is the object's
"payload" for every check that hashes stored bytes (`sm-payload-sha256`, the manifest log,
`sm audit`), so they hold unchanged after the data key is destroyed (`sm forget`).

- The additional authenticated data binds the envelope to its object: `AAD_PREFIX`, the key
  id, a zero byte, the object key without the destination prefix (`bound_to`). An envelope
  copied over another object's key does not open.
- The nonce is derived, not drawn: the first 12 bytes of HMAC-SHA256 under a nonce key
  derived from the data key, of the AAD and the payload's SHA-256. The same message under the
  same key gives the same bytes (an upload retried or a duplicate ingested is no conflict);
  two different payloads share a nonce only if their hashes collide.

Pure: no I/O, no spool; the key store (`spool/recipient_keys.py`) hands in the keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Final

ENVELOPE_VERSION: Final = 1
ALGORITHM: Final = "AES-256-GCM"
AAD_PREFIX: Final = b"sm-envelope-v1\x00"
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
_ENVELOPE_FIELDS: Final = frozenset({"sm_envelope", "alg", "kid", "nonce", "ciphertext"})
# What a canonical envelope starts with (its keys sorted: `alg` first).
_START: Final = b'{"alg":"' + ALGORITHM.encode("ascii") + b'","ciphertext":"'


class EnvelopeError(ValueError):
    """Bytes that claim to be an envelope but are not one, or that do not open."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed envelope: the key id, the nonce and the ciphertext (with its 16-byte tag)."""

    kid: str
    nonce: bytes
    ciphertext: bytes


class DataKey:
    """One recipient's data key, ready to seal and open: the cipher and the nonce key."""

    __slots__ = ("_cipher", "_nonce_key", "kid")

    def __init__(self, kid: str, secret: bytes) -> None:
        if len(secret) != KEY_BYTES:
            raise EnvelopeError(f"a data key is {KEY_BYTES} bytes, not {len(secret)}")
        # here, not at the top: only an encrypted project loads the cipher (~10 ms)
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.kid = kid
        self._cipher = AESGCM(secret)
        self._nonce_key = hmac.digest(secret, b"sm-envelope-nonce", "sha256")

    def seal(self, payload: bytes, bound_to: str, payload_sha256: str | None = None) -> bytes:
        """The canonical envelope bytes of `payload` for the object `bound_to` (its key
        without the destination prefix). `payload_sha256` (hex), when the caller has it,
        saves hashing the payload again for the nonce."""
        aad = associated_data(self.kid, bound_to)
        digest = (bytes.fromhex(payload_sha256) if payload_sha256
                  else hashlib.sha256(payload).digest())
        nonce = hmac.digest(self._nonce_key, aad + digest, "sha256")[:NONCE_BYTES]
        sealed = self._cipher.encrypt(nonce, payload, aad)
        # canonical JSON by hand: base64 and a hex kid need no escaping, keys in sorted order
        return b"".join((_START, base64.b64encode(sealed), b'","kid":"', self.kid.encode("ascii"),
                         b'","nonce":"', base64.b64encode(nonce), b'","sm_envelope":1}'))

    def open(self, envelope: Envelope, bound_to: str) -> bytes:
        """The payload sealed in `envelope`; EnvelopeError when it does not open with this
        key for this object (altered, swapped from another object, or another key)."""
        if envelope.kid != self.kid:
            raise EnvelopeError(f"the envelope is sealed with key {envelope.kid}, not {self.kid}")
        from cryptography.exceptions import InvalidTag

        try:
            return self._cipher.decrypt(envelope.nonce, envelope.ciphertext,
                                        associated_data(self.kid, bound_to))
        except InvalidTag:
            raise EnvelopeError("the envelope does not open: it was altered, or it belongs to"
                                " another object") from None

    def __repr__(self) -> str:  # never the key, also not in a traceback
        return f"DataKey(kid={self.kid!r})"


def associated_data(kid: str, bound_to: str) -> bytes:
    """The AAD of an envelope: `AAD_PREFIX`, the key id, a zero byte, the relative key."""
    return AAD_PREFIX + kid.encode("ascii") + b"\x00" + bound_to.encode("utf-8")


def looks_sealed(payload: bytes) -> bool:
    """True when `payload` starts as a canonical envelope does (a stored message's payload
    never does: it has no `alg` field before `ciphertext`); `parse_envelope` decides."""
    return payload.startswith(_START)


def parse_envelope(payload: bytes) -> Envelope:
    """The envelope `payload` holds, checked strictly: exactly its five fields, version 1,
    AES-256-GCM, a hex key id, a 12-byte nonce, base64 that decodes, canonical bytes."""
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        raise EnvelopeError("not JSON") from None
    if not isinstance(document, dict) or set(document) != _ENVELOPE_FIELDS:
        raise EnvelopeError("not an envelope (its fields are not exactly "
                            f"{', '.join(sorted(_ENVELOPE_FIELDS))})")
    if document["sm_envelope"] != ENVELOPE_VERSION or type(document["sm_envelope"]) is not int:
        raise EnvelopeError(f"envelope version {document['sm_envelope']!r} is not known")
    if document["alg"] != ALGORITHM:
        raise EnvelopeError(f"algorithm {document['alg']!r} is not {ALGORITHM}")
    kid = document["kid"]
    if not isinstance(kid, str) or not is_key_id(kid):
        raise EnvelopeError("the key id is not 32 lowercase hex digits")
    try:
        nonce = base64.b64decode(str(document["nonce"]), validate=True)
        ciphertext = base64.b64decode(str(document["ciphertext"]), validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError("the nonce or ciphertext is not base64") from None
    if len(nonce) != NONCE_BYTES or len(ciphertext) < 16:
        raise EnvelopeError("the nonce or ciphertext has the wrong length")
    envelope = Envelope(kid, nonce, ciphertext)
    if canonical_envelope(envelope) != payload:
        raise EnvelopeError("the envelope is not in the canonical encoding sm writes")
    return envelope


def canonical_envelope(envelope: Envelope) -> bytes:
    """The canonical bytes of an envelope (what `DataKey.seal` writes)."""
    return b"".join((_START, base64.b64encode(envelope.ciphertext), b'","kid":"',
                     envelope.kid.encode("ascii"), b'","nonce":"',
                     base64.b64encode(envelope.nonce), b'","sm_envelope":1}'))


def is_key_id(text: str) -> bool:
    """True for a key id as sm makes them: 32 lowercase hex digits."""
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def keyed_digest(key: bytes) -> HmacDigest:
    """The `recipient_hash = "hmac-sha256"` digest under `key`: a callable giving the
    lowercase hex HMAC-SHA256 of its bytes (what `sha256_hex` is for `"sha256"`)."""
    return HmacDigest(key)


class HmacDigest:
    """Lowercase hex HMAC-SHA256 under one key (a recipient hash key)."""

    __slots__ = ("_base",)

    def __init__(self, key: bytes) -> None:
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, data: bytes) -> str:
        mac = self._base.copy()
        mac.update(data)
        return mac.hexdigest()

    def __repr__(self) -> str:
        return "HmacDigest(<key>)"
