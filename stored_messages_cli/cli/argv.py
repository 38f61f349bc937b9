"""The words of a command line before Typer reads them: which command they name, and the
global options written after it moved before it. Plain Python, so `sm --version` and the
choice of the one command module to import need no Typer."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# The root's options (`cli/root.py` declares them), as they can appear after the command.
GLOBAL_OPTIONS_WITH_VALUE = frozenset({"--home", "--spool", "--log-format"})
GLOBAL_SWITCHES = frozenset({"--json", "--verbose", "--quiet", "-v", "-q"})
COUNTED_CLUSTER = re.compile(r"-[vq]{2,}")  # `-vv`, `-qq`


def command_word(argv: Sequence[str]) -> str | None:
    """The first word of `argv` that is not a global option or its value: the command."""
    index = _command_index(list(argv))
    return None if index is None else argv[index]


def own_options(command: Any) -> dict[str, bool]:
    """The option strings `command` defines, each with whether it takes a value."""
    options: dict[str, bool] = {}
    for param in getattr(command, "params", []):
        takes_value = not (getattr(param, "is_flag", False) or getattr(param, "count", False))
        for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
            if opt.startswith("-"):
                options[opt] = takes_value
    return options


def _command_index(args: list[str]) -> int | None:
    """Where the command word is in `args`, past the global options written before it."""
    index = 0
    while index < len(args):
        token = args[index]
        if token == "--":
            return None
        if not token.startswith("-"):
            return index
        index += 2 if token in GLOBAL_OPTIONS_WITH_VALUE else 1
    return None


def hoist_global_options(args: list[str], command: Any) -> list[str]:
    """`args` with the global options given after the command moved before it, so that
    `sm status --json` means `sm --json status` (as `aws` and `gh` read them).

    `command` is the command `args` names (or None). An option the command (or its group)
    defines itself stays where it is, and so does the value of one of its options
    (`--recipient -q` is a recipient) and everything after `--`.
    """
    index = _command_index(args)
    if index is None:
        return args
    own = own_options(command)
    moved: list[str] = []
    kept: list[str] = []
    rest = args[index + 1:]
    position = 0
    while position < len(rest):
        token = rest[position]
        name = token.split("=", 1)[0] if token.startswith("--") else token
        if token == "--":
            kept.extend(rest[position:])
            break
        subcommands = getattr(command, "commands", None)
        if not token.startswith("-") and isinstance(subcommands, Mapping):
            command = subcommands.get(token, command)  # `sm bucket create …`
            own.update(own_options(command))
            kept.append(token)
        elif name in own:
            kept.append(token)
            if own[name] and "=" not in token and position + 1 < len(rest):
                kept.append(rest[position + 1])
                position += 1
        elif name in GLOBAL_OPTIONS_WITH_VALUE:
            moved.append(token)
            if "=" not in token and position + 1 < len(rest):
                moved.append(rest[position + 1])
                position += 1
        elif name in GLOBAL_SWITCHES or COUNTED_CLUSTER.fullmatch(token):
            moved.append(token)
        else:
            kept.append(token)
        position += 1
    return [*args[:index], *moved, args[index], *kept]

