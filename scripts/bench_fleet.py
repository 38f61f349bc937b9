#!/usr/bin/env python3
"""Benchmark the PostgreSQL spool of a fleet (docs/fleet.md), beside SQLite's figures.

    .venv/bin/python scripts/bench_fleet.py                  # about 4 minutes on 2 cores
    .venv/bin/python scripts/bench_fleet.py --quick          # smaller counts
    .venv/bin/python scripts/bench_fleet.py --workers-only   # only the sm run figures
    SM_BENCH_PG_URL=postgresql://… scripts/bench_fleet.py    # an existing (empty) database

Figures:
  Spool.record p50/p99     one message per call, PostgreSQL on loopback vs SQLite (WAL, FULL)
  Spool.record_many        messages/s in batches of 1,000, both backends
  sm run, 1/2/4 workers    messages/s of N `sm run` processes draining one PostgreSQL spool
                           to a folder and to the S3 stand-in of scripts/bench_put.py (a
                           keep-alive HTTP server in its own process answering each PUT at
                           once), scaling measured, not assumed; beside each, what limits it:
                           the machine's CPU busy share, the CPU seconds of the workers, of
                           PostgreSQL, of the stand-in and of anything else on the machine,
                           the share of the time the spool's write lock (recording, settling)
                           was held and its milliseconds per message, and how many worker
                           sessions waited for it on average, and what its holder was doing
                           (pg_locks and pg_stat_activity, sampled every 20 ms: see
                           HOLDER_DOING)

Without SM_BENCH_PG_URL a throw-away server is started with initdb + pg_ctl on loopback
(fsync on, like production; as root it runs as the postgres user). This is a benchmark, not a
test: it asserts nothing and prints numbers.
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_put import start_stand_in  # noqa: E402
from stored_messages_cli.config.projects import ProjectDestination  # noqa: E402
from stored_messages_cli.config.writer import save_projects  # noqa: E402
from stored_messages_cli.spool import Spool  # noqa: E402
from tests.support.fixtures.core import EMAIL_MESSAGE  # noqa: E402


def message(index: int, prefix: str) -> dict[str, Any]:
    made = copy.deepcopy(EMAIL_MESSAGE)
    made["message_id"] = f"{prefix}-{index}"
    made["recipient"] = {"email": f"person{index}@example.com"}
    return made


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bench_record(location: str | Path, label: str, count: int) -> None:
    with Spool(location) as spool:
        samples = []
        for index in range(count):
            started = time.perf_counter()
            spool.record(message(index, f"r{label}"))
            samples.append(time.perf_counter() - started)
    print(f"  Spool.record {label:<10} p50 {percentile(samples, 0.5) * 1000:6.2f} ms"
          f"   p99 {percentile(samples, 0.99) * 1000:6.2f} ms   ({count} calls)")


def bench_record_many(location: str | Path, label: str, count: int) -> None:
    batches = [[message(i, f"b{label}") for i in range(start, start + 1000)]
               for start in range(0, count, 1000)]
    with Spool(location) as spool:
        started = time.perf_counter()
        for batch in batches:
            spool.record_many(batch)
        elapsed = time.perf_counter() - started
    print(f"  Spool.record_many {label:<10} {count / elapsed:8.0f} messages/s ({count})")


def fresh_database(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def process_cpu(pid: int, *, with_children: bool = False) -> float:
    """CPU seconds of one process (and of its reaped children), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def server_cpu(postmaster: int | None) -> float:
    """CPU seconds of a PostgreSQL server so far: the postmaster, its exited backends and
    those still running."""
    if postmaster is None:
        return 0.0
    total = process_cpu(postmaster, with_children=True)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                if parent == postmaster:
                    total += process_cpu(int(entry))
            except (OSError, ValueError):
                pass  # it exited meanwhile: its time is in the postmaster's children now
    return total


# What the session holding the write lock was doing, by pg_stat_activity's words.
HOLDER_DOING = (
    ("worker", "idle in transaction: between statements, in the worker's Python or waiting"
               " for a CPU"),
    ("WAL flush", "waiting for the commit's WAL write and fsync"),
    ("SQL", "running a statement (PostgreSQL's CPU, or waiting for one)"),
    ("other", "another wait (locks, buffer I/O)"),
)


def holder_doing(state: str | None, wait_type: str | None, wait_event: str | None) -> str:
    """One of HOLDER_DOING's names for a sampled session."""
    if state == "idle in transaction":
        return "worker"
    if wait_event and wait_event.startswith("WAL"):
        return "WAL flush"
    if state == "active" and wait_type is None:
        return "SQL"
    return "other"


class LockSampler(threading.Thread):
    """Samples, every 20 ms: how many `sm` sessions wait for an advisory lock (the spool's
    write lock: recording, settling), how many are running a statement, and what the session
    holding the write lock, if any, is doing."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.samples: list[tuple[int, int, str | None]] = []

    def run(self) -> None:
        import psycopg

        from stored_messages_cli.spool.postgres.session import WRITE_LOCK

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.wait(0.02):
                waiting, active = conn.execute(
                    "SELECT count(*) FILTER (WHERE wait_event = 'advisory'),"
                    " count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = 'sm'"
                ).fetchone()
                holder = conn.execute(
                    "SELECT a.state, a.wait_event_type, a.wait_event FROM pg_locks l"
                    " JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s"
                    " AND l.objid = %s AND a.datname = current_database()",
                    (WRITE_LOCK >> 32, WRITE_LOCK & 0xFFFFFFFF)).fetchone()
                self.samples.append((waiting, active,
                                     holder_doing(*holder) if holder else None))

    def means(self) -> tuple[float, float, float]:
        """(sessions waiting for the write lock, sessions running a statement, share of the
        time the write lock was held), averaged over the samples."""
        if not self.samples:
            return 0.0, 0.0, 0.0
        return (statistics.fmean(s[0] for s in self.samples),
                statistics.fmean(s[1] for s in self.samples),
                statistics.fmean(s[2] is not None for s in self.samples))

    def holder_shares(self) -> str:
        """While the lock was held, the share of samples the holder spent on each thing."""
        held = [s[2] for s in self.samples if s[2] is not None]
        return ", ".join(f"{name} {100 * held.count(name) / max(1, len(held)):.0f} %"
                         for name, _ in HOLDER_DOING)


def bench_workers(admin_url: str, work: Path, count: int, workers: int,
                  s3: tuple[str, int] | None = None, postmaster: int | None = None) -> None:
    """`workers` sm run processes drain `count` messages from one spool: to a folder, or to
    the S3 stand-in `s3` (its URL and pid)."""
    where = "s3" if s3 else "folder"
    url = fresh_database(admin_url, f"sm_bench_run_{where}_{workers}")
    home = work / f"home-{where}-{workers}"
    if s3:
        destination = ProjectDestination(url="s3://bench-bucket/archive/", region="us-east-1",
                                         endpoint_url=s3[0], allow_insecure_endpoint=True)
    else:
        archive = work / f"archive-{workers}"
        archive.mkdir(parents=True, mode=0o700)
        destination = ProjectDestination(url=f"file://{archive}/")
    save_projects(home / "config.toml", {"12345": destination})
    with Spool(url) as spool:
        for start in range(0, count, 1000):
            spool.record_many([message(i, "w") for i in range(start, min(count, start + 1000))])
    env = dict(os.environ, SM_HOME=str(home), SM_SPOOL_URL=url, SM_POLL_INTERVAL="0.05")
    sampler = LockSampler(url)
    sampler.start()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before, total_before = cpu_ticks()
    server_before = server_cpu(postmaster)
    stand_in_before = process_cpu(s3[1]) if s3 else 0.0
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-m", "stored_messages_cli.cli.app", "-q",
                                   "run", "--concurrency", "4"], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL)
                 for _ in range(workers)]
    with Spool(url) as spool:
        while spool.status()["counts"]["stored"] < count:
            time.sleep(0.05)
    elapsed = time.perf_counter() - started
    busy, total = cpu_ticks()
    server = server_cpu(postmaster) - server_before
    stand_in = (process_cpu(s3[1]) - stand_in_before) if s3 else 0.0
    sampler.stop.set()
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(timeout=60)
    sampler.join()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The workers' CPU includes their start-up and SIGTERM shutdown (a fraction of a second).
    worker_cpu = (children.ru_utime + children.ru_stime
                  - children_before.ru_utime - children_before.ru_stime)
    machine = (busy - busy_before) / os.sysconf("SC_CLK_TCK")
    waiting, active, held = sampler.means()
    busy_share = 100 * (busy - busy_before) / max(1, total - total_before)
    others = max(0.0, machine - worker_cpu - server - stand_in)
    print(f"  {workers} worker(s) to {where:<6} {count / elapsed:5.0f} messages/s"
          f" ({count} in {elapsed:5.1f} s) | machine CPU busy {busy_share:3.0f} %;"
          f" CPU s: workers {worker_cpu:5.1f}, PostgreSQL {server:5.1f},"
          f" stand-in {stand_in:4.1f}, anything else {others:5.1f}"
          f" | write lock held {100 * held:3.0f} % of the time"
          f" ({1000 * held * elapsed / count:3.1f} ms per message),"
          f" {waiting:4.2f} of {active:4.2f} active sessions waiting for it;"
          f" its holder was: {sampler.holder_shares()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--workers-only", action="store_true",
                        help="only the sm run throughput figures")
    options = parser.parse_args()
    records, batch, drained = (200, 5000, 1000) if options.quick else (1000, 20000, 4000)
    # Credentials for signing only; nothing from this machine's AWS configuration is read.
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                       "AWS_DEFAULT_REGION": "us-east-1"})
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                 "SM_SPOOL_URL"):
        os.environ.pop(name, None)
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs", flush=True)
    server = None
    admin_url = os.environ.get("SM_BENCH_PG_URL")
    if not admin_url:
        from tests.support.postgres import find_bindir, start_server, stop_server

        bindir = find_bindir()
        if bindir is None:
            sys.exit("PostgreSQL is not installed (apt-get install postgresql), or set"
                     " SM_BENCH_PG_URL")
        server = start_server(bindir, durable=True)
        admin_url = server.url()
    postmaster = (int((server.folder / "data" / "postmaster.pid").read_text().split()[0])
                  if server is not None else None)
    stand_in, s3_endpoint = start_stand_in()
    try:
        with tempfile.TemporaryDirectory(prefix="sm-bench-fleet-") as folder:
            work = Path(folder)
            if not options.workers_only:
                print(f"record and record_many (PostgreSQL on loopback vs SQLite in {work}):")
                bench_record(work / "spool.db", "sqlite", records)
                bench_record(fresh_database(admin_url, "sm_bench_record"), "postgresql",
                             records)
                bench_record_many(work / "many.db", "sqlite", batch)
                bench_record_many(fresh_database(admin_url, "sm_bench_many"), "postgresql",
                                  batch)
            print("sm run throughput, workers sharing one PostgreSQL spool (--concurrency 4"
                  " each):", flush=True)
            for s3 in (None, (s3_endpoint, stand_in.pid)):
                for workers in (1, 2, 4):
                    bench_workers(admin_url, work, drained, workers, s3, postmaster)
    finally:
        stand_in.terminate()
        stand_in.wait()
        if server is not None:
            stop_server(server)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
