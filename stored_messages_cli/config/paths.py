"""Where `sm` keeps its files: the home's config file and spool, and its private folders.

`SM_HOME` (or `--home`) holds `config.toml` and `spool.db`; without it the platform's user
config and state folders are used.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .file import read_document

logger = logging.getLogger("sm.config")

APP_NAME = "sm"
CONFIG_FILE = "config.toml"
SPOOL_FILE = "spool.db"


@dataclass(frozen=True)
class Paths:
    """The config file and spool file `sm` uses."""

    config_file: Path
    spool_file: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> Paths:
        """`home`, else `$SM_HOME`, else the platform's user config and state folders."""
        home = home or os.environ.get("SM_HOME") or None
        if home:
            base = Path(home).expanduser()
            return cls(base / CONFIG_FILE, base / SPOOL_FILE)
        import platformdirs  # start-up: a command run with SM_HOME never needs it

        return cls(
            Path(platformdirs.user_config_dir(APP_NAME)) / CONFIG_FILE,
            Path(platformdirs.user_state_dir(APP_NAME)) / SPOOL_FILE,
        )


_warned_open_folders: set[Path] = set()


def ensure_private_dir(folder: Path) -> None:
    """Create `folder` (and missing parents) readable by the owner only (0700).

    A folder that already exists keeps its mode: `SM_HOME=/tmp` must never chmod `/tmp`.
    When it is open to the group or other users, a warning says so (once per process); the
    files `sm` writes in it are still created 0600.
    """
    missing: list[Path] = []
    probe = folder
    while not probe.exists() and not probe.is_symlink():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    try:
        for created in reversed(missing):
            try:
                created.mkdir(mode=0o700)
            except FileExistsError:  # made meanwhile by someone else: leave it as it is
                continue
            os.chmod(created, 0o700)  # ours, just made: the umask must not widen it
    except OSError as exc:
        raise ConfigError(f"cannot create the folder {created}: {exc.strerror or exc}",
                          hint="choose a writable folder with --home or SM_HOME") from None
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder",
                          hint="choose a folder with --home or SM_HOME")
    if folder in missing:
        return
    mode = folder.stat().st_mode
    if mode & 0o077 and folder not in _warned_open_folders:
        _warned_open_folders.add(folder)
        logger.warning("%s is open to other users (mode %s); sm leaves its mode alone and"
                       " creates its own files there owner-only (0600). Prefer a private"
                       " folder (chmod 700, or another --home)", folder, stat.filemode(mode))


@dataclass(frozen=True)
class SpoolLocation:
    """Where the spool is: a SQLite file, or a PostgreSQL URL and where it was set."""

    target: str  # a file path or a postgresql:// URL
    source: str  # "--spool", "SM_SPOOL_URL", "config.toml" or "SM_HOME"
    allow_insecure: bool = False


def spool_location(paths: Paths, explicit: str | os.PathLike[str] | None = None
                   ) -> SpoolLocation:
    """The spool to open: `explicit` (`--spool`), else `SM_SPOOL_URL`, else config.toml's
    `spool_url` (the last good copy's while config.toml is not valid TOML, see
    `last_good`), else `spool.db` in the home. A URL from config.toml may not carry a
    password; TLS is checked when the spool is opened (`spool.postgres.check_spool_url`)."""
    allow = os.environ.get("SM_SPOOL_ALLOW_INSECURE", "").lower() in ("1", "true", "yes")
    if explicit is not None and str(explicit):
        return SpoolLocation(str(explicit), "--spool", allow)
    from_env = os.environ.get("SM_SPOOL_URL")
    if from_env:
        return SpoolLocation(from_env, "SM_SPOOL_URL", allow)
    try:
        document = read_document(paths.config_file)
    except ConfigError:
        # Senders must go on recording (SPEC 9.2): the spool of the last good configuration.
        from .last_good import last_good_path

        try:
            document = read_document(last_good_path(paths.config_file))
        except ConfigError:
            document = {}
    configured = document.get("spool_url")
    if configured is not None:
        if not isinstance(configured, str) or not configured:
            raise ConfigError(f"{paths.config_file}: spool_url must be a postgresql:// URL",
                              hint=f"fix or remove it in {paths.config_file}")
        insecure = document.get("spool_allow_insecure", False)
        return SpoolLocation(configured, "config.toml", allow or insecure is True)
    return SpoolLocation(str(paths.spool_file), "SM_HOME")
