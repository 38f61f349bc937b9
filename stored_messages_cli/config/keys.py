"""The keys config.toml knows, declared once, and the check that refuses any other.

`SavedDestinationOptions` is the one declaration of how a destination is reached: the
destinations' `DestinationOptions` extends it (with what each run chooses) and the pydantic
`ProjectDestination` inherits its fields, so a new option is one line here. Nothing in this
module imports pydantic: `sm status` checks a config file with these names alone.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class SavedDestinationOptions:
    """How to reach a destination, as `sm connect` saves it in the project's table of
    config.toml (never a secret: credentials come from the SDKs' own chains)."""

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


# Settings that are lengths of time: each must be more than zero.
DURATION_SETTINGS = ("retry_interval", "retry_window", "confirm_timeout", "lease_seconds",
                     "poll_interval", "rate_limit_backoff_base", "rate_limit_backoff_cap",
                     "manifest_max_age", "confirm_grace", "orphan_event_ttl")
# The top-level keys of config.toml, known without importing pydantic-settings (`sm status`);
# tests/test_cli_output.py checks that the Settings class defines exactly these.
SETTING_NAMES = frozenset({
    "retry_interval", "retry_window", "confirm_timeout", "lease_seconds",
    "rate_limit_backoff_base", "rate_limit_backoff_cap", "concurrency", "poll_interval",
    "log_format", "recovery_probes", "manifest_max_entries", "manifest_max_age",
    "confirm_grace", "spool_url", "spool_allow_insecure", "max_payload_bytes",
    "default_phone_region", "log_key_file", "checkpoint_copies", "timestamp_authorities",
    "trusted_keys", "timestamp_ca_file",
    "projects"}) | frozenset({
    # privacy (SPEC 9.5, docs/privacy.md): also per project
    "recipient_hash", "recipient_hash_key_file", "encryption", "master_key_file",
    "kms_key_id"})
SETTING_NAMES |= {"serve_max_queued"}  # sm serve (SPEC 9.3)
# Provider webhooks (SPEC 9.3, docs/providers.md).
SETTING_NAMES |= {"providers", "orphan_event_ttl"}
# The keys of a `[projects."ID"]` table in the order `sm` writes them: the project's URL and
# mediums, how its destination is reached, then what `sm connect` decided. ProjectDestination
# declares the four project-only fields (tests/test_cli_output.py checks they match).
PROJECT_KEY_ORDER = ("url", "mediums", *(f.name for f in fields(SavedDestinationOptions)),
                     "read_only", "accepted_failed_checks")
# The privacy keys a project may set (SPEC 9.6; unset: the top-level setting).
PRIVACY_KEYS = ("recipient_hash", "recipient_hash_key_file", "encryption", "master_key_file",
                "kms_key_id")
PROJECT_KEY_ORDER += PRIVACY_KEYS
PROJECT_KEY_ORDER += ("providers",)  # provider webhooks (SPEC 9.3, docs/providers.md)
PROJECT_KEYS = frozenset(PROJECT_KEY_ORDER)


def unknown_key_error(config_file: Path, where: str, key: str, known: list[str]
                      ) -> ConfigError:
    """The error for a key config.toml does not know, suggesting a near miss."""
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
                raise unknown_key_error(config_file, "setting", key, top)
    projects = document.get("projects", {})
    if not isinstance(projects, dict):
        return  # the model's own validation names the wrong type
    known = sorted(PROJECT_KEYS)
    for project_id, table in projects.items():
        if not isinstance(table, dict):
            continue
        for key in table:
            if key not in known:
                raise unknown_key_error(config_file, f"key in [projects.\"{project_id}\"]",
                                        key, known)
