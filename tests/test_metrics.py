"""`sm run --metrics-addr`: /metrics (Prometheus), /healthz and /readyz (issue 12)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stored_messages_cli import Spool, __version__
from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.clock import FakeClock
from stored_messages_cli.ops.metrics import (
    DaemonMetrics,
    Liveness,
    MetricsServer,
    parse_metrics_addr,
)
from stored_messages_cli.spool.maintenance import prune
from stored_messages_cli.states import HealthState
from tests.support.daemon import (
    PROJECT,
    free_port,
    http_get,
    prepare_home,
    record,
    sm,
    start_run,
    wait_for,
)


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus_client: {(name, labels): value}."""
    code, text = http_get(base + "/metrics")
    assert code == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def stored_in(samples: dict) -> tuple[float, float]:
    """(the daemon's stored counter, the spool's stored gauge) of one scrape."""
    return (value(samples, "sm_messages_stored_total", project=PROJECT),
            value(samples, "sm_messages", state="stored"))


def test_a_scrape_during_a_run_shows_the_counters_moving(tmp_path: Path) -> None:
    home, archive = tmp_path / "home", tmp_path / "archive"
    prepare_home(home, archive, 5)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daemon = start_run(home, tmp_path / "run.log", "--metrics-addr", f"127.0.0.1:{port}")
    try:
        wait_for(lambda: http_get(base + "/healthz")[0] == 200, what="/healthz")
        # One scrape reads the spool's gauges before the daemon's counters, so a settle that
        # commits in between shows in the counters first: wait until both agree.
        first = wait_for(lambda: stored_in(s := scrape(base)) == (5, 5) and s, what="5 stored")
        assert value(first, "sm_messages", state="queued") == 0
        assert value(first, "sm_upload_duration_seconds_count", project=PROJECT) == 5
        assert value(first, "sm_upload_failures_total", project=PROJECT,
                     retry_class="unreachable") == 0
        assert value(first, "sm_upload_failures_total", project=PROJECT,
                     retry_class="rate_limited") == 0
        assert value(first, "sm_messages_expired_total", project=PROJECT) == 0
        assert value(first, "sm_messages_retry_wait", retry_class="unreachable") == 0
        assert value(first, "sm_oldest_unarchived_age_seconds") == 0
        assert value(first, "sm_destination_up", project=PROJECT) == 1
        assert value(first, "sm_build_info", version=__version__) == 1
        for reason in ("send_failed", "never_confirmed", "medium_not_archived"):
            assert value(first, "sm_messages_discarded_in_spool", reason=reason) == 0
        stored_at = value(first, "sm_last_stored_timestamp_seconds", project=PROJECT)
        assert time.time() - 60 < stored_at <= time.time()
        assert all(name.startswith("sm_") for name, _ in first)
        # Labels name projects, states, classes and reasons: never a message or an address.
        label_values = {v for _, labels in first for _, v in labels}
        assert not any(v.startswith("m-") or "+1555" in v for v in label_values)

        record(home, 3, prefix="late")
        later = wait_for(lambda: stored_in(s := scrape(base)) == (8, 8) and s, what="8 stored")
        assert value(later, "sm_upload_duration_seconds_count", project=PROJECT) == 8
        assert http_get(base + "/readyz") == (200, "ready\n")
        assert http_get(base + "/nope")[0] == 404
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    assert daemon.returncode == 0
    assert http_get(base + "/healthz")[0] == 0  # the endpoint closed with the daemon


def test_readyz_and_destination_up_follow_the_destination_health(tmp_path: Path) -> None:
    home, archive = tmp_path / "home", tmp_path / "archive"
    prepare_home(home, archive, 0)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daemon = start_run(home, tmp_path / "run.log", "--metrics-addr", str(port))  # loopback
    try:
        wait_for(lambda: http_get(base + "/readyz")[0] == 200, what="/readyz")
        with Spool.open(home=home) as spool:
            spool.health.set(PROJECT, f"file://{archive}/", HealthState.UNREACHABLE,
                             next_probe_at=1_900_000_000.0, last_error="ConnectionRefused")
        code, body = http_get(base + "/readyz")
        assert (code, body) == (503, f"destination not healthy: {PROJECT} unreachable\n")
        assert http_get(base + "/healthz") == (200, "ok\n")  # alive, just not ready
        samples = scrape(base)
        assert value(samples, "sm_destination_up", project=PROJECT) == 0
        assert value(samples, "sm_next_probe_timestamp_seconds", project=PROJECT) == 1.9e9
        with Spool.open(home=home) as spool:
            spool.health.set(PROJECT, f"file://{archive}/", HealthState.OK)
        assert http_get(base + "/readyz") == (200, "ready\n")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)


def test_healthz_turns_unhealthy_when_the_loop_stops(tmp_path: Path, file_destination) -> None:
    with Spool(tmp_path / "spool.db") as spool:
        stop = threading.Event()
        archiver = Archiver(spool, [ProjectTarget(PROJECT, file_destination)],
                            poll_interval=0.05, stop=stop)
        # The loop ticks every TICK_EVERY (0.5 s): the allowed age must leave room for that.
        liveness = Liveness(0.05, floor=1.5)
        archiver.on_tick(liveness.tick)
        metrics = DaemonMetrics(spool.path, {PROJECT: file_destination.url}, "test", liveness)
        server = MetricsServer(metrics, "127.0.0.1", 0).start()
        base = server.url
        loop = threading.Thread(target=archiver.run)
        loop.start()
        try:
            time.sleep(2.0)  # longer than the allowed age: only ticks keep it healthy
            assert http_get(base + "/healthz") == (200, "ok\n")
            stop.set()
            loop.join(timeout=10)
            code, body = wait_for(lambda: (r := http_get(base + "/healthz"))[0] == 503 and r,
                                  timeout=10, what="/healthz 503")
            assert body.startswith("the archiver loop last turned ")
            liveness.ended = True
            assert http_get(base + "/healthz") == (503, "the archiver loop has ended\n")
        finally:
            stop.set()
            server.stop()
            metrics.close()


@pytest.mark.parametrize(("text", "expected"), [
    ("9464", ("127.0.0.1", 9464)),
    (":9464", ("127.0.0.1", 9464)),
    ("0.0.0.0:9100", ("0.0.0.0", 9100)),
    ("localhost:0", ("localhost", 0)),
    ("[::1]:9100", ("::1", 9100)),
])
def test_metrics_addr_forms(text: str, expected: tuple[str, int]) -> None:
    assert parse_metrics_addr(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "::1:9100", "host:70000", "[::1]9100", "h:-1"])
def test_bad_metrics_addr_is_a_usage_error(text: str, cli, sm_home: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        parse_metrics_addr(text)
    if text:
        prepare_home(sm_home, tmp_path / "archive", 0)
        result = cli("run", "--once", "--metrics-addr", text)
        assert result.exit_code == 2, result.output
        assert "--metrics-addr" in result.stderr


def test_a_taken_port_is_one_error_line_and_no_daemon_stays_registered(tmp_path: Path) -> None:
    home, archive = tmp_path / "home", tmp_path / "archive"
    prepare_home(home, archive, 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = sm(home, "run", "--once", SM_METRICS_ADDR=f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"Error: cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    status = sm(home, "--json", "status")
    assert '"daemons": []' in status.stdout
    assert '"queued": 1' in status.stdout  # nothing was attempted


def counters(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a counter family in /metrics (what Prometheus may treat as a reset)."""
    code, text = http_get(base + "/metrics")
    assert code == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) if family.type == "counter"
            for s in family.samples if s.name.endswith("_total")}


def test_no_counter_falls_after_a_spool_prune(tmp_path: Path, make_message) -> None:
    clock = FakeClock(1_800_000_000.0)
    unconfirmed = {k: v for k, v in make_message().items() if k not in ("sent_at", "provider")}
    with Spool(tmp_path / "spool.db", clock=clock) as spool:
        spool.record(unconfirmed)
        clock.advance(25 * 3600)
        assert spool.intake.discard_unconfirmed(24 * 3600) == 1
        metrics = DaemonMetrics(spool.path, {}, "test", Liveness(1.0))
        server = MetricsServer(metrics, "127.0.0.1", 0).start()
        try:
            before = counters(server.url)
            assert scrape(server.url)[("sm_messages_discarded_in_spool",
                                       (("reason", "never_confirmed"),))] == 1
            clock.advance(30 * 86400)
            assert prune(spool, 86400).discarded == 1
            after = counters(server.url)
            fell = {k: (v, after.get(k, 0.0)) for k, v in before.items()
                    if after.get(k, 0.0) < v}
            assert fell == {}
            assert scrape(server.url)[("sm_messages_discarded_in_spool",
                                       (("reason", "never_confirmed"),))] == 0
        finally:
            server.stop()
            metrics.close()
