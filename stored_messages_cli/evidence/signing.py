"""The log's signing key: the Ed25519 key that signs every checkpoint (SPEC 9.1).

The key file holds one line, the private key in the form of Go's sumdb/note
(`PRIVATE+KEY+name+hex(key ID)+base64(0x01 ‖ seed)`), so the same file works with Go's
tools. It lives in the home (`keys/signing.key`, or the setting `log_key_file`), 0600 in a
0700 folder, never in the bucket: whoever can write the bucket must not be able to sign.
An auditor holds the verifier key (`sm key show`) and checks checkpoints with it.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import socket
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..config.paths import Paths
from ..errors import ConfigError
from .note import (
    ALGORITHM_ED25519,
    NoteError,
    NoteVerifier,
    decode_base64,
    encode_base64,
    is_valid_key_name,
)
from .private_files import private_folder, write_private

PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"
KEY_FOLDER = "keys"
KEY_FILE = "signing.key"
MAX_KEY_FILE_BYTES = 4096  # one line of about 100 characters; anything larger is not a key
SEED_SIZE = 32
# What a file system without hard links answers os.link with.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


class LogSigner:
    """An Ed25519 signing key with its signed-note name and key ID (a `NoteSigner`)."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._verifier = NoteVerifier.from_public_key(name, public_key)  # checks the name
        self._private_key = private_key

    @classmethod
    def generate(cls, name: str) -> LogSigner:
        """A new random key named `name`."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_private_key(cls, text: str) -> LogSigner:
        """The key a `PRIVATE+KEY+name+keyid+base64` string holds; NoteError when it is
        malformed, not Ed25519, or its key ID does not match its name and key."""
        if not text.startswith(PRIVATE_KEY_PREFIX):
            raise NoteError("a private key starts with PRIVATE+KEY+")
        parts = text[len(PRIVATE_KEY_PREFIX):].split("+", 2)
        if len(parts) != 3:
            raise NoteError("a private key reads PRIVATE+KEY+name+keyid+key")
        name, key_id_hex, key_text = parts
        if not is_valid_key_name(name):
            raise NoteError("the private key's name is empty or holds a space or +")
        if not re.fullmatch("[0-9a-fA-F]{8}", key_id_hex):
            raise NoteError("the private key's key ID is not 8 hex digits")
        key = decode_base64(key_text)
        if len(key) != 1 + SEED_SIZE or key[0] != ALGORITHM_ED25519:
            raise NoteError("the private key is not an Ed25519 key")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(key[1:]))
        if signer.key_id != bytes.fromhex(key_id_hex):
            raise NoteError("the private key's key ID does not match its name and key")
        return signer

    @property
    def name(self) -> str:
        """The key name in every signature line."""
        return self._verifier.name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID in every signature."""
        return self._verifier.key_id

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of `message`."""
        return self._private_key.sign(message)

    def verifier(self) -> NoteVerifier:
        """The verifier of this key's signatures."""
        return self._verifier

    def verifier_key(self) -> str:
        """The verifier key string to give an auditor (`name+keyid+base64(0x01 ‖ key)`)."""
        return self._verifier.verifier_key

    def private_key_text(self) -> str:
        """The private key string the key file holds; secret."""
        seed = self._private_key.private_bytes_raw()
        key = encode_base64(bytes([ALGORITHM_ED25519]) + seed)
        return f"{PRIVATE_KEY_PREFIX}{self.name}+{self.key_id.hex()}+{key}"

    def __repr__(self) -> str:  # never the private key, also not in a traceback
        return f"LogSigner({self.verifier_key()})"


def default_key_name() -> str:
    """`sm-` and this host's name, reduced to letters, digits, dots and dashes."""
    host = re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname()).strip(".-")[:63]
    return f"sm-{host or 'host'}"


def key_home(paths: Paths) -> Path:
    """The folder of the home's config file (SM_HOME, or the user config folder)."""
    return paths.config_file.parent


def signing_key_path(home_folder: Path, setting: str | None) -> Path:
    """The key file: the setting `log_key_file` when set (a relative path is taken from the
    home folder), else `keys/signing.key` in the home folder."""
    if setting:
        return home_folder / Path(setting).expanduser()  # an absolute setting stays as it is
    return home_folder / KEY_FOLDER / KEY_FILE


def create_signing_key(path: Path, name: str) -> LogSigner:
    """A new key written to `path` (0600; missing folders 0700). Create-only: the file
    appears whole or not at all, and FileExistsError when `path` already exists."""
    try:
        signer = LogSigner.generate(name)
    except NoteError:
        raise ConfigError(f"{name!r} cannot be a key name",
                          hint="choose one of letters, digits, dots and dashes, e.g."
                          f" {default_key_name()}") from None
    try:
        private_folder(path.parent)
        # Written whole beside it, then linked into place: linking never replaces a file,
        # so a racing process sees no key, or the whole key, never half of one.
        content = (signer.private_key_text() + "\n").encode("ascii")
        staged = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        write_private(staged, content, exclusive=True)
        try:
            os.link(staged, path)
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            write_private(path, content, exclusive=True)  # still create-only (O_EXCL)
        finally:
            staged.unlink()
        _sync_folder(path.parent)
    except FileExistsError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot create the signing key {path}: {exc.strerror or exc}",
                          hint="choose a writable home (--home or SM_HOME) or set"
                          " log_key_file") from None
    return signer


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (the new key's name) to disk, where the system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_signing_key(path: Path) -> LogSigner:
    """The key in `path`; ConfigError (what is wrong, and what to do) when it is missing,
    unreadable, open to other users (any group or other permission) or not a key."""
    try:
        # O_NONBLOCK: a FIFO at the key's path must be refused below, not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(f"no signing key at {path}", hint="sm key init") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the signing key {path}: {exc.strerror or exc}",
                          hint=f"run sm as the owner of {path}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"the signing key {path} is not a file",
                              hint="set log_key_file to the key file, or run sm key init")
        if mode & 0o077:
            raise ConfigError(f"the signing key {path} is open to other users (mode"
                              f" {stat.filemode(mode)}); sm refuses to use it",
                              hint=f"chmod 600 {path}")
        content = os.read(fd, MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    try:
        if len(content) > MAX_KEY_FILE_BYTES:
            raise NoteError("it is too large")
        return LogSigner.from_private_key(content.decode("ascii").strip())
    except (NoteError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not a signing key: {exc}",
                          hint="restore the key file from a backup (a new key needs a new"
                          " verifier key at the auditor: move it away, sm key init)") from None


def load_or_create_signing_key(path: Path, name: str | None = None
                               ) -> tuple[LogSigner, bool]:
    """The key in `path`, created first (named `name`, else `default_key_name()`) when
    there is none; True when this call created it. Of two processes creating at once, one
    writes its key and the other loads that one."""
    if not os.path.lexists(path):
        try:
            return create_signing_key(path, name or default_key_name()), True
        except FileExistsError:
            pass  # another process won the race: use its key
    return load_signing_key(path), False
