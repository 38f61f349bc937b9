"""`sm show MESSAGE_ID`: everything known about one message, stored or not (SPEC 8)."""

from __future__ import annotations

from typing import Any

import typer
from rich.text import Text

from ..evidence.access_log import AMBIGUOUS, filters_of, message_ref
from ..investigate.index import AmbiguousMessage, ArchiveIndex
from ..investigate.show import REASON_WORDS, SHOW_FIELDS, show_message
from .access_log import recorded
from .common import command, fail, state_of
from .options import CaseOption, MessageIdArgument, MessageProjectOption

STATE_WORDS: dict[str, str] = {
    "awaiting_confirmation": "recorded; its send is not confirmed yet",
    "queued": "confirmed; waiting for upload",
    "in_flight": "being uploaded now",
    "retry_wait": "an upload attempt failed; it will be retried",
    "stored": "archived: the object is in the bucket and was verified",
    "expired": "cannot be archived: its destination stayed unreachable",
    "failed": "cannot be archived until an operator acts",
    "discarded": "never archived",
}


def show(
    ctx: typer.Context,
    message_id: MessageIdArgument,
    project: MessageProjectOption = None,
    case: CaseOption = None,
) -> None:
    """Show everything known about one message: state, reason, times, key and hash.

    Reads the spool and the local index (no bucket access); a discarded, expired or
    failed message says why. Exit 1 when neither knows the id.
    Example: sm show 9c438a20d26e4e9f8ad4edea23f811cd --project 12345
    """
    state = state_of(ctx)
    out = state.output

    def destination_of(project_id: str) -> str | None:
        saved = state.settings().projects.get(project_id)
        return saved.url if saved else None

    with recorded(state, "show", case_id=case,
                  filters=filters_of(message_id=message_id, project=project)) as access:
        access.touch([message_ref(project, message_id, None)])
        access.concern([project])
        with state.open_spool() as spool:
            try:
                record = show_message(ArchiveIndex.of(spool), message_id,
                                      project_id=project, destination_of=destination_of)
            except AmbiguousMessage as exc:
                access.result, access.error = AMBIGUOUS, str(exc)
                fail(str(exc), hint=exc.hint, code=2)
        access.messages = [message_ref(record["project_id"], message_id, record["key"])]
        access.projects = [record["project_id"]]
        access.details["state"] = record["state"]
    if out.json_mode:
        out.emit_json({name: record[name] for name in SHOW_FIELDS})
        return
    out.table(None, ["field", "value"], [[name, _cell(record[name])]
                                        for name in SHOW_FIELDS])
    words = STATE_WORDS.get(str(record["state"]), "")
    reason = record["final_reason"]
    why = REASON_WORDS.get(str(reason), "") if reason else ""
    line = Text.assemble((str(record["state"]), "bold"), f": {words}")
    if why:
        line.append(f" ({reason}: {why})")
    out.stderr.print(line, highlight=False)


def register(app: typer.Typer) -> None:
    """Add `sm show`."""
    command(app, "show")(show)


def _cell(value: Any) -> str:
    if value is None or value == []:
        return "-"
    if isinstance(value, list):  # the delivery timeline
        return "; ".join(f"{d['event']} {d['at']} ({d['provider']})" for d in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
