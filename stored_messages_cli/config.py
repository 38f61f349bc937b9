"""Where `sm` keeps its files, and the settings and destinations in `config.toml`.

`SM_HOME` (or `--home`) holds `config.toml` and `spool.db`; without it the platform's user
config and state folders are used. No credentials are ever written here.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .model import MEDIUMS

APP_NAME = "sm"
CONFIG_FILE = "config.toml"
SPOOL_FILE = "spool.db"
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


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


def ensure_private_dir(folder: Path) -> None:
    """Create `folder` (and parents) readable by the owner only."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(folder, 0o700)
    except PermissionError:  # a shared parent we do not own: leave it
        pass


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

    @field_validator("mediums")
    @classmethod
    def _known_mediums(cls, value: list[str]) -> list[str]:
        for medium in value:
            if medium not in MEDIUMS:
                raise ValueError(f"unknown medium {medium!r} (use email, sms or push)")
        return value


if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

    class Settings(BaseSettings):
        """See `_settings_class`."""

        retry_interval: float
        retry_window: float
        confirm_timeout: float
        lease_seconds: float
        rate_limit_backoff_base: float
        rate_limit_backoff_cap: float
        concurrency: int
        poll_interval: float
        log_format: str
        projects: dict[str, ProjectDestination]


def __getattr__(name: str) -> Any:
    """`Settings` is built on first use: pydantic-settings costs ~100 ms to import."""
    if name == "Settings":
        return _settings_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _settings_class() -> type[Settings]:
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
        lease_seconds: float = 300
        rate_limit_backoff_base: float = 1.0
        rate_limit_backoff_cap: float = 300.0
        concurrency: int = 8
        poll_interval: float = 1.0
        log_format: str = "text"
        projects: dict[str, ProjectDestination] = Field(default_factory=dict)

        @field_validator("retry_interval", "retry_window", "confirm_timeout", "lease_seconds",
                         "poll_interval", "rate_limit_backoff_base", "rate_limit_backoff_cap",
                         mode="before")
        @classmethod
        def _duration(cls, value: Any) -> float:
            return parse_duration(value)

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
    """Read `config_file` (missing is fine) under the environment's `SM_*` overrides."""
    from pydantic_settings import SettingsConfigDict

    class BoundSettings(_settings_class()):  # type: ignore[misc]
        model_config = SettingsConfigDict(toml_file=config_file)

    try:
        return BoundSettings()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file} is not valid TOML ({exc})") from None
    except ValueError as exc:
        first = str(exc).splitlines()
        raise ConfigError(f"{config_file}: {' '.join(first[:3])}") from None


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
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file} is not valid TOML ({exc})") from None


def load_projects(config_file: Path) -> dict[str, ProjectDestination]:
    """Only the saved destinations of `config_file` (missing is fine).

    Cheaper than `load_settings` (no pydantic-settings import), for read-only commands.
    """
    document = _read_toml(config_file)
    try:
        return _Projects.model_validate({"projects": document.get("projects", {})}).projects
    except ValidationError as exc:
        first = str(exc).splitlines()
        raise ConfigError(f"{config_file}: {' '.join(first[:3])}") from None


def project_urls(config_file: Path) -> dict[str, str]:
    """Each project's destination URL from `config_file`, read without validating the rest.

    For `sm status`, which must answer fast and even when a destination entry is incomplete.
    """
    document = _read_toml(config_file)
    projects = document.get("projects")
    if not isinstance(projects, dict):
        return {}
    return {str(pid): str(table.get("url", "")) for pid, table in projects.items()
            if isinstance(table, dict)}


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
