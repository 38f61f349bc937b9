"""The root of `sm` as Typer sees it: global options anywhere, one-line usage errors,
help with metavars, and the app built from the command modules (`cli/app.py` imports
this only when a command runs, so `sm --version` never loads Typer)."""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import typer
import typer.core

from .app import (
    _COUNTED_CLUSTER,
    _GLOBAL_OPTIONS_WITH_VALUE,
    _GLOBAL_SWITCHES,
    COMMAND_MODULES,
)

# `.common` (rich, the config, the spool) is imported where used.


def _own_options(command: Any) -> dict[str, bool]:
    """The option strings `command` defines, each with whether it takes a value."""
    options: dict[str, bool] = {}
    for param in getattr(command, "params", []):
        takes_value = not (getattr(param, "is_flag", False) or getattr(param, "count", False))
        for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
            if opt.startswith("-"):
                options[opt] = takes_value
    return options


def hoist_global_options(group: Any, ctx: Any, args: list[str]) -> list[str]:
    """`args` with the global options given after the command moved before it, so that
    `sm status --json` means `sm --json status` (as `aws` and `gh` read them).

    An option the command (or its group) defines itself stays where it is, and so does the
    value of one of its options (`--recipient -q` is a recipient) and everything after `--`.
    """
    index = 0
    while index < len(args):  # skip the global options written before the command
        token = args[index]
        if token == "--":
            return args
        if not token.startswith("-"):
            break
        index += 2 if token in _GLOBAL_OPTIONS_WITH_VALUE else 1
    if index >= len(args):
        return args
    command = group.get_command(ctx, args[index])
    own = _own_options(command)
    moved: list[str] = []
    kept: list[str] = []
    rest = args[index + 1:]
    position = 0
    while position < len(rest):
        token = rest[position]
        name = token.split("=", 1)[0] if token.startswith("--") else token
        takes_value = False
        if token == "--":
            kept.extend(rest[position:])
            break
        if not token.startswith("-") and isinstance(getattr(command, "commands", None), dict):
            command = command.commands.get(token, command)  # `sm bucket create …`
            own.update(_own_options(command))
            kept.append(token)
        elif name in own:
            kept.append(token)
            takes_value = own[name] and "=" not in token
            if takes_value and position + 1 < len(rest):
                kept.append(rest[position + 1])
                position += 1
        elif name in _GLOBAL_OPTIONS_WITH_VALUE:
            moved.append(token)
            if "=" not in token and position + 1 < len(rest):
                moved.append(rest[position + 1])
                position += 1
        elif name in _GLOBAL_SWITCHES or _COUNTED_CLUSTER.fullmatch(token):
            moved.append(token)
        else:
            kept.append(token)
        position += 1
    return [*args[:index], *moved, args[index], *kept]


@contextlib.contextmanager
def _usage_errors_as_one_line() -> Iterator[None]:
    """A usage error becomes `Error: …` / `Try: …` and exit 2, never a boxed panel."""
    from .common import UsageError, report_usage_error

    try:
        yield
    except UsageError as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" or (ctx is not None and
                                                         ctx.resilient_parsing):
            raise  # `sm` alone prints the help; shell completion parses leniently
        report_usage_error(exc)


# Help shows what to type, never a Python type: a metavar for each option that takes a
# value (choices as `a|b`), none for a flag; these names get a shared word.
METAVARS = {
    "project": "ID", "message_id": "ID", "campaign": "ID", "case": "ID", "external_id": "ID",
    "expected_owner": "ACCOUNT_ID", "role_arn": "ARN", "kms_key_arn": "ARN",
    "principal": "ARN", "kms_key_id": "KEY", "endpoint_url": "URL", "account_url": "URL",
    "home": "DIR", "since": "TIME", "until": "TIME", "metrics_addr": "HOST:PORT",
    "accept_failed_check": "CHECK", "output": "PATH",
}
ARGUMENT_METAVARS = {"files": "FILE"}
_EXAMPLE = re.compile(r"\s*Examples?:\s+(.*)\Z", re.S)


_NOT_PLAIN = object()


def _plain_value(param: Any, value: Any) -> Any:
    """`value` as Typer's coercion would return it, when that takes no work: a `str` for a
    `str` parameter, a `bool` for a flag, an `int`/`float` in range, None, or what the
    parameter's own parser answers. `_NOT_PLAIN` for anything else."""
    if param.multiple or param.nargs != 1:
        return _NOT_PLAIN
    if value is None:
        return None
    info = param.type_descriptor.parameter_info
    if info.parser is not None:
        try:
            return info.parser(value)
        except Exception:  # Typer's coercion calls it again and words the error itself
            return _NOT_PLAIN
    annotation = param.type_descriptor.annotation
    if type(value) is not annotation or annotation not in (str, bool, int, float):
        return _NOT_PLAIN
    if annotation in (int, float) and (info.clamp or (
            info.min is not None and value < info.min) or (
            info.max is not None and value > info.max)):
        return _NOT_PLAIN
    return value


class _PlainValues:
    """A parameter's coercion that skips Typer's pydantic TypeAdapter (several ms to build
    each, and pydantic's plugin loader on the first) for values that need no work: the
    defaults and the strings of most options. Anything else goes to Typer's own coercion,
    so every value is accepted, converted and refused exactly as Typer does."""

    def __init__(self, typer_coercion: Any) -> None:
        self._typer_coercion = typer_coercion

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        """The value Typer's coercion would return (`RuntimeParam.coerce`)."""
        plain = _plain_value(param, value)
        if plain is not _NOT_PLAIN:
            return plain
        return self._typer_coercion().coerce(value, param=param, ctx=ctx)


class _Argument(typer.core.TyperArgument):
    """An argument shown by its metavar alone (`URL`, `[FILE|-]...`)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        """No type column: the metavar says what to give."""
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw + ("..." if self.nargs != 1 else "")
        return name if self.required else f"[{name}]"

    def get_runtime_param(self) -> Any:
        """What coerces this parameter's values: `_PlainValues`, then Typer's own."""
        return _PlainValues(super().get_runtime_param)


class _PlainOption(typer.core.TyperOption):
    """An option coerced through `_PlainValues` (Typer's own help and completion options)."""

    def get_runtime_param(self) -> Any:
        """What coerces this parameter's values: `_PlainValues`, then Typer's own."""
        return _PlainValues(super().get_runtime_param)


def _coerce_plainly(command: Any, ctx: Any) -> None:
    """Give the options Typer adds itself (help, shell completion) `_PlainValues` too."""
    options = [*getattr(command, "params", []), command.get_help_option(ctx)]
    for param in options:
        if type(param) is typer.core.TyperOption:
            param.__class__ = _PlainOption


class _Option(_PlainOption):
    """An option shown with its metavar, or nothing for a flag."""

    def display_type_rich(self, ctx: Any) -> str | None:
        """The metavar (`ID`, `json|html|text|body`); nothing for a flag or counter."""
        return None if self.is_flag or self.count else self.metavar


def _metavar(param: Any) -> str:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and descriptor.is_choice and descriptor.choices:
        return "|".join(str(getattr(c, "value", c)) for c in descriptor.choices)
    if param.name in METAVARS:
        return METAVARS[param.name]
    annotation = getattr(descriptor, "annotation", None)
    if annotation in (int, float):
        return "N" if annotation is int else "SECONDS"
    return str(param.name).upper()


def tidy_help(command: Any) -> None:
    """Give every parameter under `command` a metavar instead of a Python type, and drop the
    `--no-…` twin (and the default) of a flag that is off unless given."""
    command.rich_markup_mode = None  # plain help, wrapped to the terminal, no panels
    help_text = getattr(command, "help", None)
    example = _EXAMPLE.search(help_text or "")
    if help_text and example:  # an example is copied whole: never rewrapped mid-command
        command.help = (help_text[:example.start()].rstrip() + "\n\n\b\nExample:\n  "
                        + " ".join(example.group(1).split()))
    for param in getattr(command, "params", []):
        if isinstance(param, typer.core.TyperArgument):
            param.__class__ = _Argument
            if param.metavar is None:
                param.metavar = ARGUMENT_METAVARS.get(param.name or "",
                                                      str(param.name).upper())
        elif isinstance(param, typer.core.TyperOption):
            param.__class__ = _Option
            if param.is_flag or param.count:
                if param.is_bool_flag and not param.default:
                    param.secondary_opts = []
                param.show_default = False
            elif param.metavar is None:
                param.metavar = _metavar(param)
    children = list(getattr(command, "commands", {}).values())
    for child in children:
        tidy_help(child)
    if children and command.help and "Example:" not in command.help:
        # a group shows its first command's example: `sm index --help` says what to type
        first = _EXAMPLE.search(children[0].help or "")
        if first:
            command.help = command.help.rstrip() + "\n\n\b\nExample:\n  " + " ".join(
                first.group(1).split())


class SmGroup(typer.core.TyperGroup):
    """The root `sm` group: global options anywhere, one-line usage errors, help that shows
    metavars and choices."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        tidy_help(self)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse after moving global options written after the command before it."""
        _coerce_plainly(self, ctx)
        return super().parse_args(ctx, hoist_global_options(self, ctx, list(args)))

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:
        """The root context; a bad global option is a one-line usage error."""
        with _usage_errors_as_one_line():
            return super().make_context(info_name, args, parent, **extra)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """The command `args` names (its own help option coerced plainly too)."""
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            _coerce_plainly(command, ctx)
        return name, command, rest

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
        "--verbose", "-v", count=True, help="More detail on stderr (repeatable).")] = 0,
    quiet: Annotated[int, typer.Option(
        "--quiet", "-q", count=True, help="Less on stderr (repeatable).")] = 0,
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
    from .common import AppState, Output, configure_logging

    verbosity = verbose - quiet
    ctx.obj = AppState(home=home, spool=spool,
                       output=Output(json_mode=json_output, verbosity=verbosity),
                       log_format=log_format)
    configure_logging(verbosity, log_format)


def build_app(modules: Sequence[str] = COMMAND_MODULES) -> typer.Typer:
    """The `sm` Typer app with the commands of `modules` registered."""
    built = typer.Typer(
        cls=SmGroup,
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
        importlib.import_module(f"{__package__}.{name}").register(built)
    return built
