"""Reading config.toml without pydantic: the document, and the quick look `sm status` takes."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .keys import check_keys


def unreadable_error(config_file: Path, exc: OSError) -> ConfigError:
    """The error for a config file that exists but cannot be read."""
    return ConfigError(f"cannot read {config_file}: {exc.strerror or exc}",
                       hint=f"check the file's permissions (ls -l {config_file}) or choose"
                       " another --home")


def read_document(config_file: Path) -> dict[str, Any]:
    """The TOML document of `config_file`; a missing file is an empty document.

    An unreadable file, text that is not UTF-8 and invalid TOML are each one ConfigError
    naming the file.
    """
    try:
        with config_file.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise unreadable_error(config_file, exc) from None
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
    document = read_document(config_file)
    check_keys(config_file, document)
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
