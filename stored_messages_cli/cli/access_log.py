"""`sm access-log`, `--case`, and the recording of every read of the archive (chain of custody).

`recorded(...)` wraps a command (fetch, show, export, find): whatever way it ends, one line
goes to the access log in SM_HOME, and with `--case ID` the same bytes go create-only to
`{prefix}_sm/access/{case_id}/` of every destination the command concerned.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Annotated, Any

import typer

from ..errors import SmError
from ..evidence.access_log import (
    ERROR,
    OK,
    AccessLog,
    AccessRecord,
    redact,
    result_of,
    select,
    write_case_copy,
)
from .common import AppState, command, fail, open_project_destination, state_of
from .options import case_option, time_bound


def access_log_of(state: AppState) -> AccessLog:
    """The access log of this SM_HOME (beside the spool)."""
    return AccessLog.in_folder(state.paths.spool_file.parent)


@contextlib.contextmanager
def recorded(state: AppState, command_name: str, *, case_id: str | None,
             filters: dict[str, Any], details: dict[str, Any] | None = None,
             recipient: str | None = None) -> Iterator[AccessRecord]:
    """Record the command run inside: the record is filled in by the caller (`touch`,
    `concern`, `details`, `result`) and written however the block ends.

    An SmError gives its result (`failed` for a verification failure) and message; an exit
    with a non-zero code keeps the result the caller set, else `error`. `recipient` (the raw
    filter) is removed from any message logged.
    """
    state.require_spool()  # no spool, no log: a typo in SM_HOME creates nothing
    record = AccessRecord(command_name, case_id=case_id, filters=filters,
                          details=dict(details or {}))
    try:
        yield record
    except typer.Exit as exc:
        code = getattr(exc, "exit_code", 1)
        if code and record.result == OK:
            record.result = ERROR
        _finish(state, record, raised=bool(code), recipient=recipient)
        raise
    except SmError as exc:
        record.result = result_of(exc)
        record.error = str(exc)
        _finish(state, record, raised=True, recipient=recipient)
        raise
    except BaseException as exc:
        record.result = ERROR
        record.error = f"{type(exc).__name__}: {exc}"
        _finish(state, record, raised=True, recipient=recipient)
        raise
    _finish(state, record, raised=False, recipient=recipient)


def _finish(state: AppState, record: AccessRecord, *, raised: bool,
            recipient: str | None) -> None:
    """Append the line locally, then write the case copies; a copy that cannot be written
    is an error (exit 1) unless the command already failed."""
    out = state.output
    if record.error is not None:
        record.error = redact(record.error, [recipient])
    log = access_log_of(state)
    moment, line = log.seal(record)
    problems: list[str] = []
    try:
        log.append(line)
    except OSError as exc:
        problems.append(f"the access log {log.path} could not be written:"
                        f" {exc.strerror or exc}")
    if record.case_id is not None:
        problems.extend(_write_case_copies(state, record, moment, line))
    if not problems:
        return
    if raised:  # the command's own error is on its way; say what else went wrong
        for problem in problems:
            out.warn(problem)
        return
    for problem in problems[:-1]:
        out.warn(problem)
    fail(problems[-1], hint="check write access to the bucket's _sm/ folder (sm verify"
                            " --write-test); the local access log holds the record")


def _write_case_copies(state: AppState, record: AccessRecord, moment: float,
                       line: bytes) -> list[str]:
    assert record.case_id is not None
    problems: list[str] = []
    if not record.projects:
        state.output.warn(f"case {record.case_id}: no destination concerned; the record is in"
                          " the local access log only")
        return problems
    done: set[str] = set()
    for project_id in record.projects:
        try:
            destination = open_project_destination(state, project_id)
        except SmError as exc:
            problems.append(f"case {record.case_id}: the access record was not written for"
                            f" project {project_id}: {exc}")
            continue
        try:
            if destination.url in done:
                continue
            done.add(destination.url)
            write_case_copy(destination, record.case_id, moment, line, record.attachments)
        except SmError as exc:
            problems.append(f"case {record.case_id}: the access record could not be written"
                            f" to {destination.url}: {exc}")
        finally:
            destination.close()
    return problems


ACCESS_COLUMNS = ["time", "user", "host", "command", "case", "what", "result"]


def _what(record: dict[str, Any]) -> str:
    messages = record.get("messages") or []
    count = record.get("count", len(messages))
    if count == 1 and len(messages) == 1 and isinstance(messages[0], dict):
        return str(messages[0].get("message_id"))
    return f"{count} message(s)"


def access_log(
    ctx: typer.Context,
    case: Annotated[str | None, typer.Option(
        "--case", callback=case_option, help="Only the accesses of this case.")] = None,
    since: Annotated[str | None, typer.Option(
        help="Only accesses at or after: RFC 3339, a date (UTC) or a time ago (7d).")
    ] = None,
) -> None:
    """List the access log: who read which messages of the archive, when, and why.

    Every sm fetch, show, export and find --remote adds a line (JSON Lines in
    SM_HOME/access.log); --json prints them as one array.
    Example: sm access-log --case DISPUTE-88
    """
    state = state_of(ctx)
    out = state.output
    moment = time_bound(since, end_of_day=False, name="--since", command="access-log")
    state.require_spool()
    log = access_log_of(state)
    good: list[dict[str, Any]] = []
    for number, document in log.records():
        if document is None:
            out.warn(f"{log.path} line {number} is not a JSON object; it was skipped")
        else:
            good.append(document)
    chosen = select(good, case_id=case, since=moment)
    if out.json_mode:
        out.emit_json(chosen)
        return
    if chosen:
        out.table(None, ACCESS_COLUMNS, [
            [r.get("time"), r.get("user"), r.get("host"), r.get("command"),
             r.get("case_id") or "-", _what(r), _result_cell(r)] for r in chosen])
    out.info(f"{len(chosen)} access(es)" if chosen else "No access recorded"
             + (f" for case {case}" if case else "") + ".")


def register(app: typer.Typer) -> None:
    """Add `sm access-log`."""
    command(app, "access-log")(access_log)


def _result_cell(record: dict[str, Any]) -> str:
    result = str(record.get("result"))
    return result if result == OK else f"{result}: {record.get('error') or ''}".rstrip(": ")


def touched_projects(refs: Iterable[dict[str, Any]]) -> list[str]:
    """The projects of messages touched, sorted."""
    return sorted({str(r["project_id"]) for r in refs if r.get("project_id") is not None})
