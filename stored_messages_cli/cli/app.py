"""The `sm` command: the command table and `main()`; global options and the Typer app are in
`cli/root.py`, each command in its own module."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .argv import command_word

if TYPE_CHECKING:
    import typer

# Every command and group of `sm`, and the module that registers it: the one table. A call
# imports only the module it needs, so `sm status` never pays for the cloud and find code;
# building the app checks that each module registers exactly its commands here. `sm --help`
# lists them in this order (commands, then groups).
COMMANDS: dict[str, str] = {
    "connect": "connect", "disconnect": "connect", "destinations": "connect",
    "ingest": "ingest", "run": "run", "status": "status", "replay": "replay",
    "verify": "verify", "policy": "verify", "bucket": "bucket",
    "find": "find", "fetch": "find", "index": "find", "audit": "audit",
    "spool": "spool_cmd", "manifest": "manifest", "show": "show",
    "export": "export", "access-log": "access_log", "key": "key",
    "prove": "prove", "verify-proof": "prove",
    "hold": "hold", "retention": "retention",
    "serve": "serve",
    "forget": "forget",
}
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(COMMANDS.values()))


def build_app(modules: Sequence[str] = COMMAND_MODULES) -> typer.Typer:
    """The `sm` Typer app with the commands of `modules` registered (`cli/root.py`)."""
    from .root import build_app as build  # start-up: `sm --version` loads no Typer

    return build(modules, COMMANDS)


def module_for(argv: Sequence[str]) -> str | None:
    """The module registering the command named in `argv`, or None (help, unknown…)."""
    word = command_word(argv)
    return None if word is None else COMMANDS.get(word)


def __getattr__(name: str) -> typer.Typer:
    # `app` (every command) is built on first use, for tests and `python -m`.
    if name == "app":
        globals()["app"] = built = build_app()
        return built
    raise AttributeError(name)


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:] == ["--version"]:  # answered before any command module is imported
        from .. import __version__  # start-up: importlib.metadata only when asked

        sys.stdout.write(f"sm {__version__}\n")
        return
    module = module_for(sys.argv[1:])
    build_app([module] if module else COMMAND_MODULES)()


if __name__ == "__main__":
    main()
