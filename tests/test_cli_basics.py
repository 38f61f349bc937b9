"""Every command has help with an example, and docs/cli.md documents every command.

Commands are discovered from the Typer app, so a new command cannot go undocumented.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from stored_messages_cli.cli.app import app

DOCS = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def command_paths() -> list[list[str]]:
    """Every leaf command as its words after `sm`, e.g. ["bucket", "create"]."""

    def walk(command, path: list[str]):
        children = getattr(command, "commands", None)
        if children:
            for name, child in sorted(children.items()):
                yield from walk(child, [*path, name])
        else:
            yield path

    return list(walk(typer.main.get_command(app), []))


COMMANDS = command_paths()


def test_the_core_commands_are_registered() -> None:
    assert {"connect", "ingest", "run", "status"} <= {" ".join(p) for p in COMMANDS}


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_works_and_shows_an_example(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert f"sm {' '.join(path)}" in result.stdout  # the usage line names the command
    assert re.search(r"Example", result.stdout), f"sm {' '.join(path)} --help has no example"


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_docs_cli_md_documents_every_command(path: list[str]) -> None:
    text = DOCS.read_text(encoding="utf-8")
    heading = f"## `sm {' '.join(path)}`"
    assert heading in text, f"docs/cli.md has no section {heading!r}"


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_docs_cli_md_mentions_every_option_of_every_command(path: list[str]) -> None:
    command = typer.main.get_command(app)
    for word in path:
        command = command.commands[word]
    section = DOCS.read_text(encoding="utf-8").split(f"## `sm {' '.join(path)}`", 1)[-1]
    section = section.split("\n## ", 1)[0]
    for param in command.params:
        for flag in getattr(param, "opts", []):
            if flag.startswith("--") and flag != "--help":
                assert flag in section, f"docs/cli.md does not mention {flag} of sm {path}"


def test_global_options_and_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert re.fullmatch(r"sm \d+\.\d+\.\d+\S*\n", result.stdout)
    text = DOCS.read_text(encoding="utf-8")
    for flag in ("--home", "--json", "--verbose", "--quiet", "--version", "SM_HOME"):
        assert flag in text


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["archive-everything"])
    assert result.exit_code == 2


def test_the_command_table_is_what_the_modules_register() -> None:
    from stored_messages_cli.cli.app import COMMANDS

    assert set(typer.main.get_command(app).commands) == set(COMMANDS)


@pytest.mark.parametrize("table", [
    {"status": "status", "statistics": "status"},  # a command the module does not register
    {},                                             # a registered command not in the table
], ids=["missing from the module", "missing from the table"])
def test_building_the_app_fails_when_table_and_module_disagree(table) -> None:
    from stored_messages_cli.cli.root import build_app

    with pytest.raises(RuntimeError, match="command table"):
        build_app(["status"], table)


def test_a_call_imports_only_the_module_of_its_command() -> None:
    from stored_messages_cli.cli.app import module_for

    assert module_for(["--home", "/tmp/x", "fetch", "abc"]) == "find"
    assert module_for(["--json", "spool", "prune"]) == "spool_cmd"
    assert module_for(["--help"]) is None
