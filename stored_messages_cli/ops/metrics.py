"""Prometheus metrics and the `/healthz` and `/readyz` endpoints of `sm run --metrics-addr`.

Two sources, one registry:

- counters and the upload histogram move with the archiver's seams (`on_settled`,
  `on_upload`), so they count what this process did since it started (Prometheus handles the
  reset at a restart);
- gauges (`sm_messages_discarded_in_spool` among them, which senders move too) are read
  from the spool when Prometheus scrapes (`Report.status()`, the destination health rows, the
  index), through a `Spool` of their own: a scrape never waits on, nor blocks, the archiver's
  connection.

Labels carry project ids, states, classes and reason codes only: never a message id or an
address. Everything is prefixed `sm_`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..clock import Clock
from ..config.last_good import ConfigValidity
from ..errors import SmError
from ..retry import error_class
from ..spool import Spool
from ..states import DOWN_HEALTH, STATES, FinalReason, HealthState, RetryClass, State

log = logging.getLogger("sm.metrics")

DISCARD_REASONS = (FinalReason.SEND_FAILED, FinalReason.NEVER_CONFIRMED,
                   FinalReason.MEDIUM_NOT_ARCHIVED)
UPLOAD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
READY_HEALTH = frozenset({HealthState.OK, HealthState.UNKNOWN})
DEFAULT_HOST = "127.0.0.1"
READ_TIMEOUT = 10.0  # seconds a client may stay silent before its connection is closed
MAX_CONNECTIONS = 64  # connections the endpoint holds at once (SPEC 9.2)
SLOT_WAIT = 0.2  # seconds the accept loop waits for a free slot before checking for shutdown


def parse_metrics_addr(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT`, `:PORT` or `PORT` → (host, port); loopback when only a port.

    Raises ValueError with a one-line reason.
    """
    value = text.strip()
    host = ""
    port_text = value
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or not value[end + 1:].startswith(":"):
            raise ValueError(f"{text!r} is not HOST:PORT (example: 127.0.0.1:9464)")
        host, port_text = value[1:end], value[end + 2:]
    elif ":" in value:
        host, _, port_text = value.rpartition(":")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9464")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT with a port 0-65535 (example: :9464)")
    return host or DEFAULT_HOST, int(port_text)


class Liveness:
    """When the archiver's loop last turned; `/healthz` is 200 while that is recent."""

    def __init__(self, poll_interval: float, *, floor: float = 2.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        # Two poll intervals, but never less than `floor`: the loop ticks every 0.5 s at most.
        self.allowed = max(2 * poll_interval, floor)
        self._monotonic = monotonic
        self.last_turn = monotonic()
        self.ended = False

    def tick(self) -> None:
        """The `on_tick` hook."""
        self.last_turn = self._monotonic()

    def age(self) -> float:
        """Seconds since the loop last turned."""
        return self._monotonic() - self.last_turn

    def healthy(self) -> bool:
        """The loop runs and turned within the allowed time."""
        return not self.ended and self.age() <= self.allowed


class SpoolCollector(Collector):
    """Gauges read from the spool at scrape time (its status figures and health rows)."""

    def __init__(self, spool_path: str | Path, projects: dict[str, str], version: str,
                 *, clock: Clock | None = None, config: ConfigValidity | None = None) -> None:
        self.spool_path = spool_path  # a file, or a postgresql:// URL
        self.config = config  # whether config.toml loads (`sm_config_valid`, `/readyz`)
        self.projects = dict(projects)  # project id → destination URL this daemon uses
        self.version = version
        self.clock = clock
        self._lock = threading.Lock()
        self._spool: Spool | None = None
        self._last_stored: dict[str, float] | None = None
        self.stored_at: dict[str, float] = {}  # moved by the archiver as messages are stored

    def spool(self) -> Spool:
        """The collector's own Spool on the daemon's database, opened at the first scrape."""
        with self._lock:
            if self._spool is None:
                self._spool = Spool(self.spool_path, clock=self.clock)
            return self._spool

    def close(self) -> None:
        """Close the collector's Spool."""
        with self._lock:
            if self._spool is not None:
                self._spool.close()
                self._spool = None

    def spool_open(self) -> bool:
        """The spool can be opened."""
        try:
            self.spool()
        except SmError:
            return False
        return True

    def health(self) -> dict[str, tuple[str, float | None]]:
        """Each project's destination health (unknown when never recorded for its URL)."""
        known = self.spool().health.all()
        result: dict[str, tuple[str, float | None]] = {}
        for project_id, url in sorted(self.projects.items()):
            row = known.get(project_id)
            if row is None or row.url != url:
                result[project_id] = (HealthState.UNKNOWN, None)
            else:
                result[project_id] = (row.health, row.next_probe_at)
        return result

    def last_stored(self) -> dict[str, float]:
        """Each project's latest stored_at: read once from the index, then moved in process."""
        if self._last_stored is None:
            self._last_stored = {}
            for project_id in self.projects:
                value = self.spool().index.last_stored_at(project_id)
                if value is not None:
                    self._last_stored[project_id] = value
        for project_id, at in list(self.stored_at.items()):
            self._last_stored[project_id] = max(at, self._last_stored.get(project_id, at))
        return self._last_stored

    def collect(self) -> Iterator[Any]:
        """The spool's gauges now."""
        build = GaugeMetricFamily("sm_build_info", "The running sm version.", labels=["version"])
        build.add_metric([self.version], 1)
        yield build
        if self.config is not None:
            yield GaugeMetricFamily(
                "sm_config_valid", "1 while config.toml loads; 0 while it does not (senders"
                " record with the last good configuration, sm run keeps its running one).",
                value=0 if self.config.problem() else 1)
        try:
            yield from self._from_spool()
        except SmError as exc:
            log.warning("metrics: could not read the spool: %s", exc)

    def _from_spool(self) -> Iterator[Any]:
        status = self.spool().report.status()
        messages = GaugeMetricFamily("sm_messages", "Messages in the spool, by state.",
                                     labels=["state"])
        counts: dict[str, int] = dict.fromkeys([str(s) for s in STATES], 0)
        counts.update(status["counts"])
        for name, count in counts.items():
            messages.add_metric([name], count)
        yield messages

        waiting = dict.fromkeys(RetryClass, 0)
        for reason, count in status["retry_reasons"].items():
            if reason in waiting:
                waiting[RetryClass(reason)] = count
        retry = GaugeMetricFamily("sm_messages_retry_wait",
                                  "Messages waiting to retry, by retry class.",
                                  labels=["retry_class"])
        for retry_class, count in waiting.items():
            retry.add_metric([retry_class], count)
        yield retry

        age = status["oldest_unarchived_age_seconds"]
        yield GaugeMetricFamily(
            "sm_oldest_unarchived_age_seconds",
            "Age of the oldest confirmed message not yet archived (0 when none).",
            value=0.0 if age is None else age)

        discarded = dict.fromkeys([str(r) for r in DISCARD_REASONS], 0)
        discarded.update(status["discarded_by_reason"])
        # A gauge, not a counter: it counts the spool's rows, which `sm spool prune` deletes
        # (a counter that falls reads as a reset in Prometheus).
        family = GaugeMetricFamily(
            "sm_messages_discarded_in_spool", "Discarded messages (never archived) whose rows"
            " the spool still holds, by reason; `sm spool prune` lowers it.", labels=["reason"])
        for reason, count in sorted(discarded.items()):
            family.add_metric([reason], count)
        yield family

        health = self.health()
        up = GaugeMetricFamily("sm_destination_up",
                               "1 unless the project's destination is unreachable or unsafe.",
                               labels=["project"])
        states = GaugeMetricFamily("sm_destination_health",
                                   "1 for the project's destination health state (ok,"
                                   " rate_limited, unreachable, unsafe, unknown), else 0.",
                                   labels=["project", "state"])
        probe = GaugeMetricFamily("sm_next_probe_timestamp_seconds",
                                  "When an unreachable or unsafe destination is probed next.",
                                  labels=["project"])
        for project_id, (health_state, next_probe_at) in health.items():
            up.add_metric([project_id], 0 if health_state in DOWN_HEALTH else 1)
            for state in HealthState:
                states.add_metric([project_id, state], int(health_state == state))
            if next_probe_at is not None:
                probe.add_metric([project_id], next_probe_at)
        yield up
        yield states
        yield probe

        stored = GaugeMetricFamily("sm_last_stored_timestamp_seconds",
                                   "When a message of the project was last stored.",
                                   labels=["project"])
        for project_id, at in sorted(self.last_stored().items()):
            stored.add_metric([project_id], at)
        yield stored
        yield from self._evidence_gauges()

    def _evidence_gauges(self) -> Iterator[Any]:
        """The signed log's gauges: anchors not made, manifest writes failing (SPEC 9.1)."""
        spool = self.spool()
        now = spool.clock.now()
        behind = spool.evidence.anchors_behind(now)
        yield GaugeMetricFamily(
            "sm_anchors_behind", "Anchors (checkpoint copies, time-stamps) owed and not made"
            " yet; sustained above 0 means a copy location or authority keeps failing.",
            value=len(behind))
        yield GaugeMetricFamily(
            "sm_anchors_oldest_age_seconds",
            "Age of the oldest anchor not made yet (0 when none).",
            value=behind[0].age(now) if behind else 0.0)
        yield GaugeMetricFamily(
            "sm_manifest_writes_failing", "Manifest segments or checkpoints not written after"
            " 3 or more failed attempts.", value=len(spool.evidence.failing_manifest_writes()))


class DaemonMetrics:
    """The registry of one `sm run`: the spool's gauges plus what the archiver does."""

    def __init__(self, spool_path: str | Path, projects: dict[str, str], version: str,
                 liveness: Liveness | None = None, config_file: Path | None = None) -> None:
        disable_created_metrics()  # `_created` series are noise for a daemon's counters
        self.registry = CollectorRegistry(auto_describe=True)
        self.config = ConfigValidity(config_file) if config_file is not None else None
        self.spool = SpoolCollector(spool_path, projects, version, config=self.config)
        self.registry.register(self.spool)
        self.liveness = liveness
        self.stored = Counter("sm_messages_stored", "Messages this daemon stored.",
                              ["project"], registry=self.registry)
        self.failures = Counter("sm_upload_failures", "Upload attempts that failed and will be"
                                " retried, by retry class.", ["project", "retry_class"],
                                registry=self.registry)
        self.expired = Counter("sm_messages_expired", "Messages that expired (cannot be"
                               " archived).", ["project"], registry=self.registry)
        self.failed = Counter("sm_messages_failed", "Messages that failed permanently"
                              " (conflict, corrupt_in_spool).", ["project", "reason"],
                              registry=self.registry)
        self.duration = Histogram("sm_upload_duration_seconds", "Upload attempt duration.",
                                  ["project"], buckets=UPLOAD_BUCKETS, registry=self.registry)
        for project_id in sorted(projects):  # every series exists from the start, at 0
            self.stored.labels(project_id)
            self.expired.labels(project_id)
            self.duration.labels(project_id)
            for retry_class in RetryClass:
                self.failures.labels(project_id, retry_class)

    def attach(self, archiver: Any) -> None:
        """Follow an Archiver through its seams."""
        archiver.on_settled(self.on_settled)
        archiver.on_upload(self.on_upload)

    def on_settled(self, settled: Iterable[Any]) -> None:
        """Count outcomes (the archiver's `on_settled` hook)."""
        for item in settled:
            if item.state == State.STORED:
                self.stored.labels(item.project_id).inc()
                self.spool.stored_at[item.project_id] = item.at
            elif item.state == State.EXPIRED:
                self.expired.labels(item.project_id).inc()
            elif item.state == State.FAILED:
                self.failed.labels(item.project_id, item.final_reason or "unknown").inc()

    def on_upload(self, project_id: str, seconds: float, result: Any) -> None:
        """Time every attempt; count the failures that will be retried (`on_upload` hook)."""
        self.duration.labels(project_id).observe(seconds)
        if isinstance(result, BaseException):
            kind = error_class(result)
            if kind in (RetryClass.RATE_LIMITED, RetryClass.UNREACHABLE):
                self.failures.labels(project_id, str(kind)).inc()

    def ready(self) -> tuple[bool, str]:
        """`/readyz`: config.toml loads, the spool answers and every destination is healthy
        or unknown."""
        problem = self.config.problem() if self.config is not None else None
        if problem:
            return False, f"config.toml not valid: {problem}"
        if not self.spool.spool_open():
            return False, "spool not open"
        try:
            health = self.spool.health()
        except SmError as exc:
            return False, f"spool not readable: {exc}"
        down = [f"{p} {h}" for p, (h, _) in health.items() if h not in READY_HEALTH]
        if down:
            return False, "destination not healthy: " + ", ".join(down)
        return True, "ready"

    def healthy(self) -> tuple[bool, str]:
        """`/healthz`: the archiver's loop turned recently."""
        if self.liveness is None:
            return True, "ok"
        if self.liveness.ended:
            return False, "the archiver loop has ended"
        age = self.liveness.age()
        if age > self.liveness.allowed:
            return False, f"the archiver loop last turned {age:.1f}s ago"
        return True, "ok"

    def wsgi_app(self) -> Callable[..., Iterable[bytes]]:
        """`/metrics`, `/healthz`, `/readyz` (anything else is 404)."""
        metrics = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]
                ) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "/")
            if path == "/metrics":
                return metrics(environ, start_response)
            if path in ("/healthz", "/readyz"):
                ok, detail = self.healthy() if path == "/healthz" else self.ready()
                body = (detail + "\n").encode()
                start_response("200 OK" if ok else "503 Service Unavailable",
                               [("Content-Type", "text/plain; charset=utf-8"),
                                ("Content-Length", str(len(body)))])
                return [body]
            body = b"not found: try /metrics, /healthz or /readyz\n"
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                             ("Content-Length", str(len(body)))])
            return [body]

        return app

    def close(self) -> None:
        """Release the collector's Spool."""
        self.spool.close()


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """A thread per connection, at most `slots` connections held at once (SPEC 9.2).

    At the cap the server accepts nothing more: later clients wait in the kernel's listen
    backlog, holding none of this process's descriptors, until a connection ends or is closed
    by the read timeout; so idle clients can never starve uploads of file descriptors. The
    timeout bounds each read and, checked on every turn of the serve loop, the whole request
    (a client trickling a byte at a time is cut as well).
    """

    daemon_threads = True
    request_queue_size = 128  # the backlog where clients wait while every slot is held
    read_timeout = READ_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.reading: dict[socket.socket, float] = {}  # connection -> its request's deadline
        self.reading_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept one connection once a slot is free, with the read timeout set on it."""
        if not self.slots.acquire(timeout=SLOT_WAIT):
            # an OSError here is skipped by the serve loop, which then checks for shutdown
            raise OSError("every metrics connection slot is held")
        try:
            connection, address = super().get_request()
        except BaseException:
            self.slots.release()
            raise
        connection.settimeout(self.read_timeout)
        with self.reading_lock:
            self.reading[connection] = time.monotonic() + self.read_timeout
        return connection, address

    def request_received(self, connection: socket.socket) -> None:
        """The request line and headers are in: the request deadline no longer applies."""
        with self.reading_lock:
            self.reading.pop(connection, None)

    def service_actions(self) -> None:
        """On each turn of the serve loop, cut connections whose request is overdue."""
        now = time.monotonic()
        with self.reading_lock:
            overdue = [c for c, deadline in self.reading.items() if deadline <= now]
        for connection in overdue:
            try:
                connection.shutdown(socket.SHUT_RDWR)  # its blocked read returns at once
            except OSError:
                pass  # already closed

    def shutdown_request(self, request: Any) -> None:
        """Close an accepted connection (called once for each) and free its slot."""
        self.request_received(request)
        try:
            super().shutdown_request(request)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out or went away is logged at debug, not as a traceback."""
        log.debug("metrics connection from %s ended early", client_address, exc_info=True)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        pass  # one line per scrape is noise

    def parse_request(self) -> bool:
        """Read the request line's fields and the headers, then lift the request deadline."""
        parsed = super().parse_request()
        if isinstance(self.server, _ThreadingServer):
            self.server.request_received(self.connection)
        return parsed


class MetricsServer:
    """The HTTP endpoint on its own thread; `port` is the bound port (useful with port 0)."""

    def __init__(self, metrics: DaemonMetrics, host: str, port: int, *,
                 read_timeout: float = READ_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        server_class = _ThreadingServer
        if ":" in host:
            class _V6(_ThreadingServer):
                address_family = socket.AF_INET6

            server_class = _V6
        self.server = make_server(host, port, metrics.wsgi_app(), server_class=server_class,
                                  handler_class=_QuietHandler)
        self.server.read_timeout = read_timeout
        self.server.slots = threading.BoundedSemaphore(max_connections)
        self.host = host
        self.port = int(self.server.server_port)
        self._thread = threading.Thread(target=self.server.serve_forever, name="sm-metrics",
                                        kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def url(self) -> str:
        """`http://host:port` of this endpoint."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> MetricsServer:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
