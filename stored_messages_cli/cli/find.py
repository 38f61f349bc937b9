"""`sm find`, `sm fetch`, `sm index rebuild`: answering "what did we send this customer?"."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..destinations import Destination, DestinationOptions, open_destination
from ..evidence.access_log import AMBIGUOUS, FAILED, filters_of, message_ref, refs_of
from ..investigate.fetch import fetch_message
from ..investigate.find import MANIFESTS, find_remote
from ..investigate.index import (
    DEFAULT_FIND_LIMIT,
    AmbiguousMessage,
    ArchiveIndex,
    FindQuery,
    IndexEntry,
    sort_newest_first,
)
from ..investigate.rebuild import RebuildReport, rebuild_index
from ..investigate.sealed import find_results, keyed_digests
from ..investigate.verified import PARTS, VerifiedMessage
from ..message import (
    recipient_hash_candidates,
    sha256_hex,
)
from ..message.recipients import Digest
from .access_log import recorded, touched_projects
from .command_classes import group
from .common import AppState, Output, command, fail, open_project_destination, options_for, state_of
from .options import (
    CampaignOption,
    CaseOption,
    MediumOption,
    MessageIdArgument,
    MessageIdOption,
    MessageProjectOption,
    ProjectOption,
    RecipientOption,
    SinceOption,
    UntilOption,
    WorkersOption,
    time_range,
)

FIND_COLUMNS = ["sent_at", "project", "medium", "type", "campaign", "message_id"]
FIND_WHOLE_COLUMNS = frozenset({"sent_at", "project", "campaign", "message_id"})


def _part_option(value: str) -> str:
    if value not in PARTS:
        raise typer.BadParameter(f"{value!r}: use json, html, text or body")
    return value


def build_query(recipient: str | None, *, message_id: str | None, campaign: str | None,
                project: str | None, medium: str | None, since: str | None,
                until: str | None, limit: int | None, command: str = "find",
                region: str | None = None, digests: Sequence[Digest] = ()) -> FindQuery:
    """The FindQuery of the shared filters (find, export); bad values are usage errors.
    `region` reads a national phone number (setting `default_phone_region`); `digests` are
    the keyed recipient hashes of projects that use one (SPEC 9.5: `keyed_digests`)."""
    if recipient is not None and not recipient.strip():
        raise typer.BadParameter("must not be empty", param_hint="--recipient")
    since_at, until_at = time_range(since, until, command=command)
    return FindQuery(
        recipient_hashes=tuple(hash_ for digest in (sha256_hex, *digests)
                               for hash_ in recipient_hash_candidates(recipient, region, digest)
                               ) if recipient else (),
        message_id=message_id, campaign_id=campaign, project_id=project, medium=medium,
        since=since_at, until=until_at, limit=limit)


def phone_region(state: AppState, recipient: str | None) -> str | None:
    """The setting `default_phone_region` when a recipient is searched for (else no settings
    are read)."""
    return state.settings().default_phone_region if recipient else None


def coverage_warnings(out: Output, index: ArchiveIndex, project: str | None) -> None:
    """Warn (stderr) about each project in scope whose local index is only partial."""
    for coverage in index.coverage().values():
        if coverage.complete or project not in (None, coverage.project_id):
            continue
        pid = coverage.project_id
        how = ("filled by remote finds and fetches" if coverage.source == "remote"
               else "not known to be complete")
        out.warn(f"the local index of project {pid} is partial ({how}): messages it never"
                 f" saw are not listed. Try: sm index rebuild --project {pid}, or sm find"
                 f" --remote --project {pid} --recipient R")


def say_remote_source(out: Output, project_id: str, report: Any) -> None:
    """Say (stderr) how a remote find found its candidates in one project's bucket."""
    if report.source == MANIFESTS:
        out.info(f"Project {project_id}: searched {report.segments} manifest segment(s)"
                 f" (every identifier; sealed through {report.sealed_through or '-'}) and"
                 " the key prefix (messages stored since)")
        for key, reason in report.manifest_failures:
            out.warn(f"manifest {key} was not read: {reason}")
    else:
        out.info(f"Project {project_id}: no manifests in the bucket; searched by key prefix,"
                 " which finds a message only by the identifier its key was made from (email,"
                 " else user id, phone number, device token)")


def _search_projects(state: AppState, project: str | None) -> list[str]:
    """The projects a remote search covers: the one named, else every connected one."""
    return state.connected_projects(
        project, none_yet="no project has a destination to search", code=2,
        hint="sm connect URL --project ID, then sm find --remote --recipient R")


def opener(state: AppState) -> Any:
    """Opens the destination a message lives in, with its project's saved options."""

    def open_for(project_id: str, url: str | None) -> Destination:
        if url is None:
            return open_project_destination(state, project_id)
        saved = state.settings().projects.get(project_id)
        return open_destination(url, options_for(saved) if saved else DestinationOptions())

    return open_for


def _print_entries(out: Output, entries: list[IndexEntry], truncated: bool,
                   limit: int | None) -> None:
    if out.json_mode:
        out.emit_json(find_results(entries))  # an erased message's row says when (SPEC 9.6)
    elif entries:
        # The time, project, campaign and id are never cut, on an 80-column terminal too:
        # medium and type wrap instead (`Output.table`); in a pipe each row is one line.
        out.table(None, FIND_COLUMNS,
                  [[e.sent_at, e.project_id, e.medium, e.message_type, e.campaign_id or "-",
                    e.message_id] for e in entries], whole=FIND_WHOLE_COLUMNS)
    noun = "message" if len(entries) == 1 else "messages"
    out.info(f"{len(entries)} {noun}" if entries else "No stored message matches.")
    if truncated:
        out.warn(f"more messages match; showing the newest {limit}. Narrow the search or pass"
                 " --limit N (0 for all)")


def _find_local(state: AppState, query: FindQuery, project: str | None) -> list[IndexEntry]:
    """`sm find` on the local index: print, warn about coverage, hint when nothing matched."""
    out = state.output
    with state.open_spool() as spool:
        index = ArchiveIndex.of(spool)
        result = index.find(query)
        empty_index = not result.entries and index.count() == 0
        _print_entries(out, result.entries, result.truncated, query.limit)
        coverage_warnings(out, index, project)
        partial = [c.project_id for c in index.coverage().values()
                   if not c.complete and project in (None, c.project_id)]
    if not out.json_mode:
        if empty_index:
            out.info("The local index is empty. Try: sm find --remote --recipient R, or"
                     " sm index rebuild")
        elif not result.entries:
            nothing_found_hints(out, query, partial=partial)
    return result.entries


def nothing_found_hints(out: Output, query: FindQuery, *, partial: list[str],
                        remote: bool = False) -> None:
    """Where to look next when nothing matched (stderr): `sm show` for a message id (the
    spool may know why it is not stored), the bucket when the local index is partial."""
    if query.message_id is not None:
        scope = f" --project {query.project_id}" if query.project_id else ""
        out.info(f"Message {query.message_id} is not stored (or not in this"
                 f" {'bucket' if remote else 'index'}); the spool may know why: discarded,"
                 f" failed or still waiting. Try: sm show {query.message_id}{scope}")
    if partial and not remote:
        pids = ", ".join(partial)
        where = (" --project " + query.project_id) if query.project_id else ""
        recipient = "" if query.recipient_hashes else " --recipient R"
        out.info(f"The local index of project(s) {pids} is partial, so the message may still"
                 f" be in the bucket. Try: sm find --remote{where}{recipient} (with the same"
                 f" filters), or sm index rebuild --project {partial[0]}")


def _find_remote(state: AppState, query: FindQuery, project: str | None, access: Any) -> None:
    """`sm find --remote`: read and verify the candidates in each project's bucket."""
    out = state.output
    entries: list[IndexEntry] = []
    failures: list[tuple[str, str]] = []
    projects = _search_projects(state, project)
    access.concern(projects)
    for project_id in projects:
        destination = open_project_destination(state, project_id)
        try:
            report = find_remote(destination, project_id, query,
                                 max_payload_bytes=state.settings().max_payload_bytes,
                                 phone_region=state.settings().default_phone_region)
        finally:
            destination.close()
        say_remote_source(out, project_id, report)
        entries.extend(report.entries)
        failures.extend(report.failures)
    entries = sort_newest_first(entries)
    access.touch(refs_of(entries))
    truncated = query.limit is not None and len(entries) > query.limit
    with state.open_spool() as spool:
        ArchiveIndex.of(spool).add(entries)  # verified reads: the next fetch is direct
    _print_entries(out, entries[: query.limit], truncated, query.limit)
    if not entries and not failures and not out.json_mode:
        nothing_found_hints(out, query, partial=[], remote=True)
    if failures:
        access.result = FAILED
        access.details["failures"] = [{"key": key, "reason": reason}
                                      for key, reason in failures]
        for _, reason in failures:
            out.stderr.print(f"[bold red]Error:[/bold red] {escape(reason)}",
                             highlight=False)
        fail(f"{len(failures)} object(s) under this recipient failed verification and are"
             " not listed", hint="sm fetch MESSAGE_ID --project ID for the details of one")


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _write_private(path: Path, data: bytes, *, force: bool = False) -> None:
    """Write `data` to `path`, owner-only (0600): a message is personal data.

    Never follows a symlink and never writes into an existing file: without `force` an
    existing name (a symlink included) raises FileExistsError; with `force` the bytes go to a
    new temp file beside it that then replaces the name itself (a symlink there is replaced,
    never followed).
    """
    target = path if not force else path.with_name(f".{path.name}.{os.getpid()}.sm-tmp")
    fd = os.open(target, _NEW_FILE, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(target, path)
    except BaseException:
        if force:
            target.unlink(missing_ok=True)
        raise


def find(
    ctx: typer.Context,
    recipient: RecipientOption = None,
    message_id: MessageIdOption = None,
    campaign: CampaignOption = None,
    project: ProjectOption = None,
    medium: MediumOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[int, typer.Option(
        min=0, help="At most this many, newest first (0: no limit).")] = DEFAULT_FIND_LIMIT,
    remote: Annotated[bool, typer.Option(
        "--remote", help="Search the bucket by recipient key prefix, not the local index.")
    ] = False,
    case: CaseOption = None,
) -> None:
    """Find stored messages by recipient, id, campaign, project, medium and time.

    Searches the local index; --remote reads the bucket instead (needs --recipient), so a
    new machine can answer after `sm connect`. Newest first.
    Example: sm find --recipient ann.lee@example.com --since 2026-11-01
    """
    state = state_of(ctx)
    query = build_query(recipient, message_id=message_id, campaign=campaign,
                        project=project, medium=medium, since=since, until=until,
                        limit=limit or None, region=phone_region(state, recipient),
                        digests=keyed_digests(state.paths.config_file) if recipient else ())
    if remote and recipient is None:
        fail("--remote needs --recipient: the bucket is laid out by recipient", code=2,
             hint="sm find --remote --recipient someone@example.com (or sm index rebuild"
                  " to search by other fields)")
    if not remote and case is None:  # a local find reads no bucket: not an access
        _find_local(state, query, project)
        return
    filters = filters_of(recipient=recipient, message_id=message_id, campaign=campaign,
                         project=project, medium=medium, since=since, until=until,
                         remote=remote)
    with recorded(state, "find", case_id=case, filters=filters,
                  recipient=recipient) as access:
        if not remote:
            entries = _find_local(state, query, project)
            access.touch(refs_of(entries))
            access.concern(touched_projects(access.messages) or [project])
            return
        _find_remote(state, query, project, access)

def fetch(
    ctx: typer.Context,
    message_id: MessageIdArgument,
    project: MessageProjectOption = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", dir_okay=False,
        help="Save the part to this new file (owner-only, 0600); '-' is stdout.")
    ] = None,
    part: Annotated[str, typer.Option(
        callback=_part_option, metavar="|".join(PARTS),
        autocompletion=lambda: list(PARTS),
        help="json (the whole payload), html, text (email) or body (sms, push).")] = "json",
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the --output file if it exists.")] = False,
    case: CaseOption = None,
) -> None:
    """Download a stored message, verify it, and print or save one part byte for byte.

    Verifies gzip, sm-payload-sha256 (against the object and the local index) and the
    store's checksum; exits 1 with "checksum mismatch" if the object was altered.
    Example: sm fetch 9c438a20d26e4e9f8ad4edea23f811cd --part html --output msg.html
    """
    state = state_of(ctx)
    out = state.output
    if output is not None and str(output) == "-":
        output = None  # `-o -`: standard output
    if output is not None and not force and os.path.lexists(output):
        fail(f"{output} already exists; it was not overwritten",
             hint=f"sm fetch {message_id} --output {output} --force, or choose another"
             " file")
    details = {"part": part, "output": os.path.abspath(output) if output else None}
    with recorded(state, "fetch", case_id=case,
                  filters=filters_of(message_id=message_id, project=project),
                  details=details) as access:
        with state.open_spool() as spool:
            index = ArchiveIndex.of(spool)
            known = index.entries_for(message_id, project)
            access.touch(refs_of(known) if len(known) == 1
                         else [message_ref(project, message_id, None)])
            projects = [] if known else _search_projects(state, project)
            access.concern([e.project_id for e in known] or projects)
            if not known:
                out.info(f"{message_id} is not in the local index; listing the bucket of"
                         f" project(s) {', '.join(projects)} (slow for large archives)")
            try:
                verified = fetch_message(
                    index, message_id, projects=projects, open_for=opener(state),
                    project_id=project, max_payload_bytes=state.settings().max_payload_bytes,
                    phone_region=state.settings().default_phone_region)
            except AmbiguousMessage as exc:
                access.result, access.error = AMBIGUOUS, str(exc)
                fail(str(exc), hint=exc.hint, code=2)
        access.messages = refs_of([verified.entry])
        access.projects = [verified.entry.project_id]
        data = verified.part(part)
        access.details["bytes"] = len(data)
        _emit_part(out, verified, part, data, output, force=force)

def rebuild(
    ctx: typer.Context,
    project: ProjectOption = None,
    workers: WorkersOption = 8,
) -> None:
    """Rebuild the local index of stored messages from the bucket.

    Lists every message key of the project(s), reads and verifies each object not yet
    indexed under the same key, and indexes it. Resumable, and safe while `sm run` works.
    Example: sm index rebuild --project 12345
    """
    state = state_of(ctx)
    out = state.output
    project_ids = state.connected_projects(
        project, none_yet="no project has a destination to rebuild from", code=2)
    reports: list[RebuildReport] = []
    with state.open_spool() as spool:
        index = ArchiveIndex.of(spool)
        for project_id in project_ids:
            destination = open_project_destination(state, project_id,
                                                   max_connections=workers)
            try:
                reports.append(_rebuild_one(out, index, destination, project_id, workers,
                                            state.settings().max_payload_bytes,
                                            state.settings().default_phone_region))
            finally:
                destination.close()
    failed = sum(len(r.failures) for r in reports)
    if out.json_mode:
        out.emit_json({"projects": [r.as_dict() for r in reports],
                       "indexed": sum(r.indexed for r in reports), "failed": failed})
    else:
        out.table("Index rebuild", ["project", "listed", "already indexed", "indexed",
                                    "failed"],
                  [[r.project_id, r.listed, r.already_indexed, r.indexed, len(r.failures)]
                   for r in reports])
        for report in reports:
            for _, reason in report.failures:
                out.stderr.print(f"[bold red]Error:[/bold red] {escape(reason)}",
                             highlight=False)
    if failed:
        fail(f"{failed} object(s) failed verification and were not indexed",
             hint="sm fetch MESSAGE_ID --project ID for the details of one")


def register(app: typer.Typer) -> None:
    """Add find, fetch and the `index` group (rebuild)."""
    command(app, "find")(find)
    command(app, "fetch")(fetch)
    index_app = group("index", "The local index of stored messages.")
    command(index_app, "rebuild")(rebuild)
    app.add_typer(index_app, name="index")


def _rebuild_one(out: Output, index: ArchiveIndex, destination: Destination, project_id: str,
                 workers: int, max_payload_bytes: int, phone_region: str | None
                 ) -> RebuildReport:
    """Rebuild one project, with a progress bar on an interactive terminal."""
    out.info(f"Listing {destination.url} for project {project_id}…")
    if not out.interactive:
        return rebuild_index(index, destination, project_id, workers=workers,
                             max_payload_bytes=max_payload_bytes, phone_region=phone_region)
    from rich.progress import (  # only on a terminal
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeRemainingColumn,
    )

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(), console=out.stderr,
                  transient=True) as progress:
        task = progress.add_task(f"project {project_id}", total=None)
        return rebuild_index(
            index, destination, project_id, workers=workers, max_payload_bytes=max_payload_bytes,
            phone_region=phone_region, on_total=lambda total: progress.update(task, total=total),
            on_read=lambda count: progress.advance(task, count))


def _emit_part(out: Output, verified: VerifiedMessage, part: str, data: bytes,
               output: Path | None, *, force: bool = False) -> None:
    """Save or print the part's exact bytes, and say what was verified."""
    entry = verified.entry
    record: dict[str, Any] = {**entry.find_result(), "version_id": entry.version_id,
                              "verified": True, "part": part, "bytes": len(data),
                              "output": str(output) if output else None}
    if output is not None:
        try:
            _write_private(output, data, force=force)
        except FileExistsError:
            fail(f"{output} already exists; it was not overwritten",
                 hint=f"sm fetch {entry.message_id} --output {output} --force, or choose"
                 " another file")
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
    if out.json_mode:
        if output is None:
            record["content"] = (verified.document if part == "json"
                                 else data.decode("utf-8"))
        out.emit_json(record)
        return
    out.info(f"Verified {entry.key}: payload SHA-256 {entry.payload_sha256}")
    if output is not None:
        out.info(f"Saved the {part} part ({len(data)} bytes) to {output}")
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
