"""Writing config.toml: `sm connect` and `sm disconnect` change project tables, nothing else.

The file is edited, not regenerated: tomlkit parses it with its comments and layout, the
tables of the projects that changed are edited in place, and the result is written back
atomically. A comment, a blank line, the order of keys and every other setting stay as the
operator wrote them. Values are written by tomlkit, so any text (line breaks, control
characters, quotes) is valid TOML and reads back as it was.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit import TOMLDocument
from tomlkit.items import Comment, Item, KeyType, SingleKey, Table, Whitespace

from ..errors import ConfigError
from .file import read_document, unreadable_error
from .keys import PROJECT_KEY_ORDER
from .paths import ensure_private_dir
from .projects import ProjectDestination

HEADER = "sm configuration. No credentials belong here."
# Keys not written while false or empty: an ordinary destination's table stays as it was.
_OMITTED_WHEN_EMPTY = frozenset({"read_only", "accepted_failed_checks", "providers"})


def saved_values(destination: ProjectDestination) -> dict[str, Any]:
    """The keys and values of a new project table, in `PROJECT_KEY_ORDER`; unset ones left
    out."""
    dumped = destination.model_dump()
    return {key: dumped[key] for key in PROJECT_KEY_ORDER if not _left_out(key, dumped[key])}


def _left_out(key: str, value: Any) -> bool:
    """True when `key` is not written with `value`: unset, or false/empty where omitted."""
    return value is None or (key in _OMITTED_WHEN_EMPTY and not value)


def save_projects(config_file: Path, projects: Mapping[str, ProjectDestination]) -> None:
    """Make the `[projects."ID"]` tables of `config_file` hold `projects` and nothing else.

    A table whose destination did not change is left alone; a changed one is edited key by
    key (its comments stay); a removed one goes, but the lines after its keys (the comments
    above the next table) stay. Everything outside the project tables is kept byte for byte.
    A missing file is created 0600 in a private folder.
    """
    current = read_document(config_file)  # unreadable or invalid TOML: the one clear error
    text = _read_text(config_file)
    document = tomlkit.parse(text) if text.strip() else _new_document()
    _apply(document, projects)
    written = tomlkit.dumps(document)
    _check_written(config_file, written, current, projects)
    _replace_file(config_file, written)


def _read_text(config_file: Path) -> str:
    try:
        return config_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise unreadable_error(config_file, exc) from None


def _new_document() -> TOMLDocument:
    document = tomlkit.document()
    document.add(tomlkit.comment(HEADER))
    return document


def _apply(document: TOMLDocument, projects: Mapping[str, ProjectDestination]) -> None:
    """Edit `document`'s project tables until they hold `projects`."""
    tables = document.get("projects")
    dotted = any(key is not None and key.key == "projects" and key.is_dotted()
                 for key, _ in document.body)
    if not isinstance(tables, Table) or dotted:  # none yet, inline or `projects."1".url = …`
        if tables is not None:  # rewritten as `[projects."ID"]` tables
            document.remove("projects")
        tables = tomlkit.table(is_super_table=True)
        document.add("projects", tables)
    for project_id in [key for key in tables if key not in projects]:
        _remove_table(document, tables, project_id)
    for project_id in sorted(projects):
        table = tables.get(project_id)
        if not isinstance(table, Table):
            if table is not None:
                tables.remove(project_id)
            tables.add(_quoted(project_id), _new_table(saved_values(projects[project_id])))
            continue
        changes = _changes(table, projects[project_id])
        if any(value is not None and key not in table for key, value in changes.items()):
            tables[project_id] = _edited_table(table, changes)
            continue
        for key, value in changes.items():  # only keys it has: edited where they stand
            if value is None:
                table.remove(key)
            else:
                table[key] = value  # tomlkit keeps the line's comment


def _changes(table: Table, destination: ProjectDestination) -> dict[str, Any]:
    """The keys whose meaning differs between `table` and `destination`: the value to write,
    or None to remove the key. A key the table lacks but whose default is wanted is left so."""
    had = ProjectDestination.model_validate(table.unwrap()).model_dump()
    wanted = destination.model_dump()
    return {key: None if _left_out(key, wanted[key]) else wanted[key]
            for key in PROJECT_KEY_ORDER if wanted[key] != had[key]}


def _quoted(project_id: str) -> SingleKey:
    """The key of a new project table, quoted (`[projects."12345"]`) as sm always wrote it."""
    return SingleKey(project_id, KeyType.Basic)


def _new_table(values: dict[str, Any]) -> Table:
    table = tomlkit.table()
    for key, value in values.items():
        table.add(key, value)
    return table


def _split_at_last_key(table: Table
                       ) -> tuple[list[tuple[Any, Item]], list[Comment | Whitespace]]:
    """A table's body up to its last key, and the lines after it.

    tomlkit keeps the comments and blank lines above a table in the body of the table before
    it: those trailing lines belong to the next table and must stay above it.
    """
    body = table.value.body
    last = max((i for i, (key, _) in enumerate(body) if key is not None), default=-1)
    trailing = [item for _, item in body[last + 1:] if isinstance(item, Comment | Whitespace)]
    return body[:last + 1], trailing


def _edited_table(table: Table, changes: dict[str, Any]) -> Table:
    """`table` with `changes`: kept keys keep their place and comments, new keys follow them,
    and the lines after the last key stay last (tomlkit would append after them)."""
    keyed, trailing = _split_at_last_key(table)
    edited = tomlkit.table()
    for key, item in keyed:
        if key is None and isinstance(item, Comment | Whitespace):
            edited.add(item)  # a comment or blank line between keys
        elif key is not None and changes.get(key.key, item) is not None:
            edited.add(key, item)
            if key.key in changes:
                edited[key.key] = changes[key.key]  # tomlkit keeps the line's comment
    for name, value in changes.items():
        if value is not None and name not in edited:
            edited.add(name, value)
    for line in trailing:
        edited.add(line)
    return edited


def _remove_table(document: TOMLDocument, tables: Table, project_id: str) -> None:
    """Remove a project's table; the comments above the next table stay above it."""
    order = list(tables)
    position = order.index(project_id)
    removed = tables[project_id]
    trailing = _split_at_last_key(removed)[1] if isinstance(removed, Table) else []
    tables.remove(project_id)
    following = tables.get(order[position + 1]) if position + 1 < len(order) else None
    if isinstance(following, Table):
        # The text before a table's header line is its trivia's indent (tomlkit's public
        # Trivia): the one place that keeps these lines right above the next header.
        before = "".join(line.as_string() for line in trailing)
        following.trivia.indent = before + following.trivia.indent
    else:
        for line in trailing:  # it was the last table: its closing comments end the file
            if isinstance(line, Comment):
                document.add(line)


def _check_written(config_file: Path, written: str, current: dict[str, Any],
                   projects: Mapping[str, ProjectDestination]) -> None:
    """Refuse to write a file that would not read back as intended (never expected)."""
    reread = tomllib.loads(written)
    saved = {project_id: ProjectDestination.model_validate(table)
             for project_id, table in reread.pop("projects", {}).items()}
    current = {key: value for key, value in current.items() if key != "projects"}
    if saved != dict(projects) or reread != current:
        raise ConfigError(f"could not rewrite {config_file} keeping its layout; it is"
                          " unchanged", hint=f"write the [projects.\"ID\"] tables of"
                          f" {config_file} as plain tables, then try again")


def _replace_file(config_file: Path, text: str) -> None:
    """Write `text` to `config_file` atomically, owner-only (0600)."""
    ensure_private_dir(config_file.parent)
    tmp = config_file.with_suffix(".toml.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover temp file keeps its old mode otherwise
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, config_file)
