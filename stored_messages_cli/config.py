"""Where `sm` keeps its files, and the settings and destinations in `config.toml`.

`SM_HOME` (or `--home`) holds `config.toml` and `spool.db`; without it the platform's user
config and state folders are used. No credentials are ever written here.
"""

from __future__ import annotations

import difflib
import functools
import logging
import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .model import MEDIUMS

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
    "confirm_grace", "projects"})


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


class ProjectDestination(BaseModel):
    """One project's destination, as saved by `sm connect` (never any secret)."""

    # Built on first validation: building imports pydantic's plugin loader (~0.1 s).
    model_config = ConfigDict(defer_build=True)

    url: str
    mediums: list[str] = Field(default_factory=lambda: list(MEDIUMS))
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    expected_owner: str | None = None
    retention_days: int | None = None
    retention_mode: str | None = None
    account_url: str | None = None
    allow_insecure_endpoint: bool = False
    # An investigator's destination: list and read only (`sm connect --read-only`).
    read_only: bool = False
    # Safety checks that failed and that the operator accepted by name on `sm connect`.
    accepted_failed_checks: list[str] = Field(default_factory=list)

    @field_validator("mediums")
    @classmethod
    def _known_mediums(cls, value: list[str]) -> list[str]:
        for medium in value:
            if medium not in MEDIUMS:
                raise ValueError(f"unknown medium {medium!r} (use email, sms or push)")
        return value

    @field_validator("retention_days")
    @classmethod
    def _positive_days(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"must be at least 1 day, not {value}")
        return value


if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

    class Settings(BaseSettings):
        """See `_settings_class`."""

        retry_interval: float
        retry_window: float
        confirm_timeout: float
        confirm_grace: float
        lease_seconds: float
        rate_limit_backoff_base: float
        rate_limit_backoff_cap: float
        concurrency: int
        poll_interval: float
        log_format: str
        recovery_probes: tuple[float, ...]
        manifest_max_entries: int
        manifest_max_age: float
        projects: dict[str, ProjectDestination]


def __getattr__(name: str) -> Any:
    """`Settings` is built on first use: pydantic-settings costs ~100 ms to import."""
    if name == "Settings":
        return _settings_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _settings_class() -> Any:
    from pydantic_settings import (
        BaseSettings,
        PydanticBaseSettingsSource,
        SettingsConfigDict,
        TomlConfigSettingsSource,
    )

    class Settings(BaseSettings):
        """Tunable settings; from `SM_*` environment variables, then `config.toml`, then
        defaults."""

        model_config = SettingsConfigDict(env_prefix="SM_", extra="ignore")

        retry_interval: float = 8 * 3600
        retry_window: float = 7 * 86400
        confirm_timeout: float = 24 * 3600
        confirm_grace: float = 7 * 86400  # a never-confirmed message keeps its body this long
        lease_seconds: float = 300
        rate_limit_backoff_base: float = 1.0
        rate_limit_backoff_cap: float = 300.0
        concurrency: int = 8
        poll_interval: float = 1.0
        log_format: str = "text"
        # Probes of an unreachable destination after its outage began; [] is every 8 h only.
        recovery_probes: tuple[float, ...] = DEFAULT_RECOVERY_PROBES
        manifest_max_entries: int = 10_000
        manifest_max_age: float = 15 * 60
        projects: dict[str, ProjectDestination] = Field(default_factory=dict)

        @field_validator("recovery_probes", mode="before")
        @classmethod
        def _probe_delays(cls, value: Any) -> tuple[float, ...]:
            if isinstance(value, str):  # SM_RECOVERY_PROBES arrives as text when not JSON
                value = [part for part in value.strip("[] ").split(",") if part.strip()]
            if not isinstance(value, list | tuple):
                raise ValueError("must be a list of durations, e.g. [\"1m\", \"5m\", \"30m\"]")
            delays = tuple(sorted(parse_duration(str(v).strip().strip('"')) for v in value))
            if any(not math.isfinite(d) or d <= 0 for d in delays):
                raise ValueError("every delay must be more than 0 seconds")
            return delays

        @field_validator(*DURATION_SETTINGS, mode="before")
        @classmethod
        def _duration(cls, value: Any) -> float:
            return parse_duration(value)

        @field_validator(*DURATION_SETTINGS)
        @classmethod
        def _positive(cls, value: float) -> float:
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"must be more than 0 seconds, not {value:g}")
            return value

        @field_validator("concurrency", "manifest_max_entries", mode="before")
        @classmethod
        def _whole(cls, value: Any) -> Any:
            if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
                raise ValueError(f"must be a whole number, not {value!r}")
            return value

        @field_validator("concurrency", "manifest_max_entries")
        @classmethod
        def _at_least_one(cls, value: int) -> int:
            if value < 1:
                raise ValueError(f"must be at least 1, not {value}")
            return value

        @field_validator("log_format")
        @classmethod
        def _log_format(cls, value: str) -> str:
            if value not in ("text", "json"):
                raise ValueError(f"use text or json, not {value!r}")
            return value

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            # The TOML file comes from model_config["toml_file"], bound by load_settings().
            return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    return Settings


def load_settings(config_file: Path) -> Settings:
    """Read `config_file` (missing is fine) under the environment's `SM_*` overrides.

    Every problem is one ConfigError naming what to fix: an unknown key in the file (with a
    suggestion for a near miss), a bad value in the file, or a bad `SM_*` variable (blamed
    on the variable, not on the file).
    """
    from pydantic_settings import SettingsConfigDict

    settings_class = _settings_class()
    document = _read_toml(config_file)  # unreadable or invalid TOML: one clear error
    check_keys(config_file, document)

    class BoundSettings(settings_class):  # type: ignore[misc,valid-type]
        model_config = SettingsConfigDict(toml_file=config_file)

    try:
        return BoundSettings()
    except ValidationError as exc:
        raise _settings_error(config_file, exc) from None
    except OSError as exc:  # the file changed under us between the two reads
        raise _unreadable(config_file, exc) from None
    except ValueError as exc:
        raise ConfigError(f"{config_file}: {_first_line(str(exc))}",
                          hint=f"fix it in {config_file}") from None


def _first_line(text: str) -> str:
    return " ".join(text.split())[:300]


def _env_name(field: str) -> str | None:
    """The `SM_*` variable that set `field`, if one did (names are case-insensitive)."""
    wanted = f"SM_{field}".upper()
    for name in os.environ:
        if name.upper() == wanted:
            return name
    return None


def _settings_error(config_file: Path, exc: ValidationError) -> ConfigError:
    """One line for the first problem, blamed on the variable or the file it came from."""
    error = exc.errors()[0]
    location = [str(part) for part in error.get("loc", ())]
    reason = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    field = location[0] if location else ""
    env = _env_name(field) if field else None
    if env is not None:
        shown = os.environ.get(env, "")
        return ConfigError(f"environment variable {env}={shown!r} is not valid: {reason}",
                           hint=f"fix or unset {env}")
    where = ".".join(location) or "settings"
    value = error.get("input")
    shown = f" = {value!r}" if isinstance(value, str | int | float | bool) else ""
    return ConfigError(f"{config_file}: {where}{shown}: {reason}",
                       hint=f"fix {where} in {config_file}")


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

    `top_level=False` checks only the `[projects.*]` tables (without importing
    pydantic-settings, for the read-only commands).
    """
    if top_level:
        top = sorted(_settings_class().model_fields)
        for key in document:
            if key not in top:
                raise _unknown_key(config_file, "setting", key, top)
    projects = document.get("projects", {})
    if not isinstance(projects, dict):
        return  # the model's own validation names the wrong type
    fields = sorted(ProjectDestination.model_fields)
    for project_id, table in projects.items():
        if not isinstance(table, dict):
            continue
        for key in table:
            if key not in fields:
                raise _unknown_key(config_file, f"key in [projects.\"{project_id}\"]", key,
                                   fields)


class _Projects(BaseModel):
    model_config = ConfigDict(defer_build=True)

    projects: dict[str, ProjectDestination] = Field(default_factory=dict)


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


def load_projects(config_file: Path) -> dict[str, ProjectDestination]:
    """Only the saved destinations of `config_file` (missing is fine).

    Cheaper than `load_settings` (no pydantic-settings import), for read-only commands.
    """
    document = _read_toml(config_file)
    projects = document.get("projects", {})
    check_keys(config_file, {"projects": projects}, top_level=False)
    try:
        return _Projects.model_validate({"projects": projects}).projects
    except ValidationError as exc:
        raise _settings_error(config_file, exc) from None


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
