#!/usr/bin/env python3
"""Benchmark the PostgreSQL spool of a fleet (docs/fleet.md), beside SQLite's figures.

    .venv/bin/python scripts/bench_fleet.py            # about 3 minutes on 2 cores
    .venv/bin/python scripts/bench_fleet.py --quick    # smaller counts
    SM_BENCH_PG_URL=postgresql://… scripts/bench_fleet.py   # an existing (empty) database

Figures:
  Spool.record p50/p99     one message per call, PostgreSQL on loopback vs SQLite (WAL, FULL)
  Spool.record_many        messages/s in batches of 1,000, both backends
  sm run, 1/2/4 workers    messages/s of N `sm run` processes draining one PostgreSQL spool
                           to a folder (scaling measured, not assumed)

Without SM_BENCH_PG_URL a throw-away server is started with initdb + pg_ctl on loopback
(fsync on, like production; as root it runs as the postgres user). This is a benchmark, not a
test: it asserts nothing and prints numbers.
"""

from __future__ import annotations

import argparse
import copy
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stored_messages_cli.config import ProjectDestination, save_projects  # noqa: E402
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


def bench_workers(admin_url: str, work: Path, count: int, workers: int) -> None:
    url = fresh_database(admin_url, f"sm_bench_run_{workers}")
    home, archive = work / f"home-{workers}", work / f"archive-{workers}"
    archive.mkdir(parents=True, mode=0o700)
    save_projects(home / "config.toml", {"12345": ProjectDestination(url=f"file://{archive}/")})
    with Spool(url) as spool:
        for start in range(0, count, 1000):
            spool.record_many([message(i, "w") for i in range(start, min(count, start + 1000))])
    env = dict(os.environ, SM_HOME=str(home), SM_SPOOL_URL=url, SM_POLL_INTERVAL="0.05")
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-m", "stored_messages_cli.cli.app", "-q",
                                   "run", "--concurrency", "4"], env=env, cwd=ROOT)
                 for _ in range(workers)]
    with Spool(url) as spool:
        while spool.status()["counts"]["stored"] < count:
            time.sleep(0.05)
    elapsed = time.perf_counter() - started
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(timeout=60)
    print(f"  sm run, {workers} worker(s), folder  {count / elapsed:8.0f} messages/s"
          f" ({count} in {elapsed:.1f} s, process start-up included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    options = parser.parse_args()
    records, batch, drained = (200, 5000, 1000) if options.quick else (1000, 20000, 4000)
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
    try:
        with tempfile.TemporaryDirectory(prefix="sm-bench-fleet-") as folder:
            work = Path(folder)
            print(f"record and record_many (PostgreSQL on loopback vs SQLite in {work}):")
            bench_record(work / "spool.db", "sqlite", records)
            bench_record(fresh_database(admin_url, "sm_bench_record"), "postgresql", records)
            bench_record_many(work / "many.db", "sqlite", batch)
            bench_record_many(fresh_database(admin_url, "sm_bench_many"), "postgresql", batch)
            print("sm run throughput, workers sharing one PostgreSQL spool:")
            for workers in (1, 2, 4):
                bench_workers(admin_url, work, drained, workers)
    finally:
        if server is not None:
            stop_server(server)


if __name__ == "__main__":
    main()
