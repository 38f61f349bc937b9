"""Where `sm` keeps its files, and the settings and destinations in `config.toml`.

`SM_HOME` (or `--home`) holds `config.toml` and `spool.db`; without it the platform's user
config and state folders are used. No credentials are ever written here.

This module imports no pydantic: the models (`ProjectDestination`, `Settings`) and
`load_settings` / `load_projects` live in `settings.py` and are reachable from here too,
loaded on first use.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from .settings import ProjectDestination as ProjectDestination
    from .settings import Settings as Settings
    from .settings import _settings_class as _settings_class
    from .settings import load_projects as load_projects
    from .settings import load_settings as load_settings

logger = logging.getLogger("sm.config")

APP_NAME = "sm"
CONFIG_FILE = "config.toml"
SPOOL_FILE = "spool.db"
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


# Settings that are lengths of time: each must be more than zero.
DURATION_SETTINGS = ("retry_interval", "retry_window", "confirm_timeout", "lease_seconds",
                     "poll_interval", "rate_limit_backoff_base", "rate_limit_backoff_cap",
                     "manifest_max_age", "confirm_grace")
DEFAULT_RECOVERY_PROBES = (60.0, 300.0, 1800.0, 7200.0)  # 1m, 5m, 30m, 2h
# The top-level keys of config.toml, known without importing pydantic-settings (`sm status`);
# tests/test_cli_output.py checks that the Settings class defines exactly these.
SETTING_NAMES = frozenset({
    "retry_interval", "retry_window", "confirm_timeout", "lease_seconds",
    "rate_limit_backoff_base", "rate_limit_backoff_cap", "concurrency", "poll_interval",
    "log_format", "recovery_probes", "manifest_max_entries", "manifest_max_age",
    "confirm_grace", "spool_url", "spool_allow_insecure", "projects"})
# The keys of a `[projects."ID"]` table (ProjectDestination's fields), likewise.
PROJECT_KEYS = frozenset({
    "url", "mediums", "endpoint_url", "region", "profile", "role_arn", "external_id",
    "expected_owner", "retention_days", "retention_mode", "account_url",
    "allow_insecure_endpoint", "read_only", "accepted_failed_checks"})
# What `settings.py` defines, reachable from here as before (`from .config import …`).
_IN_SETTINGS = frozenset({"ProjectDestination", "Settings", "_settings_class",
                          "load_settings", "load_projects"})


def __getattr__(name: str) -> Any:
    """The pydantic half of the configuration (`settings.py`), imported on first use."""
    if name in _IN_SETTINGS:
        from . import settings

        return getattr(settings, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as `90`, `15m`, `8h`, `7d`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION_RE.fullmatch(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration (examples: 30s, 15m, 8h, 7d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


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
        import platformdirs

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


def _unreadable(config_file: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot read {config_file}: {exc.strerror or exc}",
                       hint=f"check the file's permissions (ls -l {config_file}) or choose"
                       " another --home")


def _unknown_key(config_file: Path, where: str, key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    suggestion = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{config_file}: unknown {where} {key!r}{suggestion}",
                       hint=f"fix or remove it in {config_file}; the settings are listed in"
                       " docs/cli.md")


def check_keys(config_file: Path, document: dict[str, Any], *, top_level: bool = True) -> None:
    """Refuse keys config.toml does not know: a typo must not silently do nothing.

    `top_level=False` checks only the `[projects.*]` tables. The names come from
    SETTING_NAMES and PROJECT_KEYS (no pydantic needed).
    """
    if top_level:
        top = sorted(SETTING_NAMES)
        for key in document:
            if key not in top:
                raise _unknown_key(config_file, "setting", key, top)
    projects = document.get("projects", {})
    if not isinstance(projects, dict):
        return  # the model's own validation names the wrong type
    fields = sorted(PROJECT_KEYS)
    for project_id, table in projects.items():
        if not isinstance(table, dict):
            continue
        for key in table:
            if key not in fields:
                raise _unknown_key(config_file, f"key in [projects.\"{project_id}\"]", key,
                                   fields)


def _read_toml(config_file: Path) -> dict[str, Any]:
    """The TOML document of `config_file`; a missing file is an empty document."""
    try:
        with config_file.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _unreadable(config_file, exc) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{config_file} is not valid TOML (not UTF-8 text)",
                          hint=f"fix or remove {config_file}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file} is not valid TOML ({exc})",
                          hint=f"fix the line it names in {config_file}") from None


def project_urls(config_file: Path) -> dict[str, str]:
    """Each project's destination URL from `config_file`, after a quick check of the file.

    For `sm status`, which must answer fast: without pydantic (neither settings nor the
    destination model are built), an unknown key at the top level or in a project table, a
    project without a URL, invalid TOML and an unreadable file are each one ConfigError, as
    every other command reports them. Values are checked by the commands that use them.
    """
    document = _read_toml(config_file)
    for key in document:
        if key not in SETTING_NAMES:
            raise _unknown_key(config_file, "setting", key, sorted(SETTING_NAMES))
    check_keys(config_file, document, top_level=False)
    projects = document.get("projects", {})
    if not isinstance(projects, dict):
        raise ConfigError(f"{config_file}: projects must be a table of [projects.\"ID\"]"
                          " tables", hint=f"fix it in {config_file}")
    urls: dict[str, str] = {}
    for project_id, table in projects.items():
        url = table.get("url") if isinstance(table, dict) else None
        if not isinstance(url, str) or not url:
            raise ConfigError(f"{config_file}: projects.{project_id}.url is missing",
                              hint=f"sm connect URL --project {project_id}")
        urls[str(project_id)] = url
    return urls


@dataclass(frozen=True)
class SpoolLocation:
    """Where the spool is: a SQLite file, or a PostgreSQL URL and where it was set."""

    target: str  # a file path or a postgresql:// URL
    source: str  # "--spool", "SM_SPOOL_URL", "config.toml" or "SM_HOME"
    allow_insecure: bool = False


def spool_location(paths: Paths, explicit: str | os.PathLike[str] | None = None
                   ) -> SpoolLocation:
    """The spool to open: `explicit` (`--spool`), else `SM_SPOOL_URL`, else config.toml's
    `spool_url`, else `spool.db` in the home. A URL from config.toml may not carry a
    password; TLS is checked when the spool is opened (`spool.postgres.check_spool_url`)."""
    allow = os.environ.get("SM_SPOOL_ALLOW_INSECURE", "").lower() in ("1", "true", "yes")
    if explicit is not None and str(explicit):
        return SpoolLocation(str(explicit), "--spool", allow)
    from_env = os.environ.get("SM_SPOOL_URL")
    if from_env:
        return SpoolLocation(from_env, "SM_SPOOL_URL", allow)
    document = _read_toml(paths.config_file)
    configured = document.get("spool_url")
    if configured is not None:
        if not isinstance(configured, str) or not configured:
            raise ConfigError(f"{paths.config_file}: spool_url must be a postgresql:// URL",
                              hint=f"fix or remove it in {paths.config_file}")
        insecure = document.get("spool_allow_insecure", False)
        return SpoolLocation(configured, "config.toml", allow or insecure is True)
    return SpoolLocation(str(paths.spool_file), "SM_HOME")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


_OMITTED_WHEN_EMPTY = frozenset({"read_only", "accepted_failed_checks"})


def save_projects(config_file: Path, projects: dict[str, ProjectDestination]) -> None:
    """Rewrite the `[projects.*]` tables of `config_file`, keeping its other top-level keys."""
    existing = _read_toml(config_file)
    lines = ["# sm configuration. No credentials belong here.\n"]
    for name, value in existing.items():
        if name != "projects" and not isinstance(value, dict):
            lines.append(f"{name} = {_toml_value(value)}\n")
    for project_id in sorted(projects):
        lines.append(f'\n[projects."{project_id}"]\n')
        for field, value in projects[project_id].model_dump(exclude_none=True).items():
            if field in _OMITTED_WHEN_EMPTY and not value:
                continue  # an ordinary destination's table stays as it always was
            lines.append(f"{field} = {_toml_value(value)}\n")
    ensure_private_dir(config_file.parent)
    tmp = config_file.with_suffix(".toml.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover temp file keeps its old mode otherwise
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("".join(lines))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, config_file)
