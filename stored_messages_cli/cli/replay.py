"""`sm replay`: attempt waiting retries now instead of waiting for their slot."""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from typing import Annotated, Any

import typer

from ..archiver import Archiver
from ..clock import to_rfc3339
from ..states import State
from .archiving import (
    archiver_for,
    keep_holds,
    progress_for,
    stop_on_signals,
    writing_targets,
)
from .common import command, state_of
from .options import ConcurrencyOption, MessageIdOption, ProjectOption

FAILURES_SHOWN = 20
IN_PROGRESS_ELSEWHERE = "in_progress_elsewhere"  # another process (sm run) is uploading it
FOLLOW_POLL = 0.2  # seconds between looks at messages another process is uploading


def failure_reason(row: dict[str, Any]) -> str:
    """Why a replayed message is not stored: its retry reason or the kind of final state."""
    state = row["state"]
    if state == State.RETRY_WAIT:
        return row["retry_reason"] or "unreachable"
    if state == State.FAILED:
        return row["final_reason"] or "failed"
    if state == State.QUEUED:
        return "not_attempted"  # stopped by a signal before its turn
    if state == State.IN_FLIGHT:
        return IN_PROGRESS_ELSEWHERE
    return state


def replay_document(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """The `sm replay --json` document (see docs/retry.md)."""
    elsewhere = [row for row in outcomes if row["state"] == State.IN_FLIGHT]
    failures = [row for row in outcomes if row["state"] not in (State.STORED, State.IN_FLIGHT)]
    by_reason: dict[str, int] = {}
    for row in failures:
        reason = failure_reason(row)
        by_reason[reason] = by_reason.get(reason, 0) + 1
    return {
        "replayed": len(outcomes),
        "stored": len(outcomes) - len(failures) - len(elsewhere),
        "still_failing": len(failures),
        IN_PROGRESS_ELSEWHERE: len(elsewhere),
        "by_reason": dict(sorted(by_reason.items())),
        "failures": [
            {"project_id": row["project_id"], "message_id": row["message_id"],
             "state": row["state"], "reason": failure_reason(row),
             "error": row["last_error"],
             "next_attempt_at": to_rfc3339(row["next_attempt_at"])}
            for row in failures],
    }


def replay(
    ctx: typer.Context,
    project: ProjectOption = None,
    message_id: MessageIdOption = None,
    expired: Annotated[bool, typer.Option(
        "--expired", help="Also replay expired messages (a fresh retry window).")] = False,
    failed: Annotated[bool, typer.Option(
        "--failed", help="Also replay failed messages (e.g. a conflict you resolved).")
    ] = False,
    concurrency: ConcurrencyOption = None,
    wait: Annotated[float, typer.Option(
        "--wait", min=0, metavar="SECONDS",
        help="How long to follow messages a running `sm run` is uploading.")] = 60.0,
) -> None:
    """Attempt waiting retries now (with --expired/--failed those too), report the outcome.

    A destination still marked unreachable gets one probe first (one across every process);
    when it fails, the rest keep waiting. Messages a running `sm run` is uploading are
    followed to their outcome for up to --wait seconds, then reported as in progress
    elsewhere. Exit 1 only if something still fails.
    Example: sm replay --expired --project 12345
    """
    state = state_of(ctx)
    out = state.output
    settings = state.settings()
    project_ids = state.connected_projects(
        project, none_yet="no project has a destination yet; there is nothing to replay to")
    workers = concurrency or settings.concurrency
    targets = writing_targets(state, project_ids, workers)
    stop = threading.Event()
    try:
        with stop_on_signals(stop), state.open_spool(create=True) as spool:
            row_ids: list[int] = []
            for pid in project_ids:
                # What another process is uploading right now is followed, not retried.
                row_ids += spool.queue.in_flight(project_id=pid, message_id=message_id)
                row_ids += spool.queue.make_due(project_id=pid, message_id=message_id,
                                                include_expired=expired,
                                                include_failed=failed)
            if row_ids:
                progress, on_outcome = progress_for(out, "replaying", len(row_ids))
                archiver, manifests = archiver_for(spool, targets, settings,
                                                   workers=workers, stop=stop,
                                                   on_outcome=on_outcome, home=state.home)
                keeper = keep_holds(spool, archiver, manifests)
                try:
                    with progress or nullcontext():
                        archiver.run(once=True, row_ids=row_ids)
                        outcomes = _follow(spool, archiver, row_ids, wait, stop)
                finally:
                    keeper.close()
                    manifests.close()  # seal and write what this replay settled
            else:
                outcomes = []
    finally:
        for target in targets:
            target.destination.close()
    document = replay_document(outcomes)
    _print(out, document)
    if document["still_failing"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add replay."""
    command(app, "replay")(replay)


def _follow(spool: Any, archiver: Archiver, row_ids: list[int], wait: float,
            stop: threading.Event) -> list[dict[str, Any]]:
    """Where the replayed messages stand, after up to `wait` seconds of following the ones
    another process (a running `sm run`, another replay) is busy with.

    Messages another process holds in flight are waited for. Messages still due are attempted
    again: another process held the destination's probe when this one tried, and the probe's
    answer decides whether they may go now.
    """
    deadline = time.monotonic() + wait
    while True:
        outcomes: list[dict[str, Any]] = spool.report.outcomes_of(row_ids)
        now = spool.clock.now()
        due = [row["id"] for row in outcomes if row["state"] == State.QUEUED or (
            row["state"] == State.RETRY_WAIT and row["next_attempt_at"] is not None
            and row["next_attempt_at"] <= now)]
        busy = any(row["state"] == State.IN_FLIGHT for row in outcomes)
        if (not due and not busy) or time.monotonic() >= deadline or stop.is_set():
            return outcomes
        stop.wait(FOLLOW_POLL)
        if due and not stop.is_set():
            archiver.run(once=True, row_ids=due)


def _print(out: Any, document: dict[str, Any]) -> None:
    if out.json_mode:
        out.emit_json(document)
        return
    if not document["replayed"]:
        out.print("Nothing to replay (no waiting messages matched; add --expired or --failed"
                  " for final ones)", highlight=False)
        return
    reasons = ", ".join(f"{k} {v}" for k, v in document["by_reason"].items())
    elsewhere = document[IN_PROGRESS_ELSEWHERE]
    out.print(f"Replayed {document['replayed']}: stored {document['stored']}, still failing"
              f" {document['still_failing']}" + (f" ({reasons})" if reasons else "")
              + (f", in progress elsewhere {elsewhere} (a running sm run is uploading them)"
                 if elsewhere else ""), highlight=False)
    failures = document["failures"]
    if failures:
        out.table("Still failing", ["project", "message", "state", "reason", "next attempt",
                                    "error"],
                  [[f["project_id"], f["message_id"], f["state"], f["reason"],
                    f["next_attempt_at"] or "-", f["error"] or ""]
                   for f in failures[:FAILURES_SHOWN]])
        if len(failures) > FAILURES_SHOWN:
            out.print(f"… and {len(failures) - FAILURES_SHOWN} more (sm --json replay lists"
                      " them all)", highlight=False)
