"""Help shows what to type: metavars and choices, never a Python type; no `--no-…` twin for a
flag that is off unless given; an example on every command and group; shell completion
installs and answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from stored_messages_cli.cli.app import app

PYTHON_TYPES = re.compile(r"<(bool|str|int|float|list\[[^\]]*\]|int range|float range|"
                          r"path|datetime)>|\{[a-z_]+\}")


def every_command_path() -> list[list[str]]:
    """Every command and group as its words after `sm` (the root is [])."""

    def walk(command, path: list[str]):
        yield path
        for name, child in sorted(getattr(command, "commands", {}).items()):
            yield from walk(child, [*path, name])

    return list(walk(typer.main.get_command(app), []))


PATHS = every_command_path()


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(["sm", *p]))
def test_help_shows_metavars_an_example_and_no_python_types(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert not PYTHON_TYPES.search(text), f"a Python type in sm {' '.join(path)} --help:\n{text}"
    assert "--no-" not in text, text
    assert not re.search("[╭│╰]", text), "help is plain text, not boxed panels"
    if path:  # the root's example is in its own docstring, groups' in theirs
        assert "Example:" in text, f"sm {' '.join(path)} --help has no example"


def test_choices_are_shown_as_choices() -> None:
    connect = CliRunner().invoke(app, ["connect", "--help"], terminal_width=120).stdout
    assert "--medium email|sms|push" in connect
    assert "--retention-mode governance|compliance" in connect
    assert "--allow-insecure-endpoint " in connect
    assert "Usage: sm connect [OPTIONS] URL" in connect
    root = CliRunner().invoke(app, ["--help"], terminal_width=120).stdout
    assert "--log-format text|json" in root
    assert "--home DIR" in root


def test_an_example_is_never_broken_across_lines() -> None:
    text = CliRunner().invoke(app, ["connect", "--help"], terminal_width=60).stdout
    assert ("sm connect s3://acme-archive/messages/ --project 12345 --expected-owner"
            " 111122223333") in text


def test_bucket_help_matches_what_it_has() -> None:
    text = CliRunner().invoke(app, ["bucket", "--help"]).stdout
    commands = text.split("Commands:", 1)[1].split()
    assert commands[0] == "create"
    assert "inspect" not in text


def test_shell_completion_installs_and_completes(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # From bash, as a person types it: the shell is detected from the parent process. A
    # second command keeps bash from exec'ing `sm` in its place (as an interactive shell
    # never does), so bash is `sm`'s parent and not some ancestor of the test runner's
    # workers, which a whole-suite run once failed to find ("Shell None is not supported").
    installed = subprocess.run(["bash", "-c", "sm --install-completion; exit $?"], env=env,
                               capture_output=True, text=True, timeout=60)
    assert installed.returncode == 0, installed.stderr
    script = tmp_path / ".bash_completions" / "sm.sh"
    assert script.exists()
    assert str(script) in (tmp_path / ".bashrc").read_text()
    completed = subprocess.run(
        ["bash", "-c", f"source {script}; COMP_WORDS=(sm sta); COMP_CWORD=1;"
         " _sm_completion sm; printf '%s\\n' \"${COMPREPLY[@]}\""],
        env=env, capture_output=True, text=True, timeout=60)
    assert completed.stdout.split() == ["status"], completed.stderr
    options = subprocess.run(
        ["bash", "-c", f"source {script}; COMP_WORDS=(sm connect x --retention-m);"
         " COMP_CWORD=3; _sm_completion sm; printf '%s\\n' \"${COMPREPLY[@]}\""],
        env=env, capture_output=True, text=True, timeout=60)
    assert options.stdout.split() == ["--retention-mode"], options.stderr
