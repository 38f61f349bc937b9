"""A project's privacy settings resolved (SPEC 9.5): its recipient hash and its key wrapper.

- `recipient_hash = "hmac-sha256"`: identities are hashed with HMAC-SHA256 under the key in
  `recipient_hash_key_file` (default `keys/recipient-hash.key` in the home);
- `encryption = "per-recipient"`: data keys are wrapped by the master key in
  `master_key_file` (default `keys/master.key`), or, with `kms_key_id`, by AWS KMS.

Both key files hold 32 random bytes, base64 on one line, 0600 in a 0700 folder, and are
created when missing (written whole beside the name, then linked into place: two processes
creating at once both end up with the one that won). A project's own keys override the
top-level ones. `ProjectProtections` is intake's lookup: read again whenever config.toml
changes, from the last good configuration while it does not load.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import os
import secrets
import stat
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError, SmError
from ..message import sha256_hex
from ..message.envelope import keyed_digest
from ..message.recipients import Digest
from .privacy_choices import HMAC_SHA256, PER_RECIPIENT, SHA256

if TYPE_CHECKING:
    from .settings import Settings

KEY_FOLDER = "keys"
MASTER_KEY_FILE = "master.key"
HASH_KEY_FILE = "recipient-hash.key"
KEY_BYTES = 32
_MAX_FILE = 256
RECHECK_SECONDS = 1.0  # how often intake looks whether config.toml changed
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


class KeyUnavailable(SmError):
    """A data key that cannot be used: erased, not in this spool, or not unwrappable."""


class KeyWrapper(Protocol):
    """What wraps data keys: the master key file (AES-256-GCM) or an AWS KMS key."""

    @property
    def name(self) -> str:
        """What `wrapped_with` records: `master:<fingerprint>` or `kms:<key id>`."""
        ...

    def wrap(self, secret: bytes, context: bytes) -> bytes:
        """`secret` wrapped, bound to `context` (the key id and project)."""
        ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """The secret `wrap` wrapped with the same `context`; KeyUnavailable otherwise."""
        ...


@dataclass(frozen=True)
class Protection:
    """A project's privacy settings as intake and readers use them: the recipient hash
    (SHA-256, or HMAC-SHA256 under `hash_key`) and, for `per-recipient` encryption, the key
    wrapper (None: not encrypted)."""

    recipient_hash: str = SHA256
    hash_key: bytes | None = None
    wrapper: KeyWrapper | None = None

    @cached_property
    def digest(self) -> Digest:
        """The project's identity hash (`sha256_hex`, or the keyed HMAC)."""
        if self.recipient_hash == HMAC_SHA256 and self.hash_key is not None:
            return keyed_digest(self.hash_key)
        return sha256_hex

    @property
    def plain(self) -> bool:
        """True when the project stores messages as SPEC 3 has it (nothing to do)."""
        return self.recipient_hash == SHA256 and self.wrapper is None


class MasterKeyWrapper:
    """Data keys wrapped with AES-256-GCM under the master key (random nonce, the context
    as associated data): `nonce ‖ ciphertext ‖ tag`."""

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # only when encrypted

        self._cipher = AESGCM(key)
        self.name = "master:" + hashlib.sha256(b"sm-master-key-id\x00" + key).hexdigest()[:16]

    def wrap(self, secret: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._cipher.encrypt(nonce, secret, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._cipher.decrypt(wrapped[:12], wrapped[12:], context)
        except (InvalidTag, ValueError):
            raise KeyUnavailable("a wrapped data key does not unwrap with the master key",
                                 hint="the spool's keys were wrapped with another master key"
                                      " (restore master_key_file from its backup)") from None

    def __repr__(self) -> str:
        return f"MasterKeyWrapper({self.name})"


class KmsWrapper:
    """Data keys wrapped by AWS KMS (`Encrypt`/`Decrypt` with the context as encryption
    context). boto3's client is made on first use, from the usual credential chain; the
    endpoint may be set with `AWS_ENDPOINT_URL_KMS` (or the project's `endpoint_url`)."""

    def __init__(self, key_id: str, region: str | None = None,
                 endpoint_url: str | None = None) -> None:
        self.key_id = key_id
        self.name = f"kms:{key_id}"
        self._region = region
        self._endpoint = endpoint_url
        self._client: Any = None

    def _kms(self) -> Any:
        if self._client is None:
            import boto3  # only a KMS-wrapped project loads boto3 here

            options: dict[str, Any] = {}
            if self._region:
                options["region_name"] = self._region
            if self._endpoint and not os.environ.get("AWS_ENDPOINT_URL_KMS"):
                options["endpoint_url"] = self._endpoint
            self._client = boto3.client("kms", **options)
        return self._client

    @staticmethod
    def _context(context: bytes) -> dict[str, str]:
        return {"sm": base64.b64encode(context).decode("ascii")}

    def wrap(self, secret: bytes, context: bytes) -> bytes:
        try:
            answer = self._kms().encrypt(KeyId=self.key_id, Plaintext=secret,
                                         EncryptionContext=self._context(context))
        except Exception as exc:  # noqa: BLE001 - botocore's errors, whatever they are
            raise KeyUnavailable(f"AWS KMS could not wrap a data key with {self.key_id}:"
                                 f" {exc}", hint="check kms_key_id and the credentials"
                                 " (kms:Encrypt)") from None
        return bytes(answer["CiphertextBlob"])

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            answer = self._kms().decrypt(KeyId=self.key_id, CiphertextBlob=wrapped,
                                         EncryptionContext=self._context(context))
        except Exception as exc:  # noqa: BLE001 - botocore's errors, whatever they are
            raise KeyUnavailable(f"AWS KMS could not unwrap a data key with {self.key_id}:"
                                 f" {exc}", hint="check kms_key_id and the credentials"
                                 " (kms:Decrypt)") from None
        return bytes(answer["Plaintext"])


def key_file_path(home_folder: Path, setting: str | None, default_name: str) -> Path:
    """A key file: the setting (relative to the home folder) or `keys/NAME` in the home."""
    if setting:
        return home_folder / Path(setting).expanduser()
    return home_folder / KEY_FOLDER / default_name


def load_or_create_key_file(path: Path) -> bytes:
    """The 32 bytes `path` holds (base64 on one line, 0600), made first when missing."""
    if not os.path.lexists(path):
        with contextlib.suppress(FileExistsError):  # another process won: use its key
            _create_key_file(path)
    return load_key_file(path)


def _create_key_file(path: Path) -> None:
    for folder in reversed([path.parent, *path.parent.parents]):
        if not folder.exists():
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=0o700)
    content = base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n"
    staged = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(staged, path)  # never replaces a file: the whole key, or none
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        staged.unlink()


def load_key_file(path: Path) -> bytes:
    """The key in `path`; ConfigError when missing, open to others, or not 32 bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc.strerror or exc}",
                          hint="restore it from its backup (docs/privacy.md)") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"the key file {path} is not a file")
        if mode & 0o077:
            raise ConfigError(f"the key file {path} is open to other users (mode"
                              f" {stat.filemode(mode)}); sm refuses to use it",
                              hint=f"chmod 600 {path}")
        content = os.read(fd, _MAX_FILE + 1)
    finally:
        os.close(fd)
    try:
        key = base64.b64decode(content.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(content) > _MAX_FILE or len(key) != KEY_BYTES:
        raise ConfigError(f"{path} is not a key file (32 bytes, base64 on one line)",
                          hint="restore it from its backup (docs/privacy.md)")
    return key


def protection_of(settings: Settings, project_id: str, home_folder: Path
                  ) -> Protection | None:
    """The project's privacy settings (its own keys over the top-level ones); None when it
    stores messages as SPEC 3 has it. Key files are created when missing."""
    project = settings.projects.get(project_id)

    def pick(name: str) -> Any:
        own = getattr(project, name, None) if project is not None else None
        return own if own is not None else getattr(settings, name)

    recipient_hash, encryption = pick("recipient_hash"), pick("encryption")
    if recipient_hash == SHA256 and encryption != PER_RECIPIENT:
        return None
    hash_key = None
    if recipient_hash == HMAC_SHA256:
        hash_key = load_or_create_key_file(key_file_path(
            home_folder, pick("recipient_hash_key_file"), HASH_KEY_FILE))
    wrapper: KeyWrapper | None = None
    if encryption == PER_RECIPIENT:
        kms_key_id = pick("kms_key_id")
        if kms_key_id:
            wrapper = KmsWrapper(kms_key_id, getattr(project, "region", None),
                                 getattr(project, "endpoint_url", None))
        else:
            wrapper = MasterKeyWrapper(load_or_create_key_file(key_file_path(
                home_folder, pick("master_key_file"), MASTER_KEY_FILE)))
    return Protection(recipient_hash, hash_key, wrapper)


class ProjectProtections:
    """Intake's and readers' lookup of `protection_of`, read again when config.toml changes
    (looked at once a second at most; from the last good copy while it does not load).
    `settings` given: those settings, once (a command that loaded them already)."""

    def __init__(self, config_file: Path, settings: Settings | None = None) -> None:
        self.config_file = config_file
        self._fixed = settings
        self._stamp: Any = False
        self._settings: Settings | None = settings
        self._made: dict[str, Protection | None] = {}
        self._checked = 0.0

    def _current(self) -> Settings | None:
        if self._fixed is not None:
            return self._fixed
        now = time.monotonic()
        if self._stamp is not False and now < self._checked + RECHECK_SECONDS:
            return self._settings  # config.toml looked at moments ago (intake: per message)
        self._checked = now
        try:
            found = self.config_file.stat()
            stamp: Any = (found.st_mtime_ns, found.st_size, found.st_ino)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            from .last_good import intake_settings  # pydantic only when a file is read

            self._settings = intake_settings(self.config_file).settings
            self._made = {}
            self._stamp = stamp
        return self._settings

    def __call__(self, project_id: str) -> Protection | None:
        settings = self._current()
        if settings is None:
            return None
        if project_id not in self._made:
            self._made[project_id] = protection_of(settings, project_id,
                                                   self.config_file.parent)
        return self._made[project_id]

    def any_keyed(self) -> list[str]:
        """The projects (of config.toml) whose recipient hash is keyed."""
        settings = self._current()
        if settings is None:
            return []
        return [pid for pid in settings.projects
                if (p := self(pid)) is not None and p.recipient_hash == HMAC_SHA256]


def privacy_note(settings: Settings, project_id: str) -> str | None:
    """What `sm connect` says of a project that hashes recipients with plain SHA-256 (the
    default): what that means, and the keyed choice (docs/privacy.md). None otherwise."""
    project = settings.projects.get(project_id)
    own = getattr(project, "recipient_hash", None) if project is not None else None
    if (own or settings.recipient_hash) != SHA256:
        return None
    return ("Recipients are hashed with plain SHA-256 (Iterable's layout): anyone holding an"
            " address can find its messages in the bucket. recipient_hash = \"hmac-sha256\""
            " keys the hash with a secret file instead (docs/privacy.md).")
