"""`sm serve`'s Prometheus metrics: requests per endpoint and status code, their latency, and
the lines recorded per outcome. Labels are route templates and codes: never an id."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

__all__ = ["METRICS_CONTENT_TYPE", "ServeMetrics", "endpoint_of"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)
ENDPOINTS = ("/v1/messages", "/v1/events", "/healthz", "/metrics")
PROVIDER_ENDPOINT = "/v1/providers/{provider}/{project_id}"
OTHER = "other"


def endpoint_of(path: str) -> str:
    """The `endpoint` label of a request path: its route template, or `other`."""
    if path in ENDPOINTS:
        return path
    if path.startswith("/v1/providers/"):
        return PROVIDER_ENDPOINT
    return OTHER


class ServeMetrics:
    """The counters and histogram of one server, in a registry of their own."""

    def __init__(self) -> None:
        disable_created_metrics()  # `_created` series are noise for a daemon's counters
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("sm_serve_requests_total", "HTTP requests answered",
                                ["endpoint", "code"], registry=self.registry)
        self.latency = Histogram("sm_serve_request_duration_seconds",
                                 "Time from a request's arrival to its answer",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.lines = Counter("sm_serve_lines_total", "Lines (messages and events) posted,"
                             " per outcome", ["endpoint", "outcome"], registry=self.registry)
        self._counters: dict[tuple[str, int], Any] = {}
        self._timers: dict[str, Any] = {}
        self._lines: dict[tuple[str, str], Any] = {}

    def answered(self, endpoint: str, code: int, seconds: float) -> None:
        """Count one answered request (the labelled children are looked up once each)."""
        counter = self._counters.get((endpoint, code))
        if counter is None:
            counter = self._counters[endpoint, code] = self.requests.labels(endpoint,
                                                                            str(code))
        timer = self._timers.get(endpoint)
        if timer is None:
            timer = self._timers[endpoint] = self.latency.labels(endpoint)
        counter.inc()
        timer.observe(seconds)

    def recorded(self, endpoint: str, accepted: int, duplicate: int, rejected: int) -> None:
        """Count the outcome of a posted body's lines."""
        for outcome, count in (("accepted", accepted), ("duplicate", duplicate),
                               ("rejected", rejected)):
            if count:
                child = self._lines.get((endpoint, outcome))
                if child is None:
                    child = self._lines[endpoint, outcome] = self.lines.labels(endpoint,
                                                                               outcome)
                child.inc(count)

    def exposition(self) -> bytes:
        """The text Prometheus scrapes."""
        return generate_latest(self.registry)
