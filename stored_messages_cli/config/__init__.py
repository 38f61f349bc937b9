"""Where `sm` keeps its files, and what `config.toml` holds.

By concern: `paths` (the home's files, private folders, where the spool is), `keys` (the
keys config.toml knows, the destination options declared once), `durations`, `file`
(reading config.toml without pydantic), `projects` (`ProjectDestination`, pydantic),
`settings` (`Settings` and `load_settings`, pydantic-settings), `writer` (saving config.toml
with its comments, tomlkit). No credentials are ever written here.

This package imports neither pydantic nor tomlkit: import `projects`, `settings` or `writer`
where they are used.
"""

from __future__ import annotations

from .durations import parse_duration
from .file import project_urls, read_document
from .keys import (
    DURATION_SETTINGS,
    PROJECT_KEYS,
    SETTING_NAMES,
    SavedDestinationOptions,
    check_keys,
)
from .paths import Paths, SpoolLocation, ensure_private_dir, spool_location

__all__ = [
    "DURATION_SETTINGS",
    "PROJECT_KEYS",
    "SETTING_NAMES",
    "Paths",
    "SavedDestinationOptions",
    "SpoolLocation",
    "check_keys",
    "ensure_private_dir",
    "parse_duration",
    "project_urls",
    "read_document",
    "spool_location",
]
