"""What every command shares: the app state, output (human / JSON / quiet) and error mapping."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from ..config import Paths, SavedDestinationOptions, parse_duration
from ..errors import ConfigError, SmError
from ..ops.logs import JsonLogFormatter, TextLogFormatter
from .command_classes import SmCommand

# Rich, pydantic (the settings), the destinations and the spool are imported where used: a
# command pays only for what it touches (`sm --json status` never loads Rich).
if TYPE_CHECKING:
    from rich.console import Console

    from ..config.projects import ProjectDestination
    from ..config.settings import Settings
    from ..destinations import Destination, DestinationOptions
    from ..spool import Spool


class Output:
    """Decides how results are shown: Rich on a terminal, plain text in a pipe, or JSON.

    Data goes to stdout; diagnostics and progress go to stderr. Text is printed literally:
    paths, URLs, ids and reasons come from users and may hold `[…]`, which Rich would
    otherwise read as markup (and crash on, or eat). Styling is added with `Text`, never by
    markup inside a message. The Rich consoles are made on first use.
    """

    def __init__(self, json_mode: bool = False, verbosity: int = 0, *,
                 stdout: Console | None = None, stderr: Console | None = None) -> None:
        self.json_mode = json_mode
        self.verbosity = verbosity
        self._stdout = stdout
        self._stderr = stderr

    @property
    def stdout(self) -> Console:
        """The Rich console on stdout."""
        if self._stdout is None:
            from rich.console import Console  # start-up: `sm --json status` loads no Rich

            self._stdout = Console(soft_wrap=True)
        return self._stdout

    @property
    def stderr(self) -> Console:
        """The Rich console on stderr."""
        if self._stderr is None:
            from rich.console import Console  # start-up: `sm --json status` loads no Rich

            self._stderr = Console(stderr=True, soft_wrap=True)
        return self._stderr

    @property
    def interactive(self) -> bool:
        """True when progress bars make sense (stderr is a terminal, not quiet, not JSON)."""
        return self.stderr.is_terminal and self.verbosity >= 0 and not self.json_mode

    def emit_json(self, document: Any) -> None:
        """Print one JSON document to stdout."""
        sys.stdout.write(json.dumps(document, ensure_ascii=False, sort_keys=False) + "\n")
        sys.stdout.flush()

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Print human-readable data to stdout (never in JSON mode); strings literally."""
        if not self.json_mode:
            kwargs.setdefault("markup", False)
            self.stdout.print(*objects, **kwargs)

    def info(self, message: str) -> None:
        """A diagnostic line on stderr, hidden by -q (printed literally)."""
        if self.verbosity >= 0:
            self.stderr.print(message, highlight=False, markup=False)

    def warn(self, message: str) -> None:
        """A warning on stderr (always shown; the message printed literally)."""
        from rich.text import Text  # start-up: `sm --json status` loads no Rich

        self.stderr.print(Text.assemble(("Warning:", "yellow"), " ", message), highlight=False)

    def summary(self, message: str) -> None:
        """A closing count line on stdout (`accepted 4, …`); silenced by -q and --json."""
        if self.verbosity >= 0 and not self.json_mode:
            self.stdout.print(message, highlight=False, markup=False)

    def table(self, title: str | None, columns: list[str], rows: list[list[Any]], *,
              whole: set[str] | frozenset[str] | None = None) -> None:
        """Print a table to stdout; cells are literal text (a `Text` cell keeps its style).

        The cells of `whole` columns (by default those `WHOLE_COLUMNS` names: ids, keys,
        URLs, codes people copy) are never cut or wrapped: on a narrow terminal the other
        columns wrap instead, and in a pipe every row is one line, however long.
        """
        from rich.table import Table  # start-up: `sm --json status` loads no Rich
        from rich.text import Text

        keep = whole if whole is not None else frozenset(
            c for c in columns if c.lower() in WHOLE_COLUMNS)
        table = Table(title=None if title is None else Text(title), show_edge=False,
                      header_style="bold")
        cells = [[v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in row]
                 for row in rows]
        for index, column in enumerate(columns):
            if column in keep:
                longest = max([len(column), *(r[index].cell_len for r in cells)])
                table.add_column(Text(column), no_wrap=True, min_width=longest)
            else:
                table.add_column(Text(column), overflow="fold")
        for row in cells:
            table.add_row(*row)
        if self.json_mode:
            return
        measured = self.stdout.measure(table, options=self.stdout.options.update_width(10_000))
        if self.stdout.is_terminal:
            width = max(self.stdout.width, measured.minimum)
        else:
            width = measured.maximum  # a pipe: one line per row, nothing cut
        terminal_width = self.stdout.width
        self.stdout.width = width  # Console.print never renders wider than the console
        try:
            self.stdout.print(table, crop=False)
        finally:
            self.stdout.width = terminal_width


# Column names whose cells people copy into the next command: shown whole (Output.table).
WHOLE_COLUMNS = frozenset({
    "project", "message", "message id", "message_id", "id", "key", "destination", "url",
    "code", "error code", "reason", "check", "status", "state", "health", "host", "pid",
    "campaign", "file", "path", "sha256", "payload sha256", "next probe", "next attempt",
    "started", "last heartbeat", "type", "field",
})


@dataclass
class AppState:
    """Global options, resolved once per invocation."""

    home: str | None
    output: Output
    log_format: str = "text"
    spool: str | None = None  # --spool: a postgresql:// URL (or a spool file)
    _settings: Settings | None = None

    @property
    def paths(self) -> Paths:
        """The config file and spool paths in use."""
        return Paths.resolve(self.home)

    def settings(self) -> Settings:
        """The settings and destinations (read once)."""
        if self._settings is None:
            from ..config.settings import load_settings  # start-up: pydantic when read

            self._settings = load_settings(self.paths.config_file)
        return self._settings

    def open_spool(self, *, create: bool = False) -> Spool:
        """The spool of this home (or of --spool, SM_SPOOL_URL, spool_url).

        Only commands that take messages in (`create`: connect, ingest, run, replay) create
        a missing spool file; the others exit 1 with `Error: no spool at PATH`, creating
        nothing (a typo in SM_HOME must not look like an empty archive)."""
        if not create:
            self.require_spool()
        from ..investigate.sealed import use_keys_of
        from ..spool import Spool  # start-up: only commands that open the spool load it

        spool = Spool.open(self.spool, home=self.home)
        # reads open envelopes with this spool's keys (SPEC 9.5)
        use_keys_of(lambda: Spool.open(self.spool, home=self.home))
        return spool

    def require_spool(self) -> None:
        """Exit 1 (`Error: no spool at PATH`, `Try: …`) when the SQLite spool file is
        missing; a PostgreSQL spool is the database's to have."""
        from ..config.paths import spool_location

        where = spool_location(self.paths, self.spool)
        if "://" in where.target or Path(where.target).exists():
            return
        fail(f"no spool at {where.target}",
             hint="check --home / SM_HOME (or --spool); a spool is created by sm connect,"
             " sm ingest or sm run")

    def project(self, project_id: str) -> ProjectDestination:
        """A project's saved destination, or a ConfigError naming the next step."""
        projects = self.settings().projects
        if project_id not in projects:
            raise ConfigError(f"project {project_id} has no destination",
                              hint=f"sm connect URL --project {project_id}")
        return projects[project_id]

    def connected_projects(self, project_id: str | None, *, none_yet: str,
                           hint: str = "sm connect URL --project ID", code: int = 1
                           ) -> list[str]:
        """The projects a command works on: the one named (a ConfigError naming `sm
        connect` when it has no destination), else every connected one, sorted; when there
        is none, `none_yet` and `hint` as `Error:`/`Try:` lines and exit `code`."""
        if project_id is not None:
            self.project(project_id)
            return [project_id]
        projects = sorted(self.settings().projects)
        if not projects:
            fail(none_yet, hint=hint, code=code)
        return projects

    def save_project(self, project_id: str, destination: ProjectDestination | None) -> None:
        """Save (or with None, remove) a project's destination in config.toml."""
        from ..config.writer import save_projects  # start-up: tomlkit only when saving

        projects = dict(self.settings().projects)
        if destination is None:
            projects.pop(project_id, None)
        else:
            projects[project_id] = destination
        save_projects(self.paths.config_file, projects)
        self._settings = None


def options_for(destination: ProjectDestination, *, max_connections: int = 10
                ) -> DestinationOptions:
    """Destination options from a saved project destination: every saved option (the
    fields of `SavedDestinationOptions`) and this run's connection count."""
    from ..destinations import DestinationOptions  # start-up: `sm status` opens none

    saved = {option.name: getattr(destination, option.name)
             for option in fields(SavedDestinationOptions)}
    return DestinationOptions(**saved, max_connections=max_connections)


def open_project_destination(state: AppState, project_id: str, *, max_connections: int = 10,
                             for_writing: bool = False) -> Destination:
    """Open a project's saved destination; `for_writing` refuses a read-only one (an
    investigator's, saved by `sm connect --read-only`) with a ConfigError saying so."""
    saved = state.project(project_id)
    if for_writing:
        refuse_read_only(project_id, saved)
    from ..destinations import open_destination  # start-up: `sm status` opens none

    return open_destination(saved.url, options_for(saved, max_connections=max_connections))


def refuse_read_only(project_id: str, saved: ProjectDestination) -> None:
    """Raise a ConfigError when `saved` was connected read-only: nothing may be archived."""
    if saved.read_only:
        raise ConfigError(
            f"project {project_id}'s destination {saved.url} was connected read-only (for"
            " investigations); sm run does not archive to it",
            hint=f"sm connect {saved.url} --project {project_id}   # without --read-only, as"
            " an identity allowed to write")


def duration_option(value: Any) -> float:
    """A `--max-age` / `--older-than` value (`90`, `15m`, `8h`, `7d`) in seconds; a usage
    error (exit 2) unless it is a duration of more than zero."""
    if isinstance(value, float):
        return value
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise typer.BadParameter(f"{value!r} must be more than zero")
    return seconds


def state_of(ctx: typer.Context) -> AppState:
    """The AppState the root callback stored on the context."""
    obj = ctx.find_root().obj
    if not isinstance(obj, AppState):  # invoked without the root callback (tests)
        obj = AppState(home=None, output=Output())
        ctx.find_root().obj = obj
    return obj


def fail(message: str, *, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print `Error: …` (and `Try: …`) on stderr and exit."""
    from rich.console import Console  # start-up: `sm --json status` loads no Rich
    from rich.text import Text

    console = Console(stderr=True, soft_wrap=True)
    # One line each, printed literally: the message may quote a user's path, URL or id.
    console.print(Text.assemble(("Error:", "bold red"), " ", _one_line(message)),
                  highlight=False)
    if hint:
        console.print(Text(f"Try: {_one_line(hint)}"), highlight=False)
    raise typer.Exit(code)


def _one_line(text: str) -> str:
    """`text` on one line (a reason quoted from a file or an SDK may hold line breaks)."""
    return " ".join(text.splitlines()) if "\n" in text or "\r" in text else text


# Click's UsageError, the base of typer.BadParameter (Typer vendors Click: never import it).
UsageError: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")


def usage_error(message: str, *, param_hint: str | None = None, hint: str | None = None
                ) -> typer.BadParameter:
    """A bad value (exit 2); `hint` becomes the `Try:` line instead of `sm COMMAND --help`."""
    error = typer.BadParameter(message, param_hint=param_hint)
    error.hint = hint  # type: ignore[attr-defined]
    return error


def checked_value(check: Any, value: Any, param_hint: str, **kwargs: Any) -> Any:
    """`value` after `check(value, **kwargs)`; a ConfigError it raises is a usage error."""
    try:
        check(value, **kwargs)
    except ConfigError as exc:
        raise usage_error(str(exc), param_hint=param_hint, hint=exc.hint) from None
    return value


def report_usage_error(exc: Exception) -> NoReturn:
    """Print a usage error as `Error: …` and `Try: …` (never a boxed panel) and exit 2."""
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    hint = getattr(exc, "hint", None)
    if hint is None:
        ctx = getattr(exc, "ctx", None)
        hint = f"{ctx.command_path} --help" if ctx is not None else "sm --help"
    fail(message, hint=hint, code=2)


def report_error(exc: SmError) -> NoReturn:
    """Translate a library error into the one-line CLI form."""
    if os.environ.get("SM_DEBUG"):
        raise exc
    fail(str(exc), hint=exc.hint)


def configure_logging(verbosity: int, log_format: str) -> None:
    """Log `sm.*` to stderr: INFO by default, DEBUG with -v, WARNING with -q."""
    level = logging.DEBUG if verbosity > 0 else logging.INFO if verbosity == 0 else (
        logging.WARNING if verbosity == -1 else logging.ERROR)
    handler = logging.StreamHandler(sys.stderr)
    # JSON lines carry ts (RFC 3339, Z), level and a snake_case event (docs/operations.md).
    handler.setFormatter(JsonLogFormatter() if log_format == "json" else TextLogFormatter())
    logger = logging.getLogger("sm")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def command(app: typer.Typer, name: str | None = None, **kwargs: Any) -> Any:
    """Register a command whose library errors become `Error: …` lines with exit code 1."""

    def decorate(func: Any) -> Any:
        @functools.wraps(func)
        def wrapper(*args: Any, **inner: Any) -> Any:
            try:
                return func(*args, **inner)
            except SmError as exc:
                report_error(exc)

        return app.command(name, cls=SmCommand, **kwargs)(wrapper)

    return decorate
