"""What `sm run` and `sm replay` share: the retry policy the settings describe, the stop and
reload signals, and the progress bar on a terminal."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..archiver import Archiver, ProjectTarget
from ..evidence.delivery import DeliveryEvidence
from ..evidence.hold_keeper import HoldKeeper
from ..evidence.log import LogOptions
from ..evidence.manifest import Manifests, limits_from
from ..retry import RetryPolicy
from .common import AppState, open_project_destination

log = logging.getLogger("sm.run")


def writing_targets(state: AppState, project_ids: list[str], workers: int
                    ) -> list[ProjectTarget]:
    """Each project's destination, opened for writing with a pool for `workers` uploads."""
    return [ProjectTarget(pid, open_project_destination(state, pid, for_writing=True,
                                                       max_connections=workers))
            for pid in project_ids]


def archiver_for(spool: Any, targets: list[ProjectTarget], settings: Any, *, workers: int,
                 stop: threading.Event, on_outcome: Any, home: str | None = None
                 ) -> tuple[Archiver, Manifests]:
    """The archiver the settings describe, and the manifests it fills as it settles, signed
    with the key of `home` (the caller closes them: that seals what is open and writes what
    is sealed)."""
    archiver = Archiver(spool, targets, policy=policy_from(settings), concurrency=workers,
                        lease_seconds=settings.lease_seconds,
                        confirm_timeout=settings.confirm_timeout,
                        confirm_grace=settings.confirm_grace,
                        poll_interval=settings.poll_interval, stop=stop,
                        on_outcome=on_outcome)
    manifests = Manifests(spool, {t.project_id: t.destination for t in targets},
                          *limits_from(settings),
                          log_options=LogOptions.from_settings(settings, home),
                          background_anchors=True)
    # Delivery evidence on a thread of its own; its last pass comes before the last seal.
    delivery = DeliveryEvidence(spool, manifests.destinations, background=True,
                                orphan_event_ttl=settings.orphan_event_ttl)
    archiver.on_tick(delivery.tick)
    manifests.before_close.append(delivery.close)
    archiver.on_tick(manifests.tick)
    return archiver, manifests


def keep_holds(spool: Any, archiver: Archiver, manifests: Manifests) -> HoldKeeper:
    """Legal holds beside the loop: each message settled as stored gets the holds of the open
    cases it matches, applied on a thread of their own (`HoldKeeper`); the caller closes it
    before the manifests, so the hold entries are sealed with the rest."""
    keeper = HoldKeeper(spool, manifests.destinations)  # the mapping a reload updates
    archiver.on_tick(keeper.tick)
    return keeper


def policy_from(settings: Any) -> RetryPolicy:
    """The retry policy the settings describe (interval, window, recovery probes, backoff)."""
    return RetryPolicy(retry_interval=settings.retry_interval,
                       retry_window=settings.retry_window,
                       backoff_base=settings.rate_limit_backoff_base,
                       backoff_cap=settings.rate_limit_backoff_cap,
                       recovery_probes=tuple(settings.recovery_probes))


@contextmanager
def stop_on_signals(stop: threading.Event, *, reload: threading.Event | None = None
                    ) -> Iterator[None]:
    """SIGTERM/SIGINT set `stop` (finish or release in-flight work); a second one exits at once.

    SIGHUP sets `reload` (re-read config.toml) and never ends the process. The previous
    handlers come back afterwards, so an in-process caller keeps its own.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # not the main thread: the caller owns the stop event
        return

    def handle(signum: int, frame: object) -> None:
        if stop.is_set():
            # Exit now; this process's leases are reclaimed by the next run (dead owner).
            os._exit(128 + signum)
        stop.set()
        # A log line, not console output: with --log-format json it is JSON like the rest.
        log.info("Stopping: finishing in-flight uploads (signal again to exit at once)",
                 extra={"event": "daemon_stopping", "signal": signal.Signals(signum).name})

    def hang_up(signum: int, frame: object) -> None:
        if reload is not None:  # a short command (replay) simply carries on
            reload.set()
            log.info("SIGHUP: configuration will be reloaded",
                     extra={"event": "reload_requested"})

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hang_up)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def progress_for(out: Any, label: str, total: int | None) -> tuple[Any, Any]:
    """A progress bar on stderr (only on a terminal) and the callback that advances it."""
    if not out.interactive:
        return None, None
    from rich.progress import (  # only on a terminal
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
    )

    progress = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[detail]}"), console=out.stderr, transient=True)
    task = progress.add_task(label, total=total or None, detail="")
    counts: dict[str, int] = {}

    def on_outcome(kind: str) -> None:
        counts[kind] = counts.get(kind, 0) + 1
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        progress.update(task, advance=1, detail=detail)

    return progress, on_outcome
