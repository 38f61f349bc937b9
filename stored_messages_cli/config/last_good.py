"""The last good configuration: what intake uses while config.toml does not load (SPEC 9.2).

One misplaced key in config.toml must not stop a sender. Whenever config.toml loads (a
sender's lookup, `sm run` at start and on every reload), its exact bytes are kept beside it
as `config.last-good.toml` (0600; written to a temporary file, checked, then renamed, so the
copy is always one that loaded). While config.toml does not load, intake (`sm ingest`,
`Spool.record`) reads that copy instead, and without one it uses the defaults (every medium
archived: a message is never lost for it). `sm status`, `--check`, `/readyz` and the
`sm_config_valid` gauge say that config.toml is invalid (`ConfigValidity`).

Like `settings`, this module imports pydantic only when a file is read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger("sm.config")

LAST_GOOD_FILE = "config.last-good.toml"


def last_good_path(config_file: Path) -> Path:
    """Where the last good copy of `config_file` is kept (beside it)."""
    return config_file.with_name(LAST_GOOD_FILE)


@dataclass(frozen=True)
class IntakeSettings:
    """The settings intake runs on, and why they are not config.toml's own, if they are not."""

    settings: Settings
    problem: str | None = None  # config.toml's error while it does not load
    source: str = "config.toml"  # or "the last good configuration", or "the defaults"


def remember(config_file: Path) -> None:
    """Keep config.toml's bytes as the last good copy, if they load and differ from it.

    Best effort: a sender that may not write the home still records (the copy is then
    refreshed by the next process that may).
    """
    from .settings import load_settings  # pydantic only when a file is read

    target = last_good_path(config_file)
    try:
        content = config_file.read_bytes()
    except OSError:
        return
    with contextlib.suppress(OSError):
        if target.read_bytes() == content:
            return
    scratch = target.with_name(f".{LAST_GOOD_FILE}.{secrets.token_hex(4)}")
    try:
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        load_settings(scratch)  # exactly these bytes load
        os.replace(scratch, target)
    except (OSError, ConfigError) as exc:
        log.debug("could not keep the last good configuration: %s", exc)
        with contextlib.suppress(OSError):
            scratch.unlink()


def intake_settings(config_file: Path) -> IntakeSettings:
    """config.toml's settings; while it does not load, the last good ones, else the defaults.

    Never raises for config.toml's sake: intake must go on (SPEC 9.2).
    """
    from .settings import Settings, load_settings  # pydantic only when a file is read

    try:
        settings = load_settings(config_file)
    except ConfigError as exc:
        problem = str(exc)
    else:
        remember(config_file)
        return IntakeSettings(settings)
    fallback = last_good_path(config_file)
    if fallback.exists():
        try:
            return IntakeSettings(load_settings(fallback), problem,
                                  "the last good configuration")
        except ConfigError:
            pass  # e.g. a bad SM_* variable: it spoils every file alike
    return IntakeSettings(Settings.model_construct(), problem, "the defaults")


class LastGoodMediums:
    """A project's archived mediums for intake, from `intake_settings`; read again whenever
    config.toml changes. None (every medium) for a project it does not know. Also the
    setting `default_phone_region` intake indexes phone numbers with (`phone_region`)."""

    def __init__(self, config_file: Path) -> None:
        self.config_file = config_file
        self._stamp: tuple[int, int] | None | bool = False  # False: never read
        self._projects: dict[str, list[str]] = {}
        self._region: str | None = None

    def _refresh(self, stamp: tuple[int, int] | None) -> None:
        """Read the settings intake runs on once per version of config.toml (`stamp`)."""
        if stamp != self._stamp:
            settings = intake_settings(self.config_file).settings
            self._projects = {pid: list(d.mediums) for pid, d in settings.projects.items()}
            self._region = settings.default_phone_region
            self._stamp = stamp

    def phone_region(self) -> str | None:
        """`default_phone_region` of the settings intake runs on (None: no region). Read
        even without a config.toml (`SM_DEFAULT_PHONE_REGION`), then whenever it changes."""
        self._refresh(_stamp(self.config_file))
        return self._region

    def __call__(self, project_id: str) -> list[str] | None:
        """The project's archived mediums, or None when every medium is archived."""
        stamp = _stamp(self.config_file)
        if stamp is None:
            return None
        self._refresh(stamp)
        return self._projects.get(project_id)


class ConfigValidity:
    """Whether config.toml loads now (the `sm_config_valid` gauge, `/readyz`, `sm status`);
    read again only when the file changes."""

    def __init__(self, config_file: Path) -> None:
        self.config_file = config_file
        self._stamp: tuple[int, int] | None | bool = False  # False: never read
        self._problem: str | None = None

    def problem(self) -> str | None:
        """config.toml's error, or None when it loads (a missing file loads: defaults)."""
        from .settings import load_settings  # pydantic only when a file is read

        stamp = _stamp(self.config_file)
        if stamp != self._stamp:
            try:
                load_settings(self.config_file)
                self._problem = None
            except ConfigError as exc:
                self._problem = str(exc)
            self._stamp = stamp
        return self._problem


def _stamp(path: Path) -> tuple[int, int] | None:
    """(mtime in ns, size) of a file, None when it is missing."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    except OSError:
        return (0, -1)  # unreadable: read it (and fail) again next time
    return found.st_mtime_ns, found.st_size
