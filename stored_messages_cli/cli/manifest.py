"""`sm manifest backfill`: manifests for messages archived before manifests existed."""

from __future__ import annotations

import typer

from ..evidence.backfill import backfill as run_backfill
from ..evidence.log import LogOptions
from ..evidence.manifest import limits_from
from .command_classes import group
from .common import command, open_project_destination, state_of
from .options import ProjectOption


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
                reports.append(run_backfill(spool, project_id, destination, max_entries,
                                            LogOptions.from_settings(settings, state.home)))
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
    """Add the manifest group (backfill)."""
    manifest_app = group("manifest", "Manifests of the archive (docs/manifests.md).")
    command(manifest_app, "backfill")(backfill)
    app.add_typer(manifest_app, name="manifest")
