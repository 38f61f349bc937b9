"""The root of `sm` as Typer sees it: global options anywhere, one-line usage errors, help
with metavars, and the app built from the command modules (`cli/app.py` imports this only
when a command runs, so `sm --version` never loads Typer).

Typer is reached through the extension points it documents: the `cls=` of the app, of each
group and of each command (`RootGroup` here, `SmGroup` and `SmCommand` in
`command_classes.py`: subclasses of `typer.core.TyperGroup` and `TyperCommand` overriding
Click's public methods), `context_settings` and the root callback. No argv is rewritten
before Typer reads it and no Typer class is replaced.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any

import typer

from .argv import command_word, hoist_global_options
from .command_classes import SmGroup
from .common import AppState, Output, UsageError, configure_logging, report_usage_error


@contextlib.contextmanager
def _usage_errors_as_one_line() -> Iterator[None]:
    """A usage error becomes `Error: …` / `Try: …` and exit 2, never a boxed panel."""
    try:
        yield
    except UsageError as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" or (ctx is not None and
                                                         ctx.resilient_parsing):
            raise  # `sm` alone prints the help; shell completion parses leniently
        report_usage_error(exc)


class RootGroup(SmGroup):
    """`sm` itself: global options anywhere and one-line usage errors."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse after moving global options written after the command before it."""
        word = command_word(args)
        command = self.get_command(ctx, word) if word is not None else None
        return super().parse_args(ctx, hoist_global_options(list(args), command))

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:
        """The root context; a bad global option is a one-line usage error."""
        with _usage_errors_as_one_line():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        """Run the command; a bad option or value of it is a one-line usage error."""
        with _usage_errors_as_one_line():
            return super().invoke(ctx)


def _version(value: bool) -> None:
    if value:
        from .. import __version__  # read lazily: importlib.metadata is slow to import

        typer.echo(f"sm {__version__}")
        raise typer.Exit()


def root(
    ctx: typer.Context,
    home: Annotated[str | None, typer.Option(
        "--home", envvar="SM_HOME", help="Folder holding config.toml and spool.db.")] = None,
    spool: Annotated[str | None, typer.Option(
        "--spool", metavar="URL",
        help="A shared PostgreSQL spool (postgresql://…) instead of spool.db"
        " (or SM_SPOOL_URL, or spool_url in config.toml).")] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON document (JSON Lines for streams).")] = False,
    verbose: Annotated[int, typer.Option(
        "--verbose", "-v", count=True, show_default=False,
        help="More detail on stderr (repeatable).")] = 0,
    quiet: Annotated[int, typer.Option(
        "--quiet", "-q", count=True, show_default=False,
        help="Less on stderr (repeatable).")] = 0,
    log_format: Annotated[str, typer.Option(
        "--log-format", metavar="text|json", help="Log lines as text or json.")] = "text",
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """Keep an exact, immutable copy of every message you send in a bucket you own.

    Example: sm connect s3://my-archive/messages/ --project 12345
    """
    if log_format not in ("text", "json"):
        raise typer.BadParameter("use text or json", param_hint="--log-format")
    verbosity = verbose - quiet
    ctx.obj = AppState(home=home, spool=spool,
                       output=Output(json_mode=json_output, verbosity=verbosity),
                       log_format=log_format)
    configure_logging(verbosity, log_format)


def registered_names(app: typer.Typer) -> list[str]:
    """The names of the commands and groups registered on `app`, in order."""
    infos: list[Any] = [*app.registered_commands, *app.registered_groups]
    return [str(info.name) for info in infos]


def build_app(modules: Sequence[str], table: Mapping[str, str]) -> typer.Typer:
    """The `sm` Typer app with the commands of `modules` registered; each module must
    register exactly the commands `table` (command name → module) gives it."""
    built = typer.Typer(
        cls=RootGroup,
        name="sm",
        rich_markup_mode=None,
        help="Keep an exact, immutable copy of every message you send in a bucket you own.\n\n"
        "Example: sm connect s3://acme-archive/messages/ --project 12345",
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    built.callback()(root)
    for name in modules:
        before = set(registered_names(built))
        importlib.import_module(f"{__package__}.{name}").register(built)
        added = set(registered_names(built)) - before
        declared = {command for command, module in table.items() if module == name}
        if added != declared:
            raise RuntimeError(f"cli/{name}.py registers {sorted(added)} but the command"
                               f" table in cli/app.py gives it {sorted(declared)}")
    return built
