"""`sm retention extend`: a later retain-until date for stored objects (SPEC 9.4)."""

# No `from __future__ import annotations`: typer would have to eval every annotation.

from typing import Annotated

import typer

from ..clock import to_rfc3339
from ..evidence.retention import RetentionShorter, extend_retention
from ..investigate.sealed import keyed_digests
from .command_classes import group
from .common import command, fail, open_project_destination, state_of
from .find import build_query, phone_region
from .options import (
    CampaignOption,
    MediumOption,
    MessageIdOption,
    ProjectIdOption,
    RecipientOption,
    SinceOption,
    time_bound,
)


def extend(
    ctx: typer.Context,
    project: ProjectIdOption,
    retain_until: Annotated[str, typer.Option(
        "--until", metavar="DATE",
        help="The new retain-until date: an RFC 3339 time or a date (its end, UTC).")],
    recipient: RecipientOption = None,
    campaign: CampaignOption = None,
    message_id: MessageIdOption = None,
    medium: MediumOption = None,
    since: SinceOption = None,
    sent_until: Annotated[str | None, typer.Option(
        "--sent-until", help="Only messages sent at or before (as sm find's --until).")
    ] = None,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, max=64, help="Objects changed in parallel.")] = 8,
) -> None:
    """Retain the matching stored objects until a later date; never an earlier one.

    A date earlier than any matching object's is a usage error and changes nothing.
    Example: sm retention extend --project 12345 --campaign spring --until 2033-12-31
    """
    state = state_of(ctx)
    out = state.output
    until_at = time_bound(retain_until, end_of_day=True, name="--until",
                          command="retention extend")
    assert until_at is not None
    # find's filters, spelled as find spells them (`--sent-until` is find's `--until`)
    wanted = build_query(recipient, message_id=message_id, campaign=campaign, project=project,
                         medium=medium, since=since, until=sent_until, limit=None,
                         command="retention extend", region=phone_region(state, recipient),
                         digests=keyed_digests(state.paths.config_file) if recipient else ())
    state.require_spool()
    state.connected_projects(project, none_yet="no project has a destination yet")
    destination = open_project_destination(state, project, for_writing=True,
                                           max_connections=workers)
    try:
        with state.open_spool() as spool:
            try:
                report = extend_retention(spool, destination, wanted, until_at.timestamp(),
                                          workers=workers)
            except RetentionShorter as exc:
                fail(str(exc), hint=exc.hint, code=2)
    finally:
        destination.close()
    until_text = to_rfc3339(until_at.timestamp())
    if out.json_mode:
        out.emit_json({"project_id": project, "until": until_text,
                       "extended": report.extended, "unchanged": report.unchanged,
                       "failed": len(report.failed)})
    else:
        out.print(f"project {project}: {report.extended} object(s) retained until"
                  f" {until_text}, {report.unchanged} already were", highlight=False)
    if report.failed:
        key, error = report.failed[0]
        fail(f"{len(report.failed)} object(s) not extended (first: {key}: {error})",
             hint="run the same command again")


def register(app: typer.Typer) -> None:
    """Add the retention group (extend)."""
    retention_app = group("retention", "Object retention (docs/holds.md).")
    command(retention_app, "extend")(extend)
    app.add_typer(retention_app, name="retention")
