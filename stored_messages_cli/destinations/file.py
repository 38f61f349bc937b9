"""`file:///PATH/`: a local folder with the same layout as a bucket.

Writes are atomic and create-only: the body goes to a temp file (in `.sm-tmp/` at the top of
the folder) which is fsynced, then hard-linked into place (fails if the key exists), and the
folder is fsynced. Every path is walked one folder at a time with `O_NOFOLLOW`, so a symlink
inside the tree is refused and no read or write ever lands outside the folder. Temp files a
crashed writer left behind are removed when the destination is opened. The folder itself is
made only by `sm connect` (`ensure_folder`): a missing root is `unreachable`, never re-created.
"""

from __future__ import annotations

import base64
import builtins
import errno
import hashlib
import itertools
import logging
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, DestinationError, ObjectNotFound
from ..message import payload_sha256_of
from ..states import CheckStatus
from .base import (
    PAYLOAD_SHA_METADATA,
    Check,
    DestinationOptions,
    FetchedObject,
    ObjectInfo,
    PutResult,
    existing_object,
)

logger = logging.getLogger("sm.destinations.file")

TEMP_FOLDER = ".sm-tmp"  # our own temp files; never an object, never listed
STALE_TEMP_SECONDS = 3600  # a write takes milliseconds: an hour-old temp file is a crash's
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class SymlinkRefused(DestinationError):
    """A folder or file inside the archive folder is a symlink: it is never followed."""


class FolderMissing(DestinationError):
    """The archive folder itself is gone: `unreachable` until it is back (SPEC 9.2)."""


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
        # Temp names: a random token of this destination and a running number (O_EXCL
        # refuses a name in use, so a clash can only fail a write, never mix two).
        self._tmp_token = uuid.uuid4().hex[:16]
        self._tmp_numbers = itertools.count()
        self.remove_stale_temp_files()

    # ----------------------------------------------------------------------- paths

    def _parts(self, key: str) -> list[str]:
        parts = key.split("/")
        if (key.startswith("/") or not key or any(p in ("", ".", "..") for p in parts)
                or parts[0] == TEMP_FOLDER or "\0" in key):
            raise ConfigError(f"refusing unsafe key {key!r}")
        return parts

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*self._parts(key))

    def _open_root(self) -> int:
        """A descriptor of the archive folder, which is never created here: a missing root
        (moved away, not mounted) is unreachable, not an empty archive to fill again."""
        # The folder itself may be a symlink (the operator chose it); nothing inside may be.
        flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
        try:
            return os.open(self.root, flags)
        except FileNotFoundError:
            raise FolderMissing(
                f"the archive folder {self.root} is missing; sm never re-creates a connected"
                " folder", hint=f"put the folder (or its mount) back at {self.root}, then:"
                " sm replay") from None

    def _open_folders(self, folders: list[str], *, create: bool) -> int:
        """A descriptor of root/folders…, opened without following any symlink (creating
        missing folders 0700, each fsynced into its parent, when `create`)."""
        fd = self._open_root()
        try:
            return self._walk(fd, folders, create=create)[0]
        finally:
            os.close(fd)

    def _walk(self, start: int, folders: list[str], *, create: bool) -> tuple[int, bool]:
        """A new descriptor of start/folders… (`start`, the root's, stays open), walked one
        folder at a time with `O_NOFOLLOW`; with `create`, missing folders are made 0700 and
        each is fsynced into its parent. Also whether the last folder was made here (then
        nothing can be in it yet)."""
        fd = os.dup(start) if not folders else start
        walked = self.root
        made = False  # a folder made here: every folder below it is new too
        try:
            for name in folders:
                walked = walked / name
                child = -1
                if not made:
                    try:
                        child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    except FileNotFoundError:
                        if not create:
                            raise
                    except OSError as exc:
                        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_symlink(fd, name):
                            raise self._symlink(walked) from None
                        raise
                if child < 0:
                    try:
                        os.mkdir(name, 0o700, dir_fd=fd)
                        os.fsync(fd)  # a power loss must not lose the new folder
                        made = True
                    except FileExistsError:  # another writer made it first
                        made = False
                    try:
                        child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    except OSError as exc:
                        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_symlink(fd, name):
                            raise self._symlink(walked) from None
                        raise
                if fd != start:
                    os.close(fd)
                fd = child
        except BaseException:
            if fd != start:
                os.close(fd)
            raise
        return fd, made

    def _symlink(self, path: Path) -> SymlinkRefused:
        return SymlinkRefused(
            f"{path} is a symlink inside the archive folder {self.root}; sm never follows one"
            " (a write could land outside the archive)",
            hint=f"replace {path} with a real folder, or connect the folder it points to")

    # ----------------------------------------------------------------------- objects

    def put(self, key: str, body: bytes, payload_sha256: str) -> PutResult:
        """Create the file for `key` atomically; the same bytes already there count as stored."""
        *folders, name = self._parts(key)
        try:
            root = self._open_root()  # once: the temp folder and the key's are walked from it
            try:
                tmp_dir = self._walk(root, [TEMP_FOLDER], create=True)[0]
                try:
                    dir_fd, made = self._walk(root, folders, create=True)
                except BaseException:
                    os.close(tmp_dir)
                    raise
            finally:
                os.close(root)
            try:
                # A folder just made here holds nothing yet; otherwise the key may be there.
                if not made and _exists(dir_fd, name):
                    return self._existing(key, body, payload_sha256)
                tmp = f"{name}.{self._tmp_token}{next(self._tmp_numbers)}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | getattr(os, "O_CLOEXEC", 0), 0o600, dir_fd=tmp_dir)
                try:
                    try:
                        _write_all(fd, body)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    try:  # atomic exclusive create of the final name
                        os.link(tmp, name, src_dir_fd=tmp_dir, dst_dir_fd=dir_fd,
                                follow_symlinks=False)
                    except FileExistsError:
                        return self._existing(key, body, payload_sha256)
                finally:
                    try:
                        os.unlink(tmp, dir_fd=tmp_dir)
                    except FileNotFoundError:
                        pass
                os.fsync(dir_fd)
                return PutResult(key=key, created=True)
            finally:
                os.close(dir_fd)
                os.close(tmp_dir)
        except SymlinkRefused:
            raise
        except OSError as exc:
            raise DestinationError(
                f"cannot write {self._path(key)}: {exc.strerror or exc}") from exc

    def _existing(self, key: str, body: bytes, payload_sha256: str) -> PutResult:
        return existing_object(self, key, body, payload_sha256, key)

    def _read(self, key: str) -> bytes:
        *folders, name = self._parts(key)
        dir_fd = self._open_folders(folders, create=False)
        try:
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise self._symlink(self._path(key)) from None
                raise
            with os.fdopen(fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    raise IsADirectoryError(errno.EISDIR, "not a file")
                return fh.read()
        finally:
            os.close(dir_fd)

    def get(self, key: str) -> FetchedObject:
        """Read the file for `key` (never through a symlink)."""
        target = self._path(key)
        try:
            body = self._read(key)
        except FileNotFoundError:
            raise ObjectNotFound(f"{key} is not in {self.url}") from None
        except SymlinkRefused:
            raise
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
        """Every file under `prefix`, in key order, names starting with `.` included.

        Only sm's own temp folder is skipped; symlinks are never followed or listed.
        """
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._path(folder) if folder else self.root
        try:  # the walk must not start through a symlinked folder either
            os.close(self._open_folders(self._parts(folder) if folder else [], create=False))
        except (FileNotFoundError, NotADirectoryError):
            return
        except SymlinkRefused:
            raise
        except OSError as exc:
            raise DestinationError(f"cannot list {base}: {exc.strerror or exc}") from exc
        for dirpath, dirnames, filenames in os.walk(base):  # never descends into symlinks
            here = Path(dirpath)
            if here == self.root:
                dirnames[:] = [d for d in dirnames if d != TEMP_FOLDER]
            dirnames.sort()
            for name in sorted(filenames):
                full = here / name
                try:
                    info = full.lstat()
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(info.st_mode):
                    if stat.S_ISLNK(info.st_mode):
                        logger.warning("skipping %s: a symlink inside the archive folder", full)
                    continue
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield ObjectInfo(key=key, size=info.st_size)

    def delete(self, key: str) -> None:
        """Remove the file for `key` if present (never through a symlinked folder)."""
        *folders, name = self._parts(key)
        try:
            dir_fd = self._open_folders(folders, create=False)
        except FileNotFoundError:
            return
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(dir_fd)

    # ----------------------------------------------------------------------- holds

    def hold_support(self) -> str | None:
        """A folder holds by mode: a held file is read-only (the spool's ledger says why)."""
        return None

    def _chmod(self, key: str, change: Callable[[int], int]) -> int:
        """Apply `change` to the file's mode (never through a symlink); the new mode."""
        *folders, name = self._parts(key)
        try:
            dir_fd = self._open_folders(folders, create=False)
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
                try:
                    mode = stat.S_IMODE(os.fstat(fd).st_mode)
                    wanted = change(mode)
                    if wanted != mode:
                        os.fchmod(fd, wanted)
                    return wanted
                finally:
                    os.close(fd)
            finally:
                os.close(dir_fd)
        except FileNotFoundError:
            raise ObjectNotFound(f"{key} is not in {self.url}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._symlink(self._path(key)) from None
            raise DestinationError(f"cannot change the mode of {self._path(key)}:"
                                   f" {exc.strerror or exc}") from exc

    def set_legal_hold(self, key: str, version_id: str | None, on: bool, case_id: str) -> None:
        """Held: read-only for everyone (a-w); released: writable by its owner again, as
        written (the spool keeps which case holds it)."""
        self._chmod(key, (lambda mode: mode & ~0o222) if on else (lambda mode: mode | 0o200))

    def legal_hold(self, key: str, version_id: str | None) -> bool:
        """True when the file is read-only for everyone."""
        return not self._chmod(key, lambda mode: mode) & 0o222

    def retention_support(self) -> str | None:
        """A folder keeps no retain-until date."""
        return f"{self.url} is a folder: it keeps no retention (a bucket does)"

    def retention_until(self, key: str, version_id: str | None) -> float | None:
        """A folder keeps no retain-until date."""
        if self.head(key) is None:
            raise ObjectNotFound(f"{key} is not in {self.url}")
        return None

    def extend_retention(self, key: str, version_id: str | None, until: float) -> None:
        """A folder has no retention to extend."""
        raise DestinationError(f"{self.url} is a folder: it keeps no retention to extend",
                               hint="retention is a bucket's (S3 object lock, a GCS retention"
                               " policy, an Azure immutability policy)")

    def remove_stale_temp_files(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Remove temp files an interrupted write left in `.sm-tmp/`; returns how many.

        Only files older than `older_than` seconds go: a younger one may belong to a write
        that another process is making right now.
        """
        folder = self.root / TEMP_FOLDER
        try:
            if folder.is_symlink() or not folder.is_dir():
                return 0
            names = os.listdir(folder)
        except OSError:
            return 0
        removed = 0
        cutoff = time.time() - older_than
        for name in names:
            path = folder / name
            try:
                info = path.lstat()
                if stat.S_ISREG(info.st_mode) and name.endswith(".tmp") and \
                        info.st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        if removed:
            logger.info("removed %d stale temp file(s) from %s", removed, folder)
        return removed

    def checks(self) -> builtins.list[Check]:
        """Folder exists, is writable, and is not readable by other users."""
        if not self.root.exists():
            return [Check("reachable", CheckStatus.FAIL, f"the archive folder {self.root} is"
                          " missing", hint=f"put the folder (or its mount) back at {self.root}")]
        if not self.root.is_dir():
            return [Check("reachable", CheckStatus.FAIL, f"{self.root} is not a folder")]
        mode = self.root.stat().st_mode
        results = [Check("reachable", CheckStatus.PASS, f"{self.root} exists")]
        if mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IXOTH):
            results.append(Check("private", CheckStatus.FAIL,
                                 f"{self.root} is open to other users (mode"
                                 f" {stat.filemode(mode)}); run chmod 700 on it"))
        else:
            results.append(Check("private", CheckStatus.PASS, "folder is closed to other users"))
        results.append(Check("encryption", CheckStatus.WARN,
                             "a local folder is only as encrypted as its disk"))
        return results

    def close(self) -> None:
        """Nothing to release."""


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` (a short write continues where it stopped)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _is_symlink(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _info(key: str, body: bytes) -> ObjectInfo:
    payload_sha = payload_sha256_of(body)  # bounded: None for a bomb or not gzip at all
    # Computed here from the bytes on disk, so it can be trusted like a store's checksum.
    checksum = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
    return ObjectInfo(key=key, size=len(body), payload_sha256=payload_sha,
                      metadata={PAYLOAD_SHA_METADATA: payload_sha or ""},
                      checksums={"sha256": checksum})


def ensure_folder(url: str) -> None:
    """Create a file destination's folder, owner-only (used by `sm connect`)."""
    dest = FileDestination(url)
    if not dest.root.is_dir():
        dest.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        _fsync_dir(dest.root.parent)
    if not os.access(dest.root, os.W_OK):
        raise ConfigError(f"{dest.root} is not writable")
