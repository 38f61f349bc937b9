"""The operator surface of a running `sm run`: heartbeat, metrics endpoint, sd_notify, log lines.

`operate(spool, archiver, …)` wraps one archiver run:

- registers the daemon in the spool's `daemons` table and beats its heartbeat as the loop
  turns (`sm status` shows whether it is alive; `sm status --check` fails without one);
- with `metrics_addr`, serves `/metrics`, `/healthz`, `/readyz` (see `metrics`);
- with `NOTIFY_SOCKET`, tells systemd `READY=1`, `WATCHDOG=1`, `STATUS=…`, `STOPPING=1`;
- logs `daemon_started`, a `summary` every minute while there is activity, and
  `daemon_stopped` (INFO) with what the run did.

Everything here hangs on the archiver's seams (`on_tick`, `on_settled`, `on_upload`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import SmError
from ..spool.daemons import HEARTBEAT_EVERY, Daemons, Heartbeat
from ..states import UNARCHIVED_STATES, State
from .sdnotify import SdNotifier

log = logging.getLogger("sm.run")

SUMMARY_EVERY = 60.0  # seconds between `summary` lines (only when something happened)
STATUS_EVERY = HEARTBEAT_EVERY  # seconds between sd_notify STATUS= updates


class Operations:
    """What `operate` set up for one run."""

    def __init__(self, spool: Any, archiver: Any, *, projects: dict[str, str],
                 concurrency: int, poll_interval: float,
                 metrics_addr: tuple[str, int] | None = None, once: bool = False,
                 version: str | None = None, environ: dict[str, str] | None = None,
                 config_file: Any = None) -> None:
        if version is None:
            from .. import __version__  # looked up (~30 ms) only when no caller passed it

            version = str(__version__)
        self.spool = spool
        self.archiver = archiver
        self.projects = projects
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.metrics_addr = metrics_addr
        self.once = once
        self.version: str = version
        self.environ = environ
        self.config_file = config_file  # config.toml, whose validity the metrics show
        self.daemons = Daemons(spool)
        self.daemon_id: int | None = None
        self.metrics: Any = None
        self.server: Any = None
        self.liveness: Any = None
        self.notifier: Any = None
        self.report: Any = None
        self._stopping = False
        self._activity: dict[str, int] = {}
        self._last_summary = time.monotonic()
        self._last_status = float("-inf")
        self._heartbeat: Heartbeat | None = None

    # ----------------------------------------------------------------------- start / stop

    def start(self) -> None:
        """Register, start serving, tell systemd we are ready, log the start line."""
        from .metrics import Liveness  # prometheus_client loads when a daemon starts only

        self.liveness = Liveness(self.poll_interval)
        self.daemon_id = self.daemons.register(
            version=self.version, lease_owner=self.archiver.owner,
            projects=sorted(self.projects),
            heartbeat_interval=max(HEARTBEAT_EVERY, self.poll_interval))
        self._heartbeat = Heartbeat(self.daemons, self.daemon_id)
        self._drain_inbox()  # what SQL senders wrote is due in this pass too (--once)
        if self.metrics_addr is not None:
            try:
                self._start_metrics(*self.metrics_addr)
            except BaseException:
                self.daemons.stopped(self.daemon_id)
                raise
        self.archiver.on_tick(self._tick)
        self.archiver.on_settled(self._settled)
        self.archiver.on_upload(self._uploaded)
        self.notifier = SdNotifier.from_env(self.environ)
        log.info("sm run %s started: %d project(s), concurrency %d, spool %s%s", self.version,
                 len(self.projects), self.concurrency, self.spool.location,
                 f", metrics on {self.server.url}" if self.server else "",
                 extra={"event": "daemon_started", "version": self.version,
                        "pid": self._pid(), "spool": self.spool.location,
                        "projects": sorted(self.projects),
                        "destinations": [{"project_id": p, "destination": u}
                                         for p, u in sorted(self.projects.items())],
                        "concurrency": self.concurrency, "once": self.once,
                        "metrics_addr": self.server.url if self.server else None})
        if self.notifier is not None:
            self.notifier.notify("READY=1", self._status_line())
            self._last_status = time.monotonic()
            if self.notifier.watchdog_due():
                self.notifier.notify("WATCHDOG=1")

    def _start_metrics(self, host: str, port: int) -> None:
        from .metrics import DaemonMetrics, MetricsServer  # prometheus_client: daemons only

        self.metrics = DaemonMetrics(self.spool.url or self.spool.path, self.projects, self.version,
                                     self.liveness, config_file=self.config_file)
        self.metrics.attach(self.archiver)
        try:
            self.server = MetricsServer(self.metrics, host, port).start()
        except OSError as exc:
            self.metrics.close()
            self.metrics = None
            raise SmError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}",
                          hint="sm run --metrics-addr 127.0.0.1:PORT (a free port)") from exc

    def stop(self, failed: BaseException | None = None) -> None:
        """Say we stop, mark the daemon stopped, stop serving, log the stop line."""
        if self.liveness is not None:
            self.liveness.ended = True
        self._announce_stopping()
        if self.daemon_id is not None:
            try:
                self.daemons.stopped(self.daemon_id)
            except Exception as exc:  # the spool may be the reason we stop
                log.warning("could not mark the daemon stopped: %s", exc)
        if self.server is not None:
            self.server.stop()
        if self.metrics is not None:
            self.metrics.close()
        counts = self.report.as_dict() if self.report is not None else {}
        if failed is None:
            log.info("sm run stopped: %s", ", ".join(f"{k} {v}" for k, v in counts.items())
                     or "nothing done", extra={"event": "daemon_stopped", **counts})
        else:
            log.error("sm run stopped on an error: %s", failed,
                      extra={"event": "daemon_failed", "error": str(failed)[:300]})
        if self.notifier is not None:
            self.notifier.close()

    def _announce_stopping(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        if self.notifier is not None:
            self.notifier.notify("STOPPING=1")

    # ----------------------------------------------------------------------- seams

    def _drain_inbox(self) -> None:
        """Record what SQL senders wrote to the inbox (docs/fleet.md); log rejections."""
        try:
            report = self.spool.intake.drain_inbox()
        except SmError as exc:  # a busy or unreachable spool must not stop the archiver
            log.warning("could not drain the inbox: %s", exc)
            return
        if report.rejected:
            log.warning("inbox: %d line(s) rejected (sm status counts them)", report.rejected,
                        extra={"event": "inbox_rejected", "rejected": report.rejected})

    def _tick(self) -> None:
        if self.liveness is not None:
            self.liveness.tick()
        if self._heartbeat is not None:
            self._heartbeat()
        if not self.archiver.stop.is_set():
            self._drain_inbox()
        if self.archiver.stop.is_set():
            self._announce_stopping()
        now = time.monotonic()
        if self.notifier is not None and not self._stopping:
            if self.notifier.watchdog_due():
                self.notifier.notify("WATCHDOG=1")
            if now - self._last_status >= STATUS_EVERY:
                self._last_status = now
                self.notifier.notify(self._status_line())
        if now - self._last_summary >= SUMMARY_EVERY:
            self._last_summary = now
            if any(self._activity.values()):
                self._summary()

    def _settled(self, settled: list[Any]) -> None:
        for item in settled:
            self._count(str(item.state))

    def _uploaded(self, project_id: str, seconds: float, result: Any) -> None:
        if isinstance(result, BaseException):
            self._count("retried")

    def _count(self, kind: str) -> None:
        self._activity[kind] = self._activity.get(kind, 0) + 1

    def _summary(self) -> None:
        status = self.spool.report.status()
        counts = status["counts"]
        depth = sum(counts[state] for state in UNARCHIVED_STATES)
        age = status["oldest_unarchived_age_seconds"]
        fields = {"stored": self._activity.get(State.STORED, 0),
                  "retried": self._activity.get("retried", 0),
                  "failed": self._activity.get(State.FAILED, 0),
                  "expired": self._activity.get(State.EXPIRED, 0),
                  "queue_depth": depth,
                  "oldest_unarchived_age_seconds": None if age is None else round(age, 3)}
        self._activity.clear()
        log.info("last minute: stored %d, retried %d, failed %d, expired %d; queue %d, oldest %s",
                 fields["stored"], fields["retried"], fields["failed"], fields["expired"],
                 depth, "-" if age is None else f"{age:.0f}s",
                 extra={"event": "summary", **fields})

    def _status_line(self) -> str:
        try:
            counts = self.spool.report.status()["counts"]
        except Exception:  # a status line is not worth stopping for
            return "STATUS=archiving"
        return (f"STATUS=archiving: {counts[State.QUEUED]} queued, "
                f"{counts[State.IN_FLIGHT]} in flight, {counts[State.RETRY_WAIT]} retry_wait")

    @staticmethod
    def _pid() -> int:
        return os.getpid()


@contextmanager
def operate(spool: Any, archiver: Any, **options: Any) -> Iterator[Operations]:
    """Run the operator surface around one archiver run (see the module docstring).

    Set `ops.report` to the run's report before leaving, for the stop line.
    """
    ops = Operations(spool, archiver, **options)
    ops.start()
    try:
        yield ops
    except Exception as exc:
        ops.stop(failed=exc)
        raise
    except BaseException:
        ops.stop()
        raise
    ops.stop()
