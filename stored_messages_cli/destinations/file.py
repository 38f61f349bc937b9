"""`file:///PATH/`: a local folder with the same layout as a bucket.

Writes are atomic and create-only: the body goes to a temp file which is fsynced, then
hard-linked into place (fails if the key exists), and the folder is fsynced.
"""

from __future__ import annotations

import gzip
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, DestinationError, ObjectNotFound
from ..model import sha256_hex
from .base import (
    PAYLOAD_SHA_METADATA,
    Check,
    DestinationOptions,
    FetchedObject,
    ObjectInfo,
    PutResult,
    existing_object,
)


class FileDestination:
    """A folder archive. Metadata is derived from the bytes (the gzip holds the payload)."""

    def __init__(self, url: str, options: DestinationOptions | None = None) -> None:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"{url}: file URLs name a local path, like file:///srv/archive/")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ConfigError(f"{url}: use an absolute path, like file:///srv/archive/")
        self.root = Path(path)
        self.prefix = ""
        self.url = "file://" + str(self.root).rstrip("/") + "/"

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ConfigError(f"refusing unsafe key {key!r}")
        return self.root / key

    def put(self, key: str, body: bytes, payload_sha256: str) -> PutResult:
        """Create the file for `key` atomically; same bytes already there count as stored."""
        target = self._path(key)
        try:
            if target.exists():
                return self._existing(key, payload_sha256)
            self._make_folders(target.parent)
            tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(body)
                    fh.flush()
                    os.fsync(fh.fileno())
                try:
                    os.link(tmp, target)  # atomic exclusive create of the final name
                except FileExistsError:
                    return self._existing(key, payload_sha256)
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(target.parent)
            return PutResult(key=key, created=True)
        except OSError as exc:
            raise DestinationError(f"cannot write {target}: {exc.strerror or exc}") from exc

    def _make_folders(self, folder: Path) -> None:
        """Create `folder` and missing parents (0700), fsyncing each parent that gained one.

        Without the parent fsyncs a power loss could lose a new folder, and the file in it,
        after the spool had recorded the message as stored.
        """
        missing: list[Path] = []
        probe = folder
        while not probe.is_dir():
            missing.append(probe)
            if probe.parent == probe:
                break
            probe = probe.parent
        for created in reversed(missing):
            try:
                created.mkdir(mode=0o700)
            except FileExistsError:  # another writer made it first
                continue
            _fsync_dir(created.parent)

    def _existing(self, key: str, payload_sha256: str) -> PutResult:
        return existing_object(self, key, payload_sha256, key)

    def get(self, key: str) -> FetchedObject:
        """Read the file for `key`."""
        target = self._path(key)
        try:
            body = target.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"{key} is not in {self.url}") from None
        except OSError as exc:
            raise DestinationError(f"cannot read {target}: {exc.strerror or exc}") from exc
        return FetchedObject(_info(key, body), body)

    def head(self, key: str) -> ObjectInfo | None:
        """Metadata of `key`, or None."""
        try:
            return self.get(key).info
        except ObjectNotFound:
            return None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Files under `prefix`, in key order (temp files are skipped)."""
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._path(folder) if folder else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield ObjectInfo(key=key, size=full.stat().st_size)

    def delete(self, key: str) -> None:
        """Remove the file for `key` if present."""
        self._path(key).unlink(missing_ok=True)

    def checks(self) -> list[Check]:
        """Folder exists, is writable, and is not readable by other users."""
        if not self.root.is_dir():
            return [Check("reachable", "fail", f"{self.root} is not a folder")]
        mode = self.root.stat().st_mode
        results = [Check("reachable", "pass", f"{self.root} exists")]
        if mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IXOTH):
            results.append(Check("private", "fail",
                                 f"{self.root} is open to other users (mode"
                                 f" {stat.filemode(mode)}); run chmod 700 on it"))
        else:
            results.append(Check("private", "pass", "folder is closed to other users"))
        results.append(Check("encryption", "warn",
                             "a local folder is only as encrypted as its disk"))
        return results

    def close(self) -> None:
        """Nothing to release."""


def _info(key: str, body: bytes) -> ObjectInfo:
    try:
        payload_sha = sha256_hex(gzip.decompress(body))
    except (OSError, EOFError):
        payload_sha = None  # not gzip: fetch reports the mismatch
    return ObjectInfo(key=key, size=len(body), payload_sha256=payload_sha,
                      metadata={PAYLOAD_SHA_METADATA: payload_sha or ""})


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_folder(url: str) -> None:
    """Create a file destination's folder, owner-only (used by `sm connect`)."""
    dest = FileDestination(url)
    dest.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not os.access(dest.root, os.W_OK):
        raise ConfigError(f"{dest.root} is not writable")
