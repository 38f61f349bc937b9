"""`sm run`: the archiving daemon."""

from __future__ import annotations

import os
import signal
import threading
from typing import Annotated, Any

import typer

from ..archiver import Archiver, ProjectTarget, RunReport
from ..retry import RetryPolicy
from .common import command, fail, open_project_destination, state_of
from .connect import project_option


def register(app: typer.Typer) -> None:
    """Add run."""

    @command(app, "run")
    def run(
        ctx: typer.Context,
        once: Annotated[bool, typer.Option(
            "--once", help="One pass over what is due now, then exit.")] = False,
        concurrency: Annotated[int | None, typer.Option(
            min=1, max=256, help="Parallel uploads (default 8, setting `concurrency`).")] = None,
        project: Annotated[str | None, typer.Option(
            "--project", callback=lambda v: project_option(v) if v is not None else None,
            help="Archive only this project.")] = None,
    ) -> None:
        """Upload confirmed messages to their project's destination, under the retry policy.

        Runs until SIGTERM/SIGINT (in-flight uploads finish, then exit 0; a second signal
        exits at once). Example: sm run --once --concurrency 16
        """
        state = state_of(ctx)
        out = state.output
        settings = state.settings()
        workers = concurrency or settings.concurrency
        project_ids = [project] if project else sorted(settings.projects)
        if project and project not in settings.projects:
            fail(f"project {project} has no destination", hint=f"sm connect URL --project {project}")
        if not project_ids:
            fail("no project has a destination yet; messages wait in the spool",
                 hint="sm connect URL --project ID")
        targets = [ProjectTarget(pid, open_project_destination(state, pid,
                                                              max_connections=workers))
                   for pid in project_ids]
        stop = threading.Event()
        _install_signal_handlers(stop, out)
        policy = RetryPolicy(retry_interval=settings.retry_interval,
                             retry_window=settings.retry_window,
                             backoff_base=settings.rate_limit_backoff_base,
                             backoff_cap=settings.rate_limit_backoff_cap)
        with state.open_spool() as spool:
            progress, on_outcome = _progress(out, spool.status()["counts"]["queued"] if once
                                             else None)
            archiver = Archiver(spool, targets, policy=policy, concurrency=workers,
                                lease_seconds=settings.lease_seconds,
                                confirm_timeout=settings.confirm_timeout,
                                poll_interval=settings.poll_interval, stop=stop,
                                on_outcome=on_outcome)
            try:
                if progress is not None:
                    with progress:
                        report = archiver.run(once=once)
                else:
                    report = archiver.run(once=once)
            finally:
                for target in targets:
                    target.destination.close()
        _print_report(out, report)
        if once and (report.failed or report.expired):
            raise typer.Exit(1)


def _install_signal_handlers(stop: threading.Event, out: Any) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # in-process test runners: the caller owns the stop event

    def handle(signum: int, frame: object) -> None:
        if stop.is_set():
            os._exit(1)  # second signal: exit at once; leases of this process are reclaimed
        stop.set()
        out.info("Stopping: finishing in-flight uploads (signal again to exit at once)")

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _progress(out: Any, total: int | None) -> tuple[Any, Any]:
    if not out.interactive:
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(TextColumn("[bold]archiving"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[detail]}"), console=out.stderr, transient=True)
    task = progress.add_task("archive", total=total or None, detail="")
    counts: dict[str, int] = {}

    def on_outcome(kind: str) -> None:
        counts[kind] = counts.get(kind, 0) + 1
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        progress.update(task, advance=1, detail=detail)

    return progress, on_outcome


def _print_report(out: Any, report: RunReport) -> None:
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
