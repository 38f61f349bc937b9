"""The `sm` command: global options, then one module per command group."""

from __future__ import annotations

from typing import Annotated

import typer

from . import bucket, connect, find, ingest, replay, run, status, verify
from .common import AppState, Output, configure_logging

app = typer.Typer(
    name="sm",
    help="Keep an exact, immutable copy of every message you send in a bucket you own.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__  # read lazily: importlib.metadata is slow to import

        typer.echo(f"sm {__version__}")
        raise typer.Exit()


@app.callback()
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


for module in (connect, ingest, run, status, replay, verify, bucket, find):
    module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
