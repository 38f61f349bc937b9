"""The `sm` command: global options, then one module per command group."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from .common import AppState, Output, configure_logging

# The modules that register commands, and which one registers each command name: a call
# imports only the module it needs, so `sm status` never pays for the cloud and find code.
COMMAND_MODULES: tuple[str, ...] = (
    "connect", "ingest", "run", "status", "replay", "verify", "bucket", "find", "audit",
    "spool_cmd", "manifest", "show", "export")
MODULE_OF_COMMAND: dict[str, str] = {
    "connect": "connect", "disconnect": "connect", "destinations": "connect",
    "ingest": "ingest", "run": "run", "status": "status", "replay": "replay",
    "verify": "verify", "policy": "verify", "bucket": "bucket",
    "find": "find", "fetch": "find", "index": "find", "audit": "audit",
    "spool": "spool_cmd", "manifest": "manifest", "show": "show",
    "export": "export",
}
_GLOBAL_OPTIONS_WITH_VALUE = frozenset({"--home", "--log-format"})


def _version(value: bool) -> None:
    if value:
        from .. import __version__  # read lazily: importlib.metadata is slow to import

        typer.echo(f"sm {__version__}")
        raise typer.Exit()


def root(
    ctx: typer.Context,
    home: Annotated[str | None, typer.Option(
        "--home", envvar="SM_HOME", help="Folder holding config.toml and spool.db.")] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON document (JSON Lines for streams).")] = False,
    verbose: Annotated[int, typer.Option(
        "--verbose", "-v", count=True, help="More detail on stderr (repeatable).")] = 0,
    quiet: Annotated[int, typer.Option(
        "--quiet", "-q", count=True, help="Less on stderr (repeatable).")] = 0,
    log_format: Annotated[str, typer.Option(
        "--log-format", help="Log lines as text or json.")] = "text",
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """Keep an exact, immutable copy of every message you send in a bucket you own.

    Example: sm connect s3://my-archive/messages/ --project 12345
    """
    if log_format not in ("text", "json"):
        raise typer.BadParameter("use text or json", param_hint="--log-format")
    verbosity = verbose - quiet
    ctx.obj = AppState(home=home, output=Output(json_mode=json_output, verbosity=verbosity),
                       log_format=log_format)
    configure_logging(verbosity, log_format)


def build_app(modules: Sequence[str] = COMMAND_MODULES) -> typer.Typer:
    """The `sm` Typer app with the commands of `modules` registered."""
    built = typer.Typer(
        name="sm",
        help="Keep an exact, immutable copy of every message you send in a bucket you own.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    built.callback()(root)
    for name in modules:
        importlib.import_module(f"{__package__}.{name}").register(built)
    return built


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
    module = module_for(sys.argv[1:])
    build_app([module] if module else COMMAND_MODULES)()


if __name__ == "__main__":
    main()
