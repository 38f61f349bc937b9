"""The Typer classes every `sm` command and group is built with, through the `cls=` Typer
documents: plain help (a metavar for each option that takes a value, never a Python type;
arguments shown by their metavar alone; the example kept whole) and parameter values
processed without pydantic when they need no conversion."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import typer
import typer.core

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


def _example_kept_whole(help_text: str | None) -> str | None:
    """`help_text` with its example copied whole: Click never rewraps a `\\b` paragraph, so
    a command line is never broken in the middle."""
    example = _EXAMPLE.search(help_text or "")
    if not help_text or not example:
        return help_text
    return (help_text[:example.start()].rstrip() + "\n\n\b\nExample:\n  "
            + " ".join(example.group(1).split()))


def _group_help(help_text: str | None, commands: Any) -> str | None:
    """A group's help with an example: its own, else its first command's (`sm index --help`
    says what to type)."""
    help_text = _example_kept_whole(help_text)
    children = list(commands.values()) if isinstance(commands, Mapping) else list(
        commands or [])
    if not children or not help_text or "Example:" in help_text:
        return help_text
    first = _EXAMPLE.search(children[0].help or "")
    if first is None:
        return help_text
    return help_text.rstrip() + "\n\n\b\nExample:\n  " + " ".join(first.group(1).split())


def _metavar(param: Any) -> str:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and descriptor.is_choice and descriptor.choices:
        return "|".join(str(getattr(c, "value", c)) for c in descriptor.choices)
    if param.name in METAVARS:
        return str(METAVARS[param.name])
    annotation = getattr(descriptor, "annotation", None)
    if annotation in (int, float):
        return "N" if annotation is int else "SECONDS"
    return str(param.name).upper()


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


def _process_plain_values(param: Any) -> None:
    """Process the values that need no work without Typer's coercion, which builds a
    pydantic TypeAdapter per parameter (several ms each, and pydantic's import on the first):
    `sm --json status` then loads no pydantic at all. Anything else, a missing required
    value included, goes to Typer's own processing, so every value is accepted, converted
    and refused exactly as Typer does. Typer offers no hook to choose a parameter's class,
    so this wraps Click's public `Parameter.process_value` of the parameter itself."""
    typer_processing = param.process_value

    def process_value(ctx: Any, value: Any) -> Any:
        plain = _plain_value(param, value)
        if plain is _NOT_PLAIN or (plain is None and param.required):
            return typer_processing(ctx, value)
        return plain if param.callback is None else param.callback(ctx, param, plain)

    param.process_value = process_value


def _prepared(params: list[Any]) -> list[Any]:
    """`params`, each option that takes a value given a metavar (never a Python type), each
    parameter the plain processing above (once: a command's parameters are kept)."""
    for param in params:
        if "process_value" in vars(param):
            continue
        if isinstance(param, typer.core.TyperOption) and not (param.is_flag or param.count):
            if param.metavar is None:
                param.metavar = _metavar(param)
        elif isinstance(param, typer.core.TyperArgument) and param.metavar is None:
            param.metavar = ARGUMENT_METAVARS.get(param.name or "", str(param.name).upper())
        if isinstance(param, (typer.core.TyperOption, typer.core.TyperArgument)):
            _process_plain_values(param)
    return params


def _argument_record(param: Any) -> tuple[str, str]:
    """An argument's line in the help: its metavar (`URL`, `FILE`) and its help."""
    return param.metavar, (param.help or "") + ("  [required]" if param.required else "")


def _argument_usage(param: Any) -> str:
    """An argument on the usage line: `URL`, `[FILE...]`."""
    name = param.metavar + ("..." if param.nargs != 1 else "")
    return name if param.required else f"[{name}]"


class SmCommand(typer.core.TyperCommand):
    """Every `sm` command: plain help (metavars, arguments shown by their metavar alone, the
    example kept whole) and parameters processed without pydantic when they can be."""

    def __init__(self, name: str | None, *, help: str | None = None,  # noqa: A002 - Click's
                 **attrs: Any) -> None:
        super().__init__(name, help=_example_kept_whole(help), **attrs)

    def get_params(self, ctx: Any) -> list[Any]:
        """The parameters (`--help` included), each with its metavar and plain processing."""
        return _prepared(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """`[OPTIONS] URL`, `[OPTIONS] [FILE...]`: arguments by their metavar."""
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [_argument_usage(p) for p in self.get_params(ctx)
                         if isinstance(p, typer.core.TyperArgument)]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        """The Arguments (metavar and help, no type) and Options sections."""
        params = self.get_params(ctx)
        arguments = [_argument_record(p) for p in params
                     if isinstance(p, typer.core.TyperArgument) and not p.hidden]
        options = [record for p in params if not isinstance(p, typer.core.TyperArgument)
                   and (record := p.get_help_record(ctx)) is not None]
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)


class SmGroup(typer.core.TyperGroup):
    """Every `sm` group (`sm bucket`, `sm index`…): plain help with an example."""

    def __init__(self, *, help: str | None = None, commands: Any = None,  # noqa: A002
                 **attrs: Any) -> None:
        super().__init__(help=_group_help(help, commands), commands=commands, **attrs)

    def get_params(self, ctx: Any) -> list[Any]:
        """The parameters (`--help` and Typer's completion options included), each with its
        metavar and plain processing."""
        return _prepared(super().get_params(ctx))


def group(name: str, help_text: str) -> typer.Typer:
    """A command group of `sm` (`sm index`, `sm spool`…), shown with plain help."""
    return typer.Typer(name=name, cls=SmGroup, help=help_text, no_args_is_help=True)
