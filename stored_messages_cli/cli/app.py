"""The `sm` command: global options, then one module per command group."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

# The modules that register commands, and which one registers each command name: a call
# imports only the module it needs, so `sm status` never pays for the cloud and find code.
COMMAND_MODULES: tuple[str, ...] = (
    "connect", "ingest", "run", "status", "replay", "verify", "bucket", "find", "audit",
    "spool_cmd", "manifest", "show", "export", "access_log")
MODULE_OF_COMMAND: dict[str, str] = {
    "connect": "connect", "disconnect": "connect", "destinations": "connect",
    "ingest": "ingest", "run": "run", "status": "status", "replay": "replay",
    "verify": "verify", "policy": "verify", "bucket": "bucket",
    "find": "find", "fetch": "find", "index": "find", "audit": "audit",
    "spool": "spool_cmd", "manifest": "manifest", "show": "show",
    "export": "export", "access-log": "access_log",
}
_GLOBAL_OPTIONS_WITH_VALUE = frozenset({"--home", "--spool", "--log-format"})
_GLOBAL_SWITCHES = frozenset({"--json", "--verbose", "--quiet", "-v", "-q"})
_COUNTED_CLUSTER = re.compile(r"-[vq]{2,}")


def build_app(modules: Sequence[str] = COMMAND_MODULES) -> typer.Typer:
    """The `sm` Typer app with the commands of `modules` registered (`cli/root.py`)."""
    from .root import build_app as build

    return build(modules)


def module_for(argv: Sequence[str]) -> str | None:
    """The module registering the command named in `argv`, or None (help, unknown…)."""
    expects_value = False
    for token in argv:
        if expects_value:
            expects_value = False
        elif token in _GLOBAL_OPTIONS_WITH_VALUE:
            expects_value = True
        elif not token.startswith("-"):
            return MODULE_OF_COMMAND.get(token)
    return None


def __getattr__(name: str) -> typer.Typer:
    # `app` (every command) is built on first use, for tests and `python -m`.
    if name == "app":
        globals()["app"] = built = build_app()
        return built
    raise AttributeError(name)


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:] == ["--version"]:  # answered before any command module is imported
        from .. import __version__

        sys.stdout.write(f"sm {__version__}\n")
        return
    module = module_for(sys.argv[1:])
    build_app([module] if module else COMMAND_MODULES)()


if __name__ == "__main__":
    main()
