"""`sm hold create|release|list|show`: legal holds by case (SPEC 9.4, docs/holds.md)."""

# No `from __future__ import annotations`: typer would have to eval every annotation.

import json
from typing import Annotated, Any

import typer

from ..evidence.holds import (
    HoldRefused,
    HoldReport,
    apply_holds,
    case_document,
    case_filters,
    open_case,
    release_case,
)
from ..evidence.log import LogOptions
from ..evidence.manifest import Manifests, limits_from
from ..investigate.sealed import keyed_digests
from ..spool.holds import HoldCase
from .command_classes import group
from .common import AppState, Output, command, fail, open_project_destination, state_of
from .find import phone_region
from .options import (
    CampaignOption,
    MediumOption,
    MessageIdOption,
    ProjectIdOption,
    ProjectOption,
    RecipientOption,
    SinceOption,
    UntilOption,
    time_range,
)

CaseArgument = Annotated[str, typer.Argument(metavar="CASE_ID", help="The case's id.")]
HoldWorkersOption = Annotated[int, typer.Option(
    "--workers", min=1, max=64, help="Objects held (or released) in parallel.")]


def create(
    ctx: typer.Context,
    case_id: CaseArgument,
    project: ProjectIdOption,
    recipient: RecipientOption = None,
    campaign: CampaignOption = None,
    message_id: MessageIdOption = None,
    medium: MediumOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    note: Annotated[str | None, typer.Option(
        "--note", metavar="TEXT", help="Why the case holds them (kept with the case).")
    ] = None,
    workers: HoldWorkersOption = 8,
) -> None:
    """Hold every stored message matching the filters, and every later one, for a case.

    Each matching object gets its store's own hold (S3 object lock legal hold, GCS
    temporary hold, Azure legal hold, a folder's read-only mode); messages stored later
    that match are held at upload by sm run. Run it again with the same filters to finish
    a case an interruption left half-applied. Example: sm hold create 2026-acme-v-doe
    --project 12345 --recipient ann.lee@example.com --note "litigation hold"
    """
    state = state_of(ctx)
    if recipient is not None and not recipient.strip():
        raise typer.BadParameter("must not be empty", param_hint="--recipient")
    since_at, until_at = time_range(since, until, command="hold create")
    filters = case_filters(recipient=recipient, message_id=message_id, campaign_id=campaign,
                           medium=medium, since=since_at, until=until_at,
                           region=phone_region(state, recipient),
                           digests=keyed_digests(state.paths.config_file) if recipient else ())
    state.require_spool()
    state.connected_projects(project, none_yet="no project has a destination yet")
    destination = open_project_destination(state, project, for_writing=True,
                                           max_connections=workers)
    try:
        with state.open_spool() as spool:
            try:
                case, _added = open_case(spool, destination, case_id, project, filters, note)
            except HoldRefused as exc:
                fail(str(exc), hint=exc.hint, code=2)
            report = _apply(state, spool, {project: destination}, case, workers, "holding")
            _seal(state, spool, project, destination)
            document = case_document(spool, case)
    finally:
        destination.close()
    _finish(state.output, document, report,
            f"case {case.case_id}: {document['objects']} object(s) held")


def release(
    ctx: typer.Context,
    case_id: CaseArgument,
    workers: HoldWorkersOption = 8,
) -> None:
    """Release a case: lift its holds wherever no other open case holds the object.

    The release and each object's are entered in the manifest log. Run it again to finish
    a release an interruption left half-done. Example: sm hold release 2026-acme-v-doe
    """
    state = state_of(ctx)
    state.require_spool()
    with state.open_spool() as spool:
        case = release_case(spool, case_id)
        destination = open_project_destination(state, case.project_id, for_writing=True,
                                               max_connections=workers)
        try:
            report = _apply(state, spool, {case.project_id: destination}, case, workers,
                            "releasing")
            _seal(state, spool, case.project_id, destination)
            document = case_document(spool, case)
        finally:
            destination.close()
    _finish(state.output, document, report,
            f"case {case.case_id} released: {report.lifted} hold(s) lifted,"
            f" {report.kept} kept for other open cases")


def list_cases(
    ctx: typer.Context,
    project: ProjectOption = None,
    all_cases: Annotated[bool, typer.Option(
        "--all", help="Released cases too.")] = False,
) -> None:
    """List the legal hold cases (open ones; --all for released ones too).

    Example: sm hold list --project 12345
    """
    state = state_of(ctx)
    out = state.output
    state.require_spool()
    with state.open_spool() as spool:
        documents = [case_document(spool, case)
                     for case in spool.store.hold_cases(project, not all_cases)]
    if out.json_mode:
        out.emit_json(documents)
        return
    if not documents:
        out.print("no open cases" if not all_cases else "no cases")
        return
    for d in documents:
        status = f"released {d['released_at']}" if d["released_at"] else "open"
        out.print(f"{d['case_id']}  project {d['project_id']}  {d['objects']} object(s),"
                  f" {d['pending']} pending  {status}", highlight=False)


def show(
    ctx: typer.Context,
    case_id: CaseArgument,
) -> None:
    """Show one case: its filters, note, dates and how many objects it holds.

    Example: sm --json hold show 2026-acme-v-doe
    """
    state = state_of(ctx)
    out = state.output
    state.require_spool()
    with state.open_spool() as spool:
        case = spool.store.hold_case(case_id)
        if case is None:
            fail(f"no case {case_id}", hint="sm hold list --all")
        document = case_document(spool, case)
    if out.json_mode:
        out.emit_json(document)
        return
    for name, value in document.items():
        shown = json.dumps(value) if isinstance(value, dict) else value
        out.print(f"{name}: {shown if shown is not None else '-'}", highlight=False)


def _apply(state: AppState, spool: Any, destinations: dict[str, Any], case: HoldCase,
           workers: int, label: str) -> HoldReport:
    """The case's ledger rows done, with a progress bar on a terminal."""
    out = state.output
    _objects, pending, _failing = spool.store.hold_counts(case.case_id)
    if not out.interactive or not pending:
        return apply_holds(spool, destinations, case_id=case.case_id, workers=workers)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                  console=out.stderr, transient=True) as progress:
        task = progress.add_task(label, total=pending)
        return apply_holds(spool, destinations, case_id=case.case_id, workers=workers,
                           progress=lambda count: progress.update(task, advance=count))


def _seal(state: AppState, spool: Any, project_id: str, destination: Any) -> None:
    """Seal and write the log's open entries now, so the hold events are in the bucket."""
    settings = state.settings()
    max_entries, max_age = limits_from(settings)
    Manifests(spool, {project_id: destination}, max_entries, max_age,
              log_options=LogOptions.from_settings(settings, state.home)).close()


def _finish(out: Output, document: dict[str, Any], report: HoldReport, summary: str) -> None:
    """Print the case (JSON: `hold show`'s document and `failed`); exit 1 when objects are
    left to do."""
    if out.json_mode:
        out.emit_json({**document, "failed": len(report.failed)})
    else:
        out.print(summary, highlight=False)
    if report.failed:
        key, error = report.failed[0]
        fail(f"{len(report.failed)} object(s) not done yet (first: {key}: {error})",
             hint=f"sm hold show {document['case_id']}; run the same command again (or let"
             " sm run finish it)")


def register(app: typer.Typer) -> None:
    """Add the hold group (create, release, list, show)."""
    hold_app = group("hold", "Legal holds by case (docs/holds.md).")
    command(hold_app, "create")(create)
    command(hold_app, "release")(release)
    command(hold_app, "list")(list_cases)
    command(hold_app, "show")(show)
    app.add_typer(hold_app, name="hold")
