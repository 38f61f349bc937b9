"""The settings and the saved destinations as pydantic models, and reading them.

Kept apart from the rest of `config/` (paths, the file's keys, reading and writing it):
commands that only need those, such as `sm status`, never import pydantic or build these
models.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError
from ..message import MEDIUMS
from .durations import parse_duration
from .file import read_document, unreadable_error
from .keys import DURATION_SETTINGS, SavedDestinationOptions, check_keys

DEFAULT_RECOVERY_PROBES = (60.0, 300.0, 1800.0, 7200.0)  # 1m, 5m, 30m, 2h


class ProjectDestination(BaseModel, SavedDestinationOptions, frozen=True):
    """One project's destination, as saved by `sm connect` (never any secret).

    How the destination is reached (endpoint, region, role, retention, …) is declared once,
    in `SavedDestinationOptions`: pydantic validates the fields it inherits from that
    dataclass like its own. Only the project's own keys are declared here.
    """

    # Built on first validation: building imports pydantic's plugin loader (~0.1 s).
    model_config = ConfigDict(defer_build=True)

    url: str
    mediums: list[str] = Field(default_factory=lambda: list(MEDIUMS))
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
        """See `settings_class`."""

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
        spool_url: str | None
        spool_allow_insecure: bool
        projects: dict[str, ProjectDestination]


@functools.cache
def settings_class() -> Any:
    """The pydantic-settings class of the settings, made on first use.

    Made in a function because importing pydantic-settings costs start-up time that
    `load_projects` (read-only commands) never pays.
    """
    from pydantic_settings import (  # start-up: see the docstring
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
        # A shared PostgreSQL spool (docs/fleet.md); unset is spool.db in SM_HOME.
        spool_url: str | None = None
        spool_allow_insecure: bool = False  # a database on another host without TLS
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
    from pydantic_settings import SettingsConfigDict  # start-up: as in settings_class

    document = read_document(config_file)  # unreadable or invalid TOML: one clear error
    check_keys(config_file, document)

    class BoundSettings(settings_class()):  # type: ignore[misc]
        model_config = SettingsConfigDict(toml_file=config_file)

    try:
        return BoundSettings()
    except ValidationError as exc:
        raise _settings_error(config_file, exc) from None
    except OSError as exc:  # the file changed under us between the two reads
        raise unreadable_error(config_file, exc) from None
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
