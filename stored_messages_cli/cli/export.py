"""`sm export`: matching stored messages as eml / mbox / jsonl, with a load file and SHA256SUMS."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..evidence.access_log import FAILED, filters_of, refs_of
from ..evidence.export import FORMATS, STREAM_FILES, ExportReport, export, export_stream
from ..evidence.export_evidence import EvidenceKeys, evidence_keys
from ..evidence.holds import holding_cases_of
from ..investigate.index import ArchiveIndex, IndexEntry
from ..investigate.sealed import keyed_digests
from ..message import sha256_hex
from .access_log import recorded, touched_projects
from .common import AppState, Output, command, fail, state_of
from .find import build_query, coverage_warnings, opener, phone_region
from .options import (
    CampaignOption,
    CaseOption,
    MediumOption,
    MessageIdOption,
    ProjectOption,
    RecipientOption,
    SinceOption,
    UntilOption,
    WorkersOption,
)


def _format_option(value: str) -> str:
    if value not in FORMATS:
        raise typer.BadParameter(f"{value!r}: use eml, mbox or jsonl")
    return value


def export_command(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option(
        "--output", "-o", file_okay=False,
        help="A new (or empty) folder for the export; - for standard output (jsonl, mbox).")],
    format: Annotated[str, typer.Option(  # noqa: A002 - the option's name
        "--format", callback=_format_option, metavar="|".join(FORMATS),
        autocompletion=lambda: list(FORMATS),
        help="eml (one file per email), mbox (emails in one mbox) or jsonl (payloads).")
    ] = "eml",
    recipient: RecipientOption = None,
    message_id: MessageIdOption = None,
    campaign: CampaignOption = None,
    project: ProjectOption = None,
    medium: MediumOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    zip_output: Annotated[bool, typer.Option(
        "--zip", help="Write one reproducible zip (and its .sha256) instead of files.")
    ] = False,
    case: CaseOption = None,
    workers: WorkersOption = 8,
) -> None:
    """Export matching stored messages for eDiscovery, each verified first.

    Selects with the filters of `sm find` (local index), reads and verifies every object
    as `sm fetch` does, and writes the messages, loadfile.csv, exceptions.csv and
    SHA256SUMS (check with `sha256sum -c SHA256SUMS`). The same inputs give the same
    bytes. Exit 1 when a message failed verification (it is listed, not exported). With
    --case the zip is named after the case, and the access record and SHA256SUMS also go
    create-only to the bucket under _sm/access/ID/.
    Example: sm export --recipient ann.lee@example.com --format eml --output case-42/
    """
    state = state_of(ctx)
    out = state.output
    to_stdout = str(output) == "-"
    if to_stdout:
        _check_stdout_use(format, zip_output=zip_output, json_mode=out.json_mode)
    query = build_query(recipient, message_id=message_id, campaign=campaign,
                        project=project, medium=medium, since=since, until=until,
                        limit=None, command="export", region=phone_region(state, recipient),
                        digests=keyed_digests(state.paths.config_file) if recipient else ())
    filters = filters_of(recipient=recipient, message_id=message_id, campaign=campaign,
                         project=project, medium=medium, since=since, until=until)
    details = {"format": format, "zip": zip_output,
               "output": "-" if to_stdout else os.path.abspath(output)}
    with recorded(state, "export", case_id=case, filters=filters, details=details,
                  recipient=recipient) as access:
        access.concern([project])
        with state.open_spool() as spool:
            index = ArchiveIndex.of(spool)
            entries = index.find(query).entries
            coverage_warnings(out, index, project)
            holds = holding_cases_of(spool, entries)
            evidence = evidence_keys(spool, entries)  # delivery evidence (SPEC 9.3)
        access.touch(refs_of(entries))
        if entries:
            access.projects = touched_projects(access.messages)
        report = _export(state, entries, output, format, zip_output=zip_output,
                         name=case or "export", workers=workers, holds=holds,
                         evidence=evidence)
        access.details.update(exported=report.exported, failed=len(report.failures))
        if report.failures:
            access.result = FAILED
            access.details["failures"] = [
                {"project_id": e.project_id, "message_id": e.message_id, "reason": r}
                for e, r in report.failures]
        if to_stdout:
            listing = "SHA256SUMS"
            sums = "".join(f"{digest}  {path}\n" for path, digest in report.files.items()
                           ).encode()
        else:
            listing = f"{case or 'export'}.zip.sha256" if zip_output else "SHA256SUMS"
            sums = (output / listing).read_bytes()
        access.details["checksums"] = {"file": listing, "sha256": sha256_hex(sums)}
        access.attachments["SHA256SUMS"] = sums
        _summarise(state.output, report)


def register(app: typer.Typer) -> None:
    """Add `sm export`."""
    command(app, "export")(export_command)


def _check_stdout_use(fmt: str, *, zip_output: bool, json_mode: bool) -> None:
    """`--output -` is standard output where one stream makes sense: else a usage error."""
    if fmt not in STREAM_FILES:
        raise typer.BadParameter(f"- (standard output) takes --format jsonl or mbox; {fmt}"
                                 " writes a file per message: name a folder",
                                 param_hint="'--output'")
    if zip_output:
        raise typer.BadParameter("- (standard output) cannot take --zip: name a folder",
                                 param_hint="'--output'")
    if json_mode:
        raise typer.BadParameter("- (standard output) carries the export; drop --json",
                                 param_hint="'--output'")


def _export(state: AppState, entries: list[IndexEntry], output: Path, fmt: str, *,
            zip_output: bool, name: str, workers: int,
            holds: dict[tuple[str, str], list[str]] | None = None,
            evidence: EvidenceKeys | None = None) -> ExportReport:
    """Verify and write (a folder, or standard output for `-`), with a progress bar on a
    terminal."""
    out = state.output
    out.info(f"Verifying {len(entries)} message(s)…")
    if not out.interactive:
        return _verify_and_write(state, entries, output, fmt, zip_output=zip_output,
                                 name=name, workers=workers, holds=holds,
                                 evidence=evidence)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress  # only on a terminal

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), console=out.stderr, transient=True) as bar:
        task = bar.add_task("verify", total=len(entries))
        return _verify_and_write(state, entries, output, fmt, zip_output=zip_output,
                                 name=name, workers=workers,
                                 on_read=lambda n: bar.advance(task, n), holds=holds,
                                 evidence=evidence)


def _verify_and_write(state: AppState, entries: list[IndexEntry], output: Path, fmt: str, *,
                      zip_output: bool, name: str, workers: int,
                      on_read: Callable[[int], None] | None = None,
                      holds: dict[tuple[str, str], list[str]] | None = None,
                      evidence: EvidenceKeys | None = None) -> ExportReport:
    limit = state.settings().max_payload_bytes
    if str(output) != "-":
        return export(entries, opener(state), output, fmt, as_zip=zip_output, name=name,
                      workers=workers, on_read=on_read, max_payload_bytes=limit,
                      holds=holds, evidence=evidence)
    stream, report = export_stream(entries, opener(state), fmt, workers=workers,
                                   on_read=on_read, max_payload_bytes=limit)
    sys.stdout.flush()
    sys.stdout.buffer.write(stream)
    sys.stdout.buffer.flush()
    return report


def _summarise(out: Output, report: ExportReport) -> None:
    if out.json_mode:
        out.emit_json(report.as_dict())
    else:
        where = "standard output" if str(report.output) == "-" else report.output
        out.info(f"Exported {report.exported} message(s) to {where}"
                 f" ({report.format}); {len(report.failures)} failed verification")
    for _, reason in report.failures:
        out.stderr.print(f"[bold red]Error:[/bold red] {escape(reason)}", highlight=False)
    if report.failures:
        fail(f"{len(report.failures)} message(s) failed verification and were not exported"
             " (listed in exceptions.csv)",
             hint="sm fetch MESSAGE_ID --project ID for the details of one")
