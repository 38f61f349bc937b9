"""`sm run`: the archiving daemon."""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext
from typing import Annotated, Any

import typer

from ..archiver import RunReport
from ..clock import to_rfc3339
from ..config.last_good import remember
from ..ops.operations import operate
from ..setup.checks import prove_create_only
from ..states import DOWN_HEALTH, HealthState
from .archiving import (
    archiver_for,
    keep_holds,
    progress_for,
    stop_on_signals,
    writing_targets,
)
from .common import command, state_of
from .options import ConcurrencyOption, ProjectOption
from .reload import Reloader

log = logging.getLogger("sm.run")


def run(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option(
        "--once", help="One pass over what is due now, then exit.")] = False,
    concurrency: ConcurrencyOption = None,
    project: ProjectOption = None,
    metrics_addr: Annotated[str | None, typer.Option(
        "--metrics-addr", envvar="SM_METRICS_ADDR", callback=_metrics_addr_option,
        help="Serve /metrics, /healthz, /readyz on HOST:PORT (a bare PORT is loopback)."
    )] = None,
) -> None:
    """Upload confirmed messages to their project's destination, under the retry policy.

    Runs until SIGTERM/SIGINT (in-flight uploads finish, then exit 0; a second signal
    exits at once). Example: sm run --once --concurrency 16
    """
    state = state_of(ctx)
    out = state.output
    settings = state.settings()
    remember(state.paths.config_file)  # the last good configuration, for senders (SPEC 9.2)
    workers = concurrency or settings.concurrency
    project_ids = state.connected_projects(
        project, none_yet="no project has a destination yet; messages wait in the spool")
    targets = writing_targets(state, project_ids, workers)
    stop = threading.Event()
    reload = threading.Event()
    with stop_on_signals(stop, reload=reload), state.open_spool(create=True) as spool:
        progress, on_outcome = progress_for(out, "archiving",
                                            spool.status()["counts"]["queued"] if once
                                            else None)
        archiver, manifests = archiver_for(spool, targets, settings, workers=workers,
                                           stop=stop, on_outcome=on_outcome, home=state.home)
        keeper = keep_holds(spool, archiver, manifests)
        # Create-only is proven again at the first turn, after each reload and daily.
        proofs = archiver.prove_create_only(prove_create_only)
        reloader = Reloader(state, archiver, targets, only_project=project,
                            max_connections=workers,
                            on_targets=[manifests.destinations.update],
                            on_reload=[proofs.request], manifests=manifests)
        reloader.requested = reload
        if not once:
            archiver.on_tick(reloader.tick)
        try:
            with operate(spool, archiver, once=once, concurrency=workers,
                         projects={p: settings.projects[p].url for p in project_ids},
                         poll_interval=settings.poll_interval,
                         metrics_addr=_parsed_addr(metrics_addr),
                         config_file=state.paths.config_file) as ops, \
                    progress or nullcontext():
                report = ops.report = archiver.run(once=once)
        finally:
            keeper.close()  # the holds left to apply, before their entries are sealed
            manifests.close()  # the daemon stops: seal what is open, write what is sealed
            reloader.close()
        health = [h for h in spool.health.all().values() if h.project_id in project_ids]
    waiting = [h.next_probe_at for h in health
               if h.health in DOWN_HEALTH and h.next_probe_at is not None]
    unsafe = sorted(h.project_id for h in health if h.health == HealthState.UNSAFE)
    _print_report(out, report, min(waiting) if waiting else None)
    if unsafe:
        log.warning("the destination of project(s) %s does not honour create-only writes"
                    " (unsafe): nothing was sent to it. Try: sm status", ", ".join(unsafe))
    # For monitoring: 1 when a message of this pass ended unreachable, expired or failed, or
    # a destination is unsafe (rate limiting alone is retried on its own, not a failure).
    if once and (report.failed or report.expired or report.unreachable or unsafe):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add run."""
    command(app, "run")(run)


def _metrics_addr_option(value: str | None) -> str | None:
    """`--metrics-addr`: a usage error (exit 2) unless HOST:PORT, [V6]:PORT or PORT."""
    if value:
        try:
            _parsed_addr(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value or None


def _parsed_addr(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    from ..ops.metrics import parse_metrics_addr  # prometheus_client only when serving metrics

    return parse_metrics_addr(value)


def _print_report(out: Any, report: RunReport, next_probe_at: float | None) -> None:
    if out.json_mode:
        out.emit_json(report.as_dict())
        return
    parts = [f"stored {report.stored}"]
    if report.already_stored:
        parts.append(f"already stored {report.already_stored}")
    if report.rate_limited:
        parts.append(f"rate limited (will retry) {report.rate_limited}")
    if report.unreachable:
        parts.append(f"unreachable (will retry) {report.unreachable}")
    if report.failed:
        parts.append(f"failed {report.failed}")
    if report.expired:
        parts.append(f"expired {report.expired}")
    out.print(", ".join(parts), highlight=False)
    if report.unreachable and next_probe_at is not None:
        # A log line, not console text: with --log-format json it is JSON like the rest.
        log.warning("messages wait for an unreachable destination; next probe at %s."
                    " Try: sm replay (after fixing it)", to_rfc3339(next_probe_at))
    elif report.failed or report.expired:
        log.warning("see why with: sm status. Try: sm replay --failed --expired (after"
                    " fixing the cause)")
