"""Files sm writes for an audit report or an export hold recipient hashes and message text:
each is created owner-only (0600) in folders sm creates owner-only (0700), whatever the umask
(SPEC 9.2). A folder the operator named that already exists keeps its mode (`--report .`
must never chmod the working folder); the files sm puts in it are still 0600."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(folder: Path) -> None:
    """Create `folder` and its missing parents 0700 (an existing one is left as it is)."""
    missing: list[Path] = []
    probe = folder
    while not probe.exists() and not probe.is_symlink() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=FOLDER_MODE)
        except FileExistsError:  # made meanwhile by someone else: leave it as it is
            continue
        os.chmod(created, FOLDER_MODE)  # ours, just made: no umask may change it


def open_private(path: Path, *, exclusive: bool = False) -> BinaryIO:
    """`path` opened for writing, 0600, never through a symlink; a file already there is
    truncated and made 0600 (`exclusive`: it must not exist)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_EXCL if exclusive else os.O_TRUNC
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an existing file keeps its old mode otherwise
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "wb")


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write `data` to `path` (0600), flushed to disk."""
    with open_private(path, exclusive=exclusive) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
