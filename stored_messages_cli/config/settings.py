"""The settings as a pydantic-settings model, and `load_settings`.

Kept apart from the rest of `config/` (paths, the file's keys, reading and writing it, the
`ProjectDestination` model): commands that only need those never import pydantic-settings,
and `sm status` not even pydantic.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from ..errors import ConfigError
from ..message.gunzip import MAX_PAYLOAD_BYTES
from .durations import parse_duration
from .file import read_document, unreadable_error
from .keys import DURATION_SETTINGS, check_keys
from .privacy_choices import privacy_choice
from .projects import ProjectDestination
from .providers import check_providers

__all__ = ["ProjectDestination", "Settings", "load_settings"]

DEFAULT_RECOVERY_PROBES = (60.0, 300.0, 1800.0, 7200.0)  # 1m, 5m, 30m, 2h


class Settings(BaseSettings):
    """Tunable settings; from `SM_*` environment variables, then `config.toml`, then
    defaults."""

    # Built when load_settings first binds a file (importing this module stays cheap).
    model_config = SettingsConfigDict(env_prefix="SM_", extra="ignore", defer_build=True)

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
    # The largest payload sm accepts at ingest or decompresses from a bucket (SPEC 9.2).
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    # How a phone number without +country is read for its E.164 search hash (SPEC 9.2),
    # a two-letter region such as "US"; none by default (such numbers get no E.164 hash).
    default_phone_region: str | None = None
    # The signed manifest log (SPEC 9.1, docs/manifests.md): the signing key's file (unset is
    # SM_HOME/keys/signing.key), where each checkpoint is also written, the RFC 3161
    # time-stamp authorities that stamp it, the verifier keys `sm audit` trusts, and the CA
    # certificates (PEM) a time-stamp token must chain to.
    log_key_file: str | None = None
    checkpoint_copies: tuple[str, ...] = ()
    timestamp_authorities: tuple[str, ...] = ()
    trusted_keys: tuple[str, ...] = ()
    timestamp_ca_file: str | None = None
    # A shared PostgreSQL spool (docs/fleet.md); unset is spool.db in SM_HOME.
    spool_url: str | None = None
    spool_allow_insecure: bool = False  # a database on another host without TLS
    # `sm serve` answers 429 while more messages than this wait to be archived (SPEC 9.3).
    serve_max_queued: int = 1_000_000
    # Privacy (SPEC 9.5, docs/privacy.md): the default of every project (each may override).
    recipient_hash: str = "sha256"
    recipient_hash_key_file: str | None = None
    encryption: str = "none"
    master_key_file: str | None = None
    kms_key_id: str | None = None
    projects: dict[str, ProjectDestination] = Field(default_factory=dict)
    # Provider webhooks (SPEC 9.3, docs/providers.md): every project's default provider
    # tables, and how long an event for a message not yet recorded waits for it.
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    orphan_event_ttl: float = 7 * 86400

    @field_validator("providers", mode="before")
    @classmethod
    def _providers(cls, value: Any) -> dict[str, dict[str, Any]]:
        return check_providers(value)

    @field_validator("recipient_hash", "encryption")
    @classmethod
    def _privacy(cls, value: str, info: ValidationInfo) -> str:
        return privacy_choice(info.field_name or "", value)

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

    @field_validator("concurrency", "manifest_max_entries", "max_payload_bytes", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError(f"must be a whole number, not {value!r}")
        return value

    @field_validator("concurrency", "manifest_max_entries", "max_payload_bytes")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1, not {value}")
        return value

    @field_validator("serve_max_queued", mode="before")
    @classmethod
    def _whole_serve(cls, value: Any) -> Any:
        return cls._whole(value)

    @field_validator("serve_max_queued")
    @classmethod
    def _serve_at_least_one(cls, value: int) -> int:
        return cls._at_least_one(value)

    @field_validator("default_phone_region")
    @classmethod
    def _phone_region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) != 2 or not value.isascii() or not value.isalpha():
            raise ValueError(f"must be a two-letter region such as \"US\", not {value!r}")
        return value.upper()

    @field_validator("checkpoint_copies", "timestamp_authorities", "trusted_keys",
                     mode="before")
    @classmethod
    def _text_list(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):  # one value given alone (a JSON list arrives parsed)
            value = [value]
        if not isinstance(value, list | tuple) or \
                not all(isinstance(v, str) and v.strip() for v in value):
            raise ValueError("must be a list of non-empty strings, e.g. [\"file:///srv/copy\"]")
        return tuple(v.strip() for v in value)

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


def load_settings(config_file: Path) -> Settings:
    """Read `config_file` (missing is fine) under the environment's `SM_*` overrides.

    Every problem is one ConfigError naming what to fix: an unknown key in the file (with a
    suggestion for a near miss), a bad value in the file, or a bad `SM_*` variable (blamed
    on the variable, not on the file).
    """
    document = read_document(config_file)  # unreadable or invalid TOML: one clear error
    check_keys(config_file, document)

    class BoundSettings(Settings):
        model_config = SettingsConfigDict(toml_file=config_file)

    try:
        return BoundSettings()
    except ValidationError as exc:
        raise _settings_error(config_file, exc) from None
    except OSError as exc:  # the file changed under us between the two reads
        raise unreadable_error(config_file, exc) from None
    except SettingsError as exc:
        raise _source_error(config_file, exc) from None
    except ValueError as exc:
        raise ConfigError(f"{config_file}: {_first_line(str(exc))}",
                          hint=f"fix it in {config_file}") from None


def _source_error(config_file: Path, exc: SettingsError) -> ConfigError:
    """A value pydantic-settings could not even decode: an `SM_*` variable of a list or table
    setting that is not JSON is blamed on the variable (SPEC 9.6), anything else on the file."""
    named = re.search(r'field "(\w+)" from source "EnvSettingsSource"', str(exc))
    env = _env_name(named.group(1)) if named else None
    if env is not None:
        shown = os.environ.get(env, "")
        return ConfigError(f"environment variable {env}={shown!r} is not valid: not JSON"
                           " (a list or table setting is given as JSON, e.g."
                           ' ["1m", "5m"])', hint=f"fix or unset {env}")
    return ConfigError(f"{config_file}: {_first_line(str(exc))}",
                       hint=f"fix it in {config_file}")


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
