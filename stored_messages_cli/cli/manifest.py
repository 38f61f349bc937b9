"""`sm manifest seal|adopt|backfill`: seal the open segments now, take an object the spool never
stored into the log, write manifests for messages archived before manifests existed."""

# No `from __future__ import annotations`: typer would have to eval every annotation.

from typing import Annotated

import typer

from ..evidence.adopt import adopt as run_adopt
from ..evidence.backfill import backfill as run_backfill
from ..evidence.log import LogOptions
from ..evidence.manifest import Manifests, limits_from
from .command_classes import group
from .common import AppState, command, open_project_destination, state_of
from .options import ProjectOption, project_option

AdoptProjectOption = Annotated[str | None, typer.Option(
    "--project", callback=project_option,
    help="The object's project (needed when several are connected).")]


def seal(
    ctx: typer.Context,
    project: ProjectOption = None,
) -> None:
    """Seal the open manifest segments now, sign their checkpoints and write them.

    Safe beside a running sm run (each seal is one spool transaction). Then sm prove can
    prove the messages they hold. Example: sm manifest seal --project 12345
    """
    state = state_of(ctx)
    out = state.output
    state.require_spool()
    settings = state.settings()
    chosen = state.connected_projects(project, none_yet="no project has a destination yet")
    max_entries, max_age = limits_from(settings)
    options = LogOptions.from_settings(settings, state.home)
    sealed = []
    with state.open_spool() as spool:
        for project_id in chosen:
            destination = open_project_destination(state, project_id, for_writing=True)
            try:
                before = len(spool.evidence.segments(project_id))
                manifests = Manifests(spool, {project_id: destination}, max_entries, max_age,
                                      log_options=options)
                manifests.close()
                head = spool.evidence.last_segment(project_id)
                unwritten = spool.evidence.segments(project_id, unwritten_only=True)
            finally:
                destination.close()
            sealed.append({"project_id": project_id,
                           "sealed": len(spool.evidence.segments(project_id)) - before,
                           "tree_size": head.tree_size if head else None,
                           "unwritten": len(unwritten)})
    if out.json_mode:
        out.emit_json({"projects": [{k: p[k] for k in ("project_id", "sealed", "tree_size")}
                                    for p in sealed]})
    else:
        for p in sealed:
            size = "no log yet" if p["tree_size"] is None else f"tree size {p['tree_size']}"
            out.print(f"project {p['project_id']}: sealed {p['sealed']} segment(s), {size}",
                      highlight=False)
    waiting = [str(p["project_id"]) for p in sealed if p["unwritten"]]
    if waiting:
        out.warn(f"sealed segments of project {', '.join(waiting)} are not written to the"
                 " bucket yet; sm run (or sm manifest seal again) retries them")


def adopt(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(
        metavar="KEY", help="The object's key (as sm audit reports an unexpected_object).")],
    reason: Annotated[str, typer.Option(
        "--reason", metavar="TEXT",
        help="Why the object belongs in the archive; kept in the log for ever.")],
    project: AdoptProjectOption = None,
) -> None:
    """Add an object the spool never stored to the manifest log, marked adopted.

    The object is read (bounded) and must be the message its key names; one a manifest
    already lists, or that this spool stored (see sm manifest backfill), is refused. The
    entry is sealed and written at once. Example: sm manifest adopt
    archive/email/12345/b7e0…/1234567/m-1.json.gz --reason "restored from backup, case 42"
    """
    state = state_of(ctx)
    out = state.output
    if not reason.strip():
        raise typer.BadParameter("the reason may not be empty", param_hint="--reason")
    state.require_spool()
    settings = state.settings()
    [project_id] = _one_project(state, project)
    max_entries, _age = limits_from(settings)
    destination = open_project_destination(state, project_id, for_writing=True)
    try:
        with state.open_spool() as spool:
            adopted = run_adopt(spool, project_id, destination, key, reason,
                                max_entries=max_entries,
                                log_options=LogOptions.from_settings(settings, state.home),
                                max_payload_bytes=settings.max_payload_bytes,
                                phone_region=settings.default_phone_region)
    finally:
        destination.close()
    if out.json_mode:
        out.emit_json(adopted.as_dict())
        return
    out.print(f"adopted message {adopted.message_id} of project {project_id} ({adopted.key},"
              f" sha256 {adopted.object_sha256}); the log is at tree size {adopted.tree_size}",
              highlight=False)


def _one_project(state: AppState, project: str | None) -> list[str]:
    """The project to adopt into: --project, else the only connected one."""
    chosen = state.connected_projects(project, none_yet="no project has a destination yet")
    if len(chosen) > 1:
        raise typer.BadParameter(f"several projects are connected ({', '.join(chosen)})",
                                 param_hint="--project")
    return chosen


def backfill(
    ctx: typer.Context,
    project: ProjectOption = None,
) -> None:
    """Write manifest segments for stored messages of the index that no manifest lists.

    Only messages this spool stored are backfilled (marked "backfilled" in the log); each
    object is downloaded and its payload hash checked first; one that fails is reported and
    left out, and so is an object the spool never stored (see sm manifest adopt). Safe to run
    again. Exit 1 if any object failed.

    Example: sm manifest backfill --project 12345
    """
    state = state_of(ctx)
    out = state.output
    state.require_spool()
    settings = state.settings()
    chosen = state.connected_projects(project, none_yet="no project has a destination yet")
    max_entries, _age = limits_from(settings)
    reports = []
    with state.open_spool() as spool:
        for project_id in chosen:
            destination = open_project_destination(state, project_id)
            try:
                reports.append(run_backfill(
                    spool, project_id, destination, max_entries,
                    LogOptions.from_settings(settings, state.home),
                    max_payload_bytes=settings.max_payload_bytes,
                    phone_region=settings.default_phone_region))
            finally:
                destination.close()
    failed = sum(len(r.failures) for r in reports)
    if out.json_mode:
        out.emit_json({"projects": [r.as_dict() for r in reports],
                       "backfilled": sum(r.backfilled for r in reports), "failed": failed})
    else:
        for r in reports:
            out.print(f"project {r.project_id}: backfilled {r.backfilled}, already in"
                      f" manifests {r.already_in_manifests}, failed {len(r.failures)}",
                      highlight=False)
            for failure in r.failures:
                out.print(f"  {failure['key']}: {failure['reason']}", highlight=False)
            for key in r.not_stored_here:
                out.print(f"  {key}: not stored by this spool, left out (if it belongs in the"
                          " archive: sm manifest adopt KEY --reason TEXT)", highlight=False)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the manifest group (seal, adopt, backfill)."""
    manifest_app = group("manifest", "Manifests of the archive (docs/manifests.md).")
    command(manifest_app, "seal")(seal)
    command(manifest_app, "adopt")(adopt)
    command(manifest_app, "backfill")(backfill)
    app.add_typer(manifest_app, name="manifest")
