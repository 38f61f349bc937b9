"""C2SP signed notes and tlog checkpoints: the signed form of a log's root (SPEC 9.1).

A checkpoint is three lines (origin, tree size, base64 root) and a signed note appends a
blank line and one `— name base64(key ID ‖ signature)` line per signature
(https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint). The rules are those of Go's
golang.org/x/mod/sumdb/note, so a checkpoint sm writes opens with Go's tools and the other
way round; this module only adds strictness (every signature line of a given key is checked,
not only its first). Ed25519 only; no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ALGORITHM_ED25519 = 0x01
KEY_ID_SIZE = 4
PUBLIC_KEY_SIZE = 32
ROOT_SIZE = 32
MAX_SIGNATURES = 100  # as Go's note.Open: a note is small, and so is the work to open it
SIGNATURE_PREFIX = "\u2014 "  # EM DASH, space
MAX_TREE_SIZE = (1 << 63) - 1  # Go's int64: larger sizes no other tool could read
_CANONICAL_SIZE = re.compile(r"0|[1-9][0-9]*")


class NoteError(ValueError):
    """A signed note, checkpoint or verifier key that is malformed, or a signature by a key
    the caller trusts that does not verify."""


class NoteSigner(Protocol):
    """What signs a note: a key name, its 4-byte key ID, and Ed25519 over the text."""

    @property
    def name(self) -> str:
        """The key name written in the signature line."""
        ...

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID written before the signature."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of `message`."""
        ...


def key_id_of(name: str, public_key: bytes) -> bytes:
    """An Ed25519 key's ID: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key), first 4 bytes."""
    material = name.encode("utf-8") + b"\n" + bytes([ALGORITHM_ED25519]) + public_key
    return hashlib.sha256(material).digest()[:KEY_ID_SIZE]


def is_valid_key_name(name: str) -> bool:
    """A key name is non-empty and holds no space, no `+` and no control character."""
    return (bool(name) and "+" not in name
            and not any(c.isspace() or c < " " for c in name) and _is_utf8(name))


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def decode_base64(text: str) -> bytes:
    """`text` decoded as standard base64 (RFC 4648 section 4); NoteError for any other
    character or a bad padding."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError("not base64") from None


def encode_base64(data: bytes) -> str:
    """`data` in standard base64, as notes, keys and checkpoints write it."""
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class NoteVerifier:
    """An Ed25519 verifier key of the signed-note format: `name+hex(key ID)+base64(0x01 ‖
    public key)`. Given to `open_note`, it is trusted: its signatures must verify."""

    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> NoteVerifier:
        """The verifier of an Ed25519 `public_key` (32 bytes) under `name`."""
        if not is_valid_key_name(name):
            raise NoteError(f"{name!r} cannot be a key name (no spaces, no +, not empty)")
        if len(public_key) != PUBLIC_KEY_SIZE:
            raise NoteError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")
        return cls(name, key_id_of(name, public_key), bytes(public_key))

    @classmethod
    def parse(cls, vkey: str) -> NoteVerifier:
        """The verifier a verifier key string names; NoteError when it is malformed, not
        Ed25519, or its key ID does not match its name and key."""
        if not isinstance(vkey, str):
            raise NoteError("a verifier key is text")
        parts = vkey.split("+", 2)  # base64 may hold `+`: only the first two separate
        if len(parts) != 3:
            raise NoteError("a verifier key reads name+keyid+key")
        name, key_id_hex, key_text = parts
        if not is_valid_key_name(name):
            raise NoteError("the verifier key's name is empty or holds a space or +")
        if len(key_id_hex) != 2 * KEY_ID_SIZE or not re.fullmatch("[0-9a-fA-F]+", key_id_hex):
            raise NoteError("the verifier key's key ID is not 8 hex digits")
        key = decode_base64(key_text)
        if not key or key[0] != ALGORITHM_ED25519:
            raise NoteError("the verifier key is not an Ed25519 key")
        verifier = cls.from_public_key(name, key[1:])
        if verifier.key_id != bytes.fromhex(key_id_hex):
            raise NoteError("the verifier key's key ID does not match its name and key")
        try:
            Ed25519PublicKey.from_public_bytes(verifier.public_key)
        except ValueError:
            raise NoteError("the verifier key holds no valid Ed25519 key") from None
        return verifier

    @property
    def verifier_key(self) -> str:
        """The verifier key string, as `parse` reads it."""
        key = encode_base64(bytes([ALGORITHM_ED25519]) + self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{key}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when `signature` is this key's Ed25519 signature of `message`."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class OpenedNote:
    """A note whose signatures were read: `verified_by` names the given keys whose signatures
    verified (empty when none did: then nothing vouches for the text), `unknown` the (name,
    key ID) of signatures by keys not given, which were not checked."""

    text: str
    verified_by: list[str] = field(default_factory=list)
    unknown: list[tuple[str, bytes]] = field(default_factory=list)


def _check_text(text: str, what: str) -> bytes:
    """`text` as UTF-8 bytes; NoteError unless it holds no control character but newline."""
    if not isinstance(text, str):
        raise NoteError(f"a {what} is text")
    if not _is_utf8(text):
        raise NoteError(f"a {what} must be valid UTF-8")
    if any(c < " " and c != "\n" for c in text):
        raise NoteError(f"a {what} may hold no control character but newline")
    return text.encode("utf-8")


def sign_note(text: str, signer: NoteSigner) -> str:
    """`text` (ending in a newline) signed by `signer`: the text, a blank line and the
    signature line `— name base64(key ID ‖ Ed25519 signature of the text)`."""
    message = _check_text(text, "note text")
    if not text.endswith("\n"):
        raise NoteError("a note text ends with a newline")
    if not is_valid_key_name(signer.name) or len(signer.key_id) != KEY_ID_SIZE:
        raise NoteError(f"{signer.name!r} cannot sign notes (bad key name or key ID)")
    signature = signer.sign(message)
    return f"{text}\n{SIGNATURE_PREFIX}{signer.name} {encode_base64(signer.key_id + signature)}\n"


def _trusted_keys(verifiers: Sequence[NoteVerifier]) -> dict[tuple[str, bytes], NoteVerifier]:
    trusted: dict[tuple[str, bytes], NoteVerifier] = {}
    for verifier in verifiers:
        known = trusted.setdefault((verifier.name, verifier.key_id), verifier)
        if known != verifier:  # two keys, one name and ID: no signature could be attributed
            raise NoteError(f"two verifier keys are named {verifier.name}+"
                            f"{verifier.key_id.hex()}")
    return trusted


def _signature_line(line: str) -> tuple[str, bytes, bytes]:
    """(name, key ID, signature) of one signature line, or NoteError."""
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError("a signature line starts with an em dash and a space")
    name, _, encoded = line[len(SIGNATURE_PREFIX):].partition(" ")
    if not is_valid_key_name(name) or not encoded:
        raise NoteError("a signature line reads: — name signature")
    raw = decode_base64(encoded)
    if len(raw) <= KEY_ID_SIZE:
        raise NoteError("a signature is shorter than its key ID")
    return name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:]


def open_note(note: str, verifiers: Sequence[NoteVerifier]) -> OpenedNote:
    """The text and signers of a signed note, checking the signature of every given key.

    NoteError when the note is malformed, or a signature line of a given key (same name and
    key ID) does not verify. Signatures by other keys are listed in `unknown`, unchecked.
    The caller decides what is enough: an empty `verified_by` means nothing vouches for the
    text (C2SP: reject it unless no key was given on purpose)."""
    message = _check_text(note, "signed note")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("a signed note has a blank line before its signatures")
    text, signatures = note[: split + 1], note[split + 2:]
    if not signatures.endswith("\n"):
        raise NoteError("a signed note ends with a signature line and a newline")
    lines = signatures[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"a signed note has at most {MAX_SIGNATURES} signatures")
    trusted = _trusted_keys(verifiers)
    signed = message[: len(text.encode("utf-8"))]
    opened = OpenedNote(text)
    seen_unknown: set[str] = set()
    for line in lines:
        name, key_id, signature = _signature_line(line)
        verifier = trusted.get((name, key_id))
        if verifier is None:
            if line not in seen_unknown:
                seen_unknown.add(line)
                opened.unknown.append((name, key_id))
            continue
        if not verifier.verify(signed, signature):
            raise NoteError(f"the signature by {name}+{key_id.hex()} does not verify")
        if name not in opened.verified_by:
            opened.verified_by.append(name)
    return opened


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint's text: the log's origin, its tree size and root, and any extension
    lines (opaque, kept as they are)."""

    origin: str
    tree_size: int
    root: bytes
    extensions: tuple[str, ...] = ()


def format_checkpoint(origin: str, tree_size: int, root: bytes,
                      extensions: Sequence[str] = ()) -> str:
    """The checkpoint text `origin\\nsize\\nbase64(root)\\n` (then any extension lines)."""
    if (not isinstance(tree_size, int) or isinstance(tree_size, bool)
            or not 0 <= tree_size <= MAX_TREE_SIZE):
        raise NoteError(f"a tree size is a whole number from 0, not {tree_size!r}")
    if not isinstance(root, bytes) or len(root) != ROOT_SIZE:
        raise NoteError(f"a root is {ROOT_SIZE} bytes")
    lines = [origin, str(tree_size), encode_base64(root), *extensions]
    if not all(isinstance(line, str) for line in lines):
        raise NoteError("checkpoint lines are text")
    if any(not line or "\n" in line for line in lines):
        raise NoteError("checkpoint lines are not empty and hold no newline")
    text = "\n".join(lines) + "\n"
    _check_text(text, "checkpoint")
    return text


def parse_checkpoint(text: str) -> Checkpoint:
    """The checkpoint a note text holds; NoteError unless it is exactly: a non-empty
    origin, a canonical decimal size, a canonical base64 root of 32 bytes, and non-empty
    extension lines, each line ending in a newline."""
    _check_text(text, "checkpoint")
    if not text.endswith("\n"):
        raise NoteError("a checkpoint ends with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("a checkpoint has an origin, a tree size and a root line")
    origin, size_line, root_line, *extensions = lines
    if not origin or not all(extensions):
        raise NoteError("a checkpoint has no empty lines")
    if not _CANONICAL_SIZE.fullmatch(size_line) or int(size_line) > MAX_TREE_SIZE:
        raise NoteError(f"{size_line!r} is not a tree size (decimal, no leading zeros)")
    root = decode_base64(root_line)
    if len(root) != ROOT_SIZE or encode_base64(root) != root_line:
        raise NoteError(f"a checkpoint root is {ROOT_SIZE} bytes in canonical base64")
    return Checkpoint(origin, int(size_line), root, tuple(extensions))


def parse_verifier_keys(keys: Sequence[str]) -> tuple[NoteVerifier, ...]:
    """Verifier keys (`name+hex8+base64`, surrounding blanks ignored) as verifiers; a
    NoteError names the first one that is not a verifier key."""
    verifiers = []
    for key in keys:
        try:
            verifiers.append(NoteVerifier.parse(key.strip()))
        except NoteError as exc:
            raise NoteError(f"{key.strip()!r} is not a verifier key ({exc})") from None
    return tuple(verifiers)
