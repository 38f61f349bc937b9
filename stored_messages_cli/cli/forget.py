"""`sm forget`: erase a recipient by destroying its data keys (SPEC 9.5, docs/privacy.md)."""

# No `from __future__ import annotations`: typer would have to eval every annotation.

from typing import Annotated

import typer

from .common import command, fail, state_of


def forget(
    ctx: typer.Context,
    project: Annotated[str, typer.Option(
        "--project", metavar="ID", help="The project whose recipient is erased.")],
    recipient: Annotated[str, typer.Option(
        "--recipient", metavar="IDENTIFIER",
        help="The recipient's email, user id, phone number or device token.")],
    reason: Annotated[str, typer.Option(
        "--reason", metavar="TEXT", help="Why (a request's reference): it goes into the log.")],
) -> None:
    """Erase a recipient: destroy the data keys its messages are encrypted with.

    The objects stay in the bucket (WORM), unreadable by any key sm holds; the log gains an
    entry with "outcome": "erased" for each, so sm audit stays clean and sm prove still
    proves they were archived. Refused while a legal hold covers the recipient. Only for a
    project with encryption = "per-recipient". Keys are gone for good: spool backups made
    before still hold them (docs/privacy.md).
    Example: sm forget --project 12345 --recipient ann.lee@example.com --reason "GDPR 2026-118"
    """
    from ..evidence.erasure import RecipientHeld
    from ..evidence.erasure import forget as forget_recipient

    state = state_of(ctx)
    out = state.output
    if not recipient.strip():
        fail("--recipient must not be empty", code=2,
             hint="sm forget --project ID --recipient ann.lee@example.com --reason TEXT")
    state.project(project)  # a project with no destination: the error says sm connect
    with state.open_spool() as spool:
        keys = spool.intake.keys
        assert keys is not None  # Spool.open always gives intake the project settings
        try:
            erasure = forget_recipient(spool, keys, project, recipient, reason,
                                       region=state.settings().default_phone_region)
        except RecipientHeld as exc:
            fail(str(exc), hint=exc.hint)
    if out.json_mode:
        out.emit_json(erasure.as_dict())
        return
    document = erasure.as_dict()
    if not erasure.keys:
        out.info(f"No key of this recipient was left in project {project}: nothing to erase"
                 " (already erased, or never archived here).")
        return
    out.print(f"Erased {len(erasure.keys)} key(s) of this recipient of project {project} at"
              f" {document['erased_at']}: {len(erasure.messages)} stored message(s) can no"
              " longer be read.", highlight=False)
    out.info("The log records each as \"outcome\": \"erased\" at the next seal"
             f" (sm manifest seal --project {project}).")


def register(app: typer.Typer) -> None:
    """Add `sm forget`."""
    command(app, "forget")(forget)
