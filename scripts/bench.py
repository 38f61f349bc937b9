#!/usr/bin/env python3
"""Benchmark the archive pipeline against raw baselines, side by side, in one run.

    .venv/bin/python scripts/bench.py            # everything but --scale (about 5 minutes)
    .venv/bin/python scripts/bench.py --quick    # smaller counts
    .venv/bin/python scripts/bench.py --scale    # the backlog figures (about 5 minutes)
    .venv/bin/python scripts/bench.py --audit    # sm audit over 100,000 messages (~10 minutes)
    .venv/bin/python scripts/bench.py --manifests --rounds 9   # only the manifest cost
    .venv/bin/python scripts/bench.py --senders  # only record, record on 8 threads, record_many,
                                                 # ingest
    .venv/bin/python scripts/bench.py --cpu      # CPU per message for senders, ≥ 5 rounds
    .venv/bin/python scripts/bench.py --serve    # sm serve vs sm ingest, single POSTs
    .venv/bin/python scripts/bench.py --daemon   # sm run vs raw S3 and folder loops; steady rate
    .venv/bin/python scripts/bench.py --encryption  # per-recipient encryption vs plain
    .venv/bin/python scripts/bench.py --budgets  # issue 25's sender budgets, ≥ 5 rounds

Figures (targets from the issues, 2-core machine), each printed beside what it is compared to:
  Spool.record p50/p99      vs a raw WAL + synchronous=FULL insert of the same bytes (≤ 1.3×)
  Spool.record, 8 threads   group commit vs the same threads, one transaction per record (≥ 3×)
  Spool.record_many         messages/s (≥ 8,000/s)
  --cpu                     CPU per message, min/median/max of alternating rounds: record of a
                            short SMS vs a raw durable insert of the same payload (and vs the
                            same write without group commit); record_many by 1,000 vs a raw
                            executemany (msg per CPU-second); encode_document and gzip, now vs
                            before (encode.py before orjson, from git) and vs the stdlib
  --budgets                 issue 25's sender budgets, min/median/max of rounds, each beside
                            its baseline: record of a short SMS, µs of CPU less a raw durable
                            insert's (calls alternating); record on 8 threads / on one thread
                            (msg/s, and CPU per message); record_many of the 2.4 KB email by
                            1,000 and a raw executemany, msg per CPU-second; sm ingest of
                            30,000 lines less the same command on one line, and a raw
                            json + executemany ingest, msg per CPU-second
  sm ingest                 messages/s of a 20,000-line file, its core in process and the whole
                            command (≥ 8,000/s)
  sm run --once, folder     whole command vs the same objects written on the same number of
                            threads with the same fsyncs (≥ 500/s)
  sm run --once, S3 (moto)  whole command at --concurrency 8 vs a boto3 put_object loop on 8
                            threads with the same headers; moto_server in its own process
  sm --json status          wall and CPU time of the whole command
  sm --json find            a recipient query over a 1M-row index, whole command (< 1 s)
  manifest cost             sm run --once -c 8 to a folder, whole command, vs the same spool
                            with the manifest trigger dropped, interleaved rounds (≥ 0.95×)
  sm audit [--deep]         over 10,000 messages sm run archived (--audit: 100,000), whole
                            commands, vs the same checks done in this process without a spool
  --scale                   claim latency (≤ 2 ms), sm run at 1M queued and at 1M stored + 10k
                            vs 10k queued (≥ 0.8×), VmHWM of sm run (flat), sm status at 1M
                            queued (≤ 1 s)

This is a benchmark, not a test: it asserts no figure (only that its fixtures are what they
should be, e.g. a clean archive audits clean) and prints numbers.
"""

from __future__ import annotations

import argparse
import base64
import copy
import gzip
import hashlib
import itertools
import json
import os
import platform
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stored_messages_cli import Spool  # noqa: E402
from stored_messages_cli.archiver import CLAIM_AT_LEAST  # noqa: E402
from stored_messages_cli.config.projects import ProjectDestination  # noqa: E402
from stored_messages_cli.config.writer import save_projects  # noqa: E402
from stored_messages_cli.message import (  # noqa: E402
    encode_document,
    gzip_body,
    gzip_member,
    parse_message,
    reference_canonical_json,
    sha256_hex,
)
from stored_messages_cli.retry import RetryPolicy  # noqa: E402
from stored_messages_cli.spool import lease_owner_name  # noqa: E402
from stored_messages_cli.spool.bodies import payload_of  # noqa: E402
from stored_messages_cli.spool.sqlite.index_writer import SqliteIndex  # noqa: E402
from stored_messages_cli.states import State  # noqa: E402

EMAIL = {
    "message_id": "x", "project_id": 12345, "medium": "email", "message_type": "blast",
    "campaign_id": 1234567, "template_id": 42, "journey_id": None,
    "recipient": {"email": "Ann.Lee@Example.com", "user_id": "u-881"},
    "sent_at": "2026-11-27T17:00:00Z",
    "provider": {"name": "ses", "message_id": "0100018c2f-example"},
    "content": {"from": "News <news@shop.example>", "to": "Ann.Lee@Example.com",
                "subject": "Your order shipped", "preheader": "Track it here",
                "html": "<html><body>" + "<p>Your order is on its way.</p>" * 40
                        + "</body></html>",
                "text": "Your order is on its way.\r\n" * 20,
                "headers": {"List-Unsubscribe": "<mailto:unsub@shop.example>"}},
}


def message(index: int, prefix: str = "m") -> dict[str, Any]:
    """A realistic email (about 2 KB of content) with a unique id and recipient."""
    made = copy.deepcopy(EMAIL)
    made["message_id"] = f"{prefix}-{index}"
    made["recipient"] = {"email": f"user{index}@example.com"}
    return made


def row(label: str, value: str, baseline: str, ratio: str, target: str) -> None:
    print(f"{label:<34} {value:>16} {baseline:>16} {ratio:>8}   {target}")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


# ----------------------------------------------------------------------------- spool


def bench_record(work: Path, count: int) -> None:
    """`Spool.record` against a raw durable insert of the same payload bytes, the two
    alternating call by call (the machine's load moves; both see the same moments). Beside
    them, the spool's own writes for an already-validated message (`sql only`): what is
    left above the raw insert once validation is out (the row, its body, five indexes)."""
    raw_db = work / "raw.db"
    conn = sqlite3.connect(raw_db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, message_id TEXT UNIQUE,"
                 " payload BLOB)")
    payloads = [parse_message(message(i, "raw")).payload() for i in range(count)]
    spool = Spool(work / "record" / "spool.db")
    inputs = [message(i, "rec") for i in range(count)]
    floor = Spool(work / "record-sql" / "spool.db")
    validated = [parse_message(message(i, "sql")) for i in range(count)]
    raw_times, times, sql_times = [], [], []
    for index, payload in enumerate(payloads):
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO messages (message_id, payload) VALUES (?, ?)",
                     (f"raw-{index}", payload))
        conn.execute("COMMIT")
        raw_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        spool.record(inputs[index])
        times.append(time.perf_counter() - started)
        started = time.perf_counter()
        with floor.store.write():
            floor.intake._apply_message(validated[index], floor.clock.now())
        sql_times.append(time.perf_counter() - started)
    conn.close()
    spool.close()
    floor.close()
    for name, fraction in (("p50", 0.5), ("p99", 0.99)):
        ours, raw = percentile(times, fraction), percentile(raw_times, fraction)
        row(f"Spool.record {name} ({count} calls)", f"{ours * 1e3:.2f} ms",
            f"{raw * 1e3:.2f} ms", f"{ours / raw:.2f}x",
            "target ≤ 1.3x (p50)" if name == "p50" else "")
    sql = percentile(sql_times, 0.5)
    raw = percentile(raw_times, 0.5)
    row("  (sql only: validated before, p50)", f"{sql * 1e3:.2f} ms", f"{raw * 1e3:.2f} ms",
        f"{sql / raw:.2f}x", "")
    print("  (the three alternate call by call; raw: one INSERT of the payload bytes into a"
          " table with one unique index, WAL + synchronous=FULL; sql only: the spool's"
          " transaction for a message validated beforehand)")


def bench_record_threads(work: Path, per_thread: int, threads: int = 8, rounds: int = 3
                         ) -> None:
    """`threads` threads calling `Spool.record` (group commit) against the same threads doing
    one transaction per record (what `record` did before: validate, `BEGIN IMMEDIATE`,
    insert, fsync'd COMMIT), same messages, same process, one after the other."""

    def alone(spool: Spool, item: dict[str, Any]) -> str:
        parsed = parse_message(item)
        with spool.store.write():
            return spool.intake._apply_message(parsed, spool.clock.now())

    def grouped(spool: Spool, item: dict[str, Any]) -> str:
        return spool.record(item)

    rates: dict[str, list[float]] = {"one transaction per record": [], "group commit": []}
    per_commit: list[float] = []
    for round_ in range(rounds):  # interleaved: the machine's load moves meanwhile
        for name, call in (("one transaction per record", alone), ("group commit", grouped)):
            spool = Spool(work / f"threads-{round_}-{len(per_commit)}-{name[0]}" / "spool.db")
            commits: list[str] = []

            def trace(sql: str, commits: list[str] = commits) -> None:
                if sql == "COMMIT":
                    commits.append(sql)

            spool.conn.set_trace_callback(trace)
            inputs = [[message(t * per_thread + i, f"thr{round_}") for i in range(per_thread)]
                      for t in range(threads)]

            def work_(batch: list[dict[str, Any]], spool: Spool = spool, call: Any = call
                      ) -> None:
                for item in batch:
                    call(spool, item)

            started = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work_, inputs))
            elapsed = time.perf_counter() - started
            spool.close()
            rates[name].append(threads * per_thread / elapsed)
            if name == "group commit":
                per_commit.append(threads * per_thread / max(1, len(commits)))
    ratios = [g / b for g, b in zip(rates["group commit"], rates["one transaction per record"],
                                    strict=True)]
    ours = statistics.median(rates["group commit"])
    base = statistics.median(rates["one transaction per record"])
    row(f"Spool.record, {threads} threads", f"{ours:,.0f} msg/s", f"{base:,.0f} msg/s",
        f"{statistics.median(ratios):.2f}x", "target ≥ 3x")
    print(f"  (medians of {rounds} interleaved rounds of {threads} x {per_thread}; ratios"
          f" {', '.join(f'{r:.2f}' for r in ratios)}; baseline: the same {threads} threads, one"
          f" fsync'd transaction per record; group commit wrote"
          f" {statistics.median(per_commit):.1f} messages per transaction)")


def bench_record_many(work: Path, count: int, batch: int = 1000) -> None:
    """`Spool.record_many`, and beside it the floors of its writes on this disk: the spool's
    own inserts of messages validated beforehand, and a raw insert of the same payload bytes
    into a one-index table (both WAL + synchronous=FULL, batches of the same size)."""
    spool = Spool(work / "many" / "spool.db")
    inputs = [message(i, "many") for i in range(count)]
    started, cpu_started = time.perf_counter(), time.process_time()
    batch_times = []
    for first in range(0, count, batch):
        batch_started = time.perf_counter()
        spool.record_many(inputs[first:first + batch])
        batch_times.append(time.perf_counter() - batch_started)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    spool.close()
    row(f"Spool.record_many ({count}, by {batch})", f"{count / elapsed:,.0f} msg/s", "-", "-",
        "target ≥ 8,000 msg/s")
    row("  (fastest batch)", f"{batch / min(batch_times):,.0f} msg/s", "-", "-", "")
    # On a busy machine wall time counts other processes' turns; CPU time does not.
    row("  (per CPU-second of this process)", f"{count / cpu:,.0f} msg/s", "-", "-", "")

    validated = [parse_message(message(i, "floor")) for i in range(count)]
    floor = Spool(work / "many-floor" / "spool.db")
    rows = [floor.intake._new_row(item, floor.clock.now())[0] for item in validated]
    started = time.perf_counter()
    for first in range(0, count, batch):
        with floor.store.write():
            floor.store.insert_new(rows[first:first + batch])
    spool_floor = count / (time.perf_counter() - started)
    floor.close()
    raw = sqlite3.connect(work / "many-raw.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, message_id TEXT UNIQUE,"
                " payload BLOB)")
    started = time.perf_counter()
    for first in range(0, count, batch):
        raw.execute("BEGIN IMMEDIATE")
        raw.executemany("INSERT INTO messages (message_id, payload) VALUES (?, ?)",
                        [(item.message_id, item.payload()) for item in
                         validated[first:first + batch]])
        raw.execute("COMMIT")
    raw_floor = count / (time.perf_counter() - started)
    raw.close()
    row("  (its inserts alone, validated before)", f"{spool_floor:,.0f} msg/s",
        f"{raw_floor:,.0f} msg/s", f"{spool_floor / raw_floor:.2f}x", "")
    print("  (inserts alone: the spool's two statements per batch for messages validated"
          " beforehand; baseline: the same payload bytes into a table with one unique index;"
          " both one fsync'd transaction per batch, after record_many in the same run)")


def bench_ingest(work: Path, count: int) -> None:
    """`sm ingest` of a file of `count` JSON lines: its core (`Spool.ingest_lines` over the
    file's lines, in this process) and the whole command (start-up included)."""
    lines = work / "ingest.jsonl"
    with lines.open("w", encoding="utf-8") as out:
        for index in range(count):
            out.write(json.dumps(message(index, "ing")) + "\n")
    spool = Spool(work / "ingest" / "spool.db")
    started, cpu_started = time.perf_counter(), time.process_time()
    with lines.open("rb") as source:
        report = spool.ingest_lines(source)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    spool.close()
    assert report.accepted == count, report.as_dict()
    row(f"Spool.ingest_lines ({count} lines)", f"{count / elapsed:,.0f} msg/s", "-", "-",
        "target ≥ 8,000 msg/s")
    row("  (per CPU-second of this process)", f"{count / cpu:,.0f} msg/s", "-", "-", "")
    home = work / "ingest-home"
    seconds = sm(home, "--json", "ingest", str(lines))
    row(f"sm --json ingest ({count} lines)", f"{count / seconds:,.0f} msg/s", "-", "-",
        "whole command")


# ----------------------------------------------------------------------------- CPU per message

SMS = {"message_id": "x", "project_id": 12345, "medium": "sms", "message_type": "triggered",
       "campaign_id": None, "template_id": 7,
       "recipient": {"phone_number": "+15555550100", "user_id": "u-882"},
       "sent_at": "2026-11-27T17:01:00Z", "provider": {"name": "twilio", "message_id": "SM0001"},
       "content": {"from": "+15555550199", "to": "+15555550100",
                   "body": "Your code is 123456 \U0001f510"}}


def short_sms(index: int, prefix: str) -> dict[str, Any]:
    """A short SMS (a ~370-byte payload) with a unique id and recipient."""
    made = copy.deepcopy(SMS)
    phone = f"+1555{index:07d}"
    made["message_id"] = f"{prefix}-{index}"
    made["recipient"] = {"phone_number": phone, "user_id": f"u-{index}"}
    made["content"]["to"] = phone
    return made


def raw_table(path: Path) -> sqlite3.Connection:
    """The baseline: a table with one unique index, WAL + synchronous=FULL like the spool."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, message_id TEXT UNIQUE,"
                 " payload BLOB)")
    return conn


def cpu_record_round(work: Path, name: str, count: int) -> dict[str, float]:
    """µs of process CPU per call: `Spool.record` of a short SMS; the same write without the
    group machinery (`parse_message`, one transaction, the intake's apply); a raw durable
    insert of the same payload bytes. The three alternate call by call, in each of their six
    orders in turn."""
    spool, alone = Spool(work / f"{name}-rec" / "spool.db"), Spool(work / f"{name}-alone" / "s.db")
    raw = raw_table(work / f"{name}-raw.db")
    payloads = [parse_message(short_sms(i, f"{name}w")).payload() for i in range(count)]
    recorded = [short_sms(i, f"{name}r") for i in range(count)]
    lone = [short_sms(i, f"{name}a") for i in range(count)]

    def record(index: int) -> None:
        spool.record(recorded[index])

    def write_alone(index: int) -> None:
        parsed = parse_message(lone[index])
        with alone.store.write():
            alone.intake._apply_message(parsed, alone.clock.now())

    def insert_raw(index: int) -> None:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO messages (message_id, payload) VALUES (?, ?)",
                    (f"{name}w-{index}", payloads[index]))
        raw.execute("COMMIT")

    # Every order in turn: the call after another's fsync costs more CPU than the one after
    # its own (measured: 5-6 % with a mere rotation, the same record() on both sides).
    orders = list(itertools.permutations([("record", record), ("alone", write_alone),
                                          ("raw", insert_raw)]))
    cpu = dict.fromkeys(("record", "alone", "raw"), 0.0)
    for index in range(count):
        for key, call in orders[index % len(orders)]:
            started = time.process_time()
            call(index)
            cpu[key] += time.process_time() - started
    spool.close()
    alone.close()
    raw.close()
    return {key: value / count * 1e6 for key, value in cpu.items()}


def cpu_record_many_round(work: Path, name: str, batches: int, batch: int = 1000,
                          make: Any = short_sms) -> dict[str, float]:
    """Messages per CPU-second: `Spool.record_many` of `make`'s messages (short SMSs) by
    `batch`, and a raw `executemany` of the same payload bytes by `batch`, one fsync'd
    transaction per batch; the two alternate batch by batch."""
    spool = Spool(work / f"{name}-many" / "spool.db")
    raw = raw_table(work / f"{name}-many-raw.db")
    cpu = {"record_many": 0.0, "raw": 0.0}
    for first in range(0, batches * batch, batch):
        inputs = [make(i, f"{name}m") for i in range(first, first + batch)]
        rows = [(f"{name}x-{i}", parse_message(make(i, f"{name}x")).payload())
                for i in range(first, first + batch)]
        started = time.process_time()
        spool.record_many(inputs)
        cpu["record_many"] += time.process_time() - started
        started = time.process_time()
        raw.execute("BEGIN IMMEDIATE")
        raw.executemany("INSERT INTO messages (message_id, payload) VALUES (?, ?)", rows)
        raw.execute("COMMIT")
        cpu["raw"] += time.process_time() - started
    spool.close()
    raw.close()
    return {key: batches * batch / value for key, value in cpu.items()}


def encoder_before_orjson() -> Any:
    """`encode.py` as it was before orjson (pydantic-core for objects), loaded from git, or
    None outside a git checkout."""
    path = "stored_messages_cli/message/encode.py"
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%H", "-S",
                              "import orjson", "--", path], check=True, capture_output=True,
                             text=True).stdout.strip()
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}^:{path}"], check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("stored_messages_cli.message._encode_before_orjson")
    module.__package__ = "stored_messages_cli.message"
    exec(compile(source, f"{rev[:10]}^:{path}", "exec"), module.__dict__)
    return module


def standard_encode(document: dict[str, Any]) -> tuple[bytes, str]:
    """`encode_document` by the standard library's encoder alone (the reference)."""
    content = {k: v for k, v in document.items()
               if k not in ("sent_at", "provider", "schema_version")}
    return (reference_canonical_json({**document, "schema_version": 1}),
            sha256_hex(reference_canonical_json(content)))


def cpu_encode_round(coders: dict[str, Any], documents: dict[str, Any], calls: int
                     ) -> dict[str, float]:
    """µs of CPU per call of each coder on each document, the coders alternating."""
    result = {}
    for doc_name, document in documents.items():
        for name, coder in coders.items():
            started = time.process_time()
            for _ in range(calls):
                coder(document)
            result[f"{name}, {doc_name}"] = (time.process_time() - started) / calls * 1e6
    return result


def stats_row(label: str, samples: list[float], unit: str, digits: int = 1) -> None:
    print(f"  {label:<52} {min(samples):>9,.{digits}f} {statistics.median(samples):>9,.{digits}f}"
          f" {max(samples):>9,.{digits}f}  {unit}")


def bench_cpu(work: Path, rounds: int, scale: float) -> None:
    """CPU per message for senders, each figure beside its baseline, `rounds` alternating
    rounds in this one process; min / median / max of the rounds."""
    before = encoder_before_orjson()
    coders = {"now (orjson)": encode_document, "standard library": standard_encode}
    if before is not None:
        coders["before (pydantic-core)"] = before.encode_document
    documents = {"short SMS": parse_message(short_sms(1, "doc")).document,
                 "email 2.4 KB": parse_message(message(1, "doc")).document}
    payloads = {name: encode_document(doc)[0] for name, doc in documents.items()}
    for document in documents.values():  # the same bytes; every import done before timing
        assert len({coder(document) for coder in coders.values()}) == 1
    zippers = {"gzip_member": gzip_member,
               "gzip.compress": lambda data: gzip.compress(data, compresslevel=6, mtime=0)}
    cpu_record_round(work, "warm", 20)
    samples: dict[str, list[float]] = {}
    for round_ in range(rounds):
        figures = {f"record: {k}": v for k, v in cpu_record_round(
            work, f"r{round_}", int(300 * scale)).items()}
        figures.update({f"record_many: {k}": v for k, v in cpu_record_many_round(
            work, f"r{round_}", max(1, int(3 * scale))).items()})
        figures.update(cpu_encode_round(coders, documents, int(5000 * scale)))
        figures.update(cpu_encode_round(zippers, payloads, int(5000 * scale)))
        for key, value in figures.items():
            samples.setdefault(key, []).append(value)
        ratios = {"record / raw": figures["record: record"] / figures["record: raw"],
                  "record / alone": figures["record: record"] / figures["record: alone"],
                  "record_many / raw (msg per CPU-s)":
                      figures["record_many: record_many"] / figures["record_many: raw"]}
        for doc_name in documents:
            if before is not None:
                ratios[f"encode now / before, {doc_name}"] = (
                    figures[f"now (orjson), {doc_name}"]
                    / figures[f"before (pydantic-core), {doc_name}"])
            ratios[f"gzip_member / gzip.compress, {doc_name}"] = (
                figures[f"gzip_member, {doc_name}"] / figures[f"gzip.compress, {doc_name}"])
        for key, value in ratios.items():
            samples.setdefault(key, []).append(value)
    print(f"{'CPU per message, ' + str(rounds) + ' rounds':<54} {'min':>9} {'median':>9}"
          f" {'max':>9}")
    for key in ("record: record", "record: alone", "record: raw"):
        stats_row(key, samples[key], "µs CPU per call")
    stats_row("record / raw", samples["record / raw"], "x", 2)
    stats_row("record / alone", samples["record / alone"], "x", 2)
    for key in ("record_many: record_many", "record_many: raw"):
        stats_row(key + " (by 1,000)", samples[key], "msg per CPU-second", 0)
    stats_row("record_many / raw", samples["record_many / raw (msg per CPU-s)"], "x", 2)
    for key, values in samples.items():
        if "," in key:
            stats_row(key, values, "x" if " / " in key else "µs CPU per call", 2)
    print("  (record, alone and raw alternate call by call, in their six orders in turn, each"
          " round in fresh files: alone ="
          " parse_message, one transaction, the intake's write, no group machinery; raw = one"
          " INSERT of the same payload bytes into a one-index table, WAL + synchronous=FULL,"
          " BEGIN IMMEDIATE/COMMIT; record_many and raw alternate batch by batch; encoders:"
          " encode_document (payload + content hash); gzip of the payload)")


# ----------------------------------------------------------------------------- sender budgets


def threads_round(work: Path, name: str, per_thread: int, *, one_first: bool,
                  threads: int = 8) -> dict[str, float]:
    """`Spool.record` on one thread against `threads` threads (group commit), the same number
    of messages each, in fresh spools: messages per second (wall) and µs of process CPU per
    message of each; the one thread first when `one_first` (it alternates by round)."""
    count = threads * per_thread
    result: dict[str, float] = {}

    def one_thread() -> None:
        spool = Spool(work / f"{name}-one" / "spool.db")
        inputs = [short_sms(i, f"{name}o") for i in range(count)]
        started, cpu = time.perf_counter(), time.process_time()
        for item in inputs:
            spool.record(item)
        result["one thread: msg/s"] = count / (time.perf_counter() - started)
        result["one thread: µs CPU"] = (time.process_time() - cpu) / count * 1e6
        spool.close()

    def many_threads() -> None:
        spool = Spool(work / f"{name}-many" / "spool.db")
        inputs = [[short_sms(t * per_thread + i, f"{name}t") for i in range(per_thread)]
                  for t in range(threads)]

        def work_(batch: list[dict[str, Any]]) -> None:
            for item in batch:
                spool.record(item)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda _: None, range(threads)))  # the threads exist before timing
            started, cpu = time.perf_counter(), time.process_time()
            list(pool.map(work_, inputs))
            result[f"{threads} threads: msg/s"] = count / (time.perf_counter() - started)
            result[f"{threads} threads: µs CPU"] = (time.process_time() - cpu) / count * 1e6
        spool.close()

    def groups_of_threads() -> None:
        # the transactions 8 threads' group commit makes at best (groups of `threads`), on one
        # thread: the floor of the 8 threads' CPU a message, without any thread woken
        spool = Spool(work / f"{name}-groups" / "spool.db")
        inputs = [short_sms(i, f"{name}g") for i in range(count)]
        cpu = time.process_time()
        for first in range(0, count, threads):
            spool.record_many(inputs[first:first + threads])
        result[f"by {threads} on one thread: µs CPU"] = (time.process_time() - cpu) / count * 1e6
        spool.close()

    for run in (one_thread, many_threads) if one_first else (many_threads, one_thread):
        run()
    groups_of_threads()
    return result


def ingest_command_cpu(home: Path, path: Path) -> float:
    """Process CPU (user + system) of the whole command `sm --json ingest PATH` in `home`."""
    before = _cpu_of_children()
    sm(home, "--json", "ingest", str(path))
    return _cpu_of_children() - before


_RAW_INGEST = """
import json, sqlite3, sys
conn = sqlite3.connect(sys.argv[2], isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=FULL")
conn.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, message_id TEXT UNIQUE,"
             " payload BLOB)")
batch = []
def commit():
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO messages (message_id, payload) VALUES (?, ?)", batch)
    conn.execute("COMMIT")
    batch.clear()
with open(sys.argv[1], "rb") as lines:
    for line in lines:
        batch.append((json.loads(line)["message_id"], line))
        if len(batch) == 500:
            commit()
if batch:
    commit()
"""


def raw_ingest_cpu(path: Path, database: Path) -> float:
    """Process CPU of a plain Python process that reads the same file, decodes each line
    with `json` and inserts its bytes by 500 per fsync'd transaction (one unique index)."""
    before = _cpu_of_children()
    subprocess.run([sys.executable, "-c", _RAW_INGEST, str(path), str(database)], check=True)
    return _cpu_of_children() - before


def ingest_round(work: Path, name: str, lines: Path, one_line: Path, count: int
                 ) -> dict[str, float]:
    """`sm --json ingest` of `count` lines less the same command of one line (its start-up:
    interpreter, imports, spool creation, the first validation), in fresh homes; beside it
    the raw ingest of the same file less the raw script of one line. Messages per
    CPU-second of each."""
    startup = ingest_command_cpu(work / f"{name}-start", one_line)
    whole = ingest_command_cpu(work / f"{name}-ingest", lines)
    raw_startup = raw_ingest_cpu(one_line, work / f"{name}-ingest-raw-1.db")
    raw_whole = raw_ingest_cpu(lines, work / f"{name}-ingest-raw.db")
    return {"sm ingest: msg per CPU-s": (count - 1) / (whole - startup),
            "sm ingest: start-up CPU s": startup,
            "raw ingest: msg per CPU-s": (count - 1) / (raw_whole - raw_startup)}


def bench_budgets(work: Path, rounds: int, scale: float) -> None:
    """Issue 25's sender budgets, each beside its baseline in the same run; `rounds` rounds
    (fresh files each), min / median / max. CPU figures: process CPU, so the machine's
    other tenants move them far less than wall time."""
    from bench_floors import floor_figures, floors_round  # scripts/bench_floors.py

    ingest_count = int(30_000 * scale)
    lines, one_line = work / "budget-ingest.jsonl", work / "budget-one.jsonl"
    with lines.open("w", encoding="utf-8") as out:
        for index in range(ingest_count):
            out.write(json.dumps(message(index, "bud")) + "\n")
    one_line.write_text(json.dumps(message(0, "one")) + "\n", encoding="utf-8")
    cpu_record_round(work, "budget-warm", 20)
    samples: dict[str, list[float]] = {}
    for round_ in range(rounds):
        figures = {f"record: {k}": v for k, v in cpu_record_round(
            work, f"b{round_}", int(300 * scale)).items()}
        figures["record: record - raw"] = figures["record: record"] - figures["record: raw"]
        figures.update(threads_round(work, f"b{round_}", int(100 * scale),
                                     one_first=round_ % 2 == 0))
        figures["8 threads / one thread"] = (figures["8 threads: msg/s"]
                                             / figures["one thread: msg/s"])
        figures["one thread / 8 threads, CPU"] = (figures["one thread: µs CPU"]
                                                  / figures["8 threads: µs CPU"])
        figures["one thread / by 8, CPU"] = (figures["one thread: µs CPU"]
                                             / figures["by 8 on one thread: µs CPU"])
        figures.update({f"record_many email: {k}": v for k, v in cpu_record_many_round(
            work, f"b{round_}e", max(1, int(5 * scale)), make=message).items()})
        figures.update(ingest_round(work, f"b{round_}", lines, one_line, ingest_count))
        figures.update(floors_round(message, short_sms, int(1000 * scale), round_,
                                    f"b{round_}f"))
        figures.update(floor_figures(figures))
        for key, value in figures.items():
            samples.setdefault(key, []).append(value)
        _load_row()
    print(f"{'sender budgets (issue 25), ' + str(rounds) + ' rounds':<54} {'min':>9}"
          f" {'median':>9} {'max':>9}")
    table = [
        ("record: record", "µs CPU per call of Spool.record, a short SMS", 1),
        ("record: raw", "µs CPU per call of a raw durable insert (baseline)", 1),
        ("record: alone", "µs CPU per call, the same write, no group commit", 1),
        ("record: record - raw", "record minus raw, µs CPU (target ≤ 30)", 1),
        ("one thread: msg/s", "record on one thread, msg/s (baseline)", 0),
        ("8 threads: msg/s", "record on 8 threads, msg/s", 0),
        ("8 threads / one thread", "8 threads / one thread (target ≥ 3x every round)", 2),
        ("one thread: µs CPU", "one thread, µs CPU per message", 1),
        ("8 threads: µs CPU", "8 threads, µs CPU per message", 1),
        ("one thread / 8 threads, CPU", "CPU per message, one thread / 8 threads", 2),
        ("by 8 on one thread: µs CPU", "floor: record_many by 8 on one thread, µs CPU", 1),
        ("one thread / by 8, CPU", "floor: best 8 threads / one, CPU a message (≥ 3?)", 2),
        ("record_many email: record_many", "record_many email by 1,000, msg per CPU-s"
         " (target ≥ 30k)", 0),
        ("record_many email: raw", "raw executemany of the same bytes, msg per CPU-s", 0),
        ("sm ingest: msg per CPU-s", f"sm ingest {ingest_count:,} lines less start-up, msg"
         " per CPU-s (target ≥ 25k)", 0),
        ("sm ingest: start-up CPU s", "sm ingest of one line (its start-up), CPU s", 3),
        ("raw ingest: msg per CPU-s", "raw json + executemany ingest, msg per CPU-s", 0),
        ("sms: schema", "steps: the SMS's schema check, µs CPU", 1),
        ("sms: E.164", "steps: its phone number in E.164, µs CPU", 1),
        ("sms: recipient hashes", "steps: its recipient hashes (E.164 included), µs", 1),
        ("sms: encode + hashes", "steps: its payload, content hash and SHA-256, µs", 1),
        ("sms: deflate", "steps: its level-6 gzip object, µs CPU", 1),
        ("email: schema", "steps: the email's schema check, µs CPU", 1),
        ("email: recipient hashes", "steps: its recipient hashes, µs CPU", 1),
        ("email: encode + hashes", "steps: its payload, content hash and SHA-256, µs", 1),
        ("email: deflate", "steps: its level-6 gzip object, µs CPU", 1),
        ("email: strict decode", "steps: its JSON line, strictly decoded, µs CPU", 1),
        ("floor: record above raw", "floor: record less raw, the SMS's steps alone (≤ 30?)", 1),
        ("floor: record_many", "floor: record_many, raw insert + the email's steps,"
         " msg per CPU-s (≥ 30k?)", 0),
        ("floor: sm ingest", "floor: sm ingest, raw ingest + the email's steps,"
         " msg per CPU-s (≥ 25k?)", 0),
    ]
    for key, label, digits in table:
        stats_row(label, samples[key], "", digits)
    print("  (record, alone and raw alternate call by call in their six orders; the 8-thread"
          " and one-thread runs record as many short SMSs each, their order alternating by"
          " round; record_many and raw alternate batch by batch; sm ingest is the whole"
          " command, its CPU from getrusage(RUSAGE_CHILDREN), less the same command on a"
          " one-line file in a fresh home; raw ingest: a plain Python process, json.loads"
          " per line, 500 rows per fsync'd transaction, less its run on the one-line file)")
    print("  (steps: what a message cannot skip, each over 1,000 distinct messages in the same"
          " round (scripts/bench_floors.py); a floor is the best a figure could be if"
          " everything else the code does cost nothing)")


# ----------------------------------------------------------------------------- sm run


def sm_command() -> list[str]:
    """The installed `sm` console script of this checkout, or (a worktree without its own
    .venv) the same entry point run by this interpreter on this checkout's code."""
    script = ROOT / ".venv" / "bin" / "sm"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c",
            "import sys; from stored_messages_cli.cli.app import main; sys.exit(main())"]


def sm(home: Path, *args: str, env: dict[str, str] | None = None) -> float:
    """Run the real `sm` console script; returns the wall time of the whole command."""
    started = time.perf_counter()
    subprocess.run([*sm_command(), "-q", *args], check=True,
                   env={**os.environ, "SM_HOME": str(home), "PYTHONPATH": str(ROOT),
                        **(env or {})},
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def fill(home: Path, url: str, count: int, prefix: str, **saved: Any
         ) -> list[tuple[str, bytes]]:
    """Record `count` messages in the spool of `home`; their (key, payload) pairs."""
    save_projects(home / "config.toml", {"12345": ProjectDestination(url=url, **saved)})
    inputs = [message(i, prefix) for i in range(count)]
    with Spool.open(home=home) as spool:
        spool.record_many(inputs)
    return [(m.key, m.payload()) for m in map(parse_message, inputs)]


def raw_file_writes(root: Path, objects: list[tuple[str, bytes]], threads: int) -> float:
    """The same objects written the way the folder destination writes them, on the same
    number of threads: gzip, a temp file in `.sm-tmp/` (fsync), every new folder made and
    fsynced into its parent, a hard link into place, the temp file removed, the object's
    folder fsynced. No spool, no checks: the floor of `sm run` to a folder."""
    root.mkdir(mode=0o700)
    tmp_dir = root / ".sm-tmp"
    tmp_dir.mkdir(mode=0o700)

    def write(index: int) -> None:
        key, payload = objects[index]
        folder = root
        for name in key.split("/")[:-1]:
            folder = folder / name
            try:
                folder.mkdir(mode=0o700)
            except FileExistsError:
                continue
            fd = os.open(folder.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        tmp = tmp_dir / f"{index}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "xb") as fh:
            fh.write(gzip_body(payload))
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, folder / key.rsplit("/", 1)[1])
        tmp.unlink()
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, range(len(objects))))
    return time.perf_counter() - started


def bench_run_folder(work: Path, count: int, threads: int = 8) -> None:
    home, archive = work / "run-home", work / "run-archive"
    archive.mkdir(mode=0o700)
    objects = fill(home, f"file://{archive}/", count, "run")
    elapsed = sm(home, "run", "--once", "--concurrency", str(threads))
    stored = sum(1 for _ in archive.rglob("*.json.gz"))
    raw = raw_file_writes(work / "raw-archive", objects, threads)
    row(f"sm run --once -c {threads}, folder ({stored})", f"{count / elapsed:,.0f} msg/s",
        f"{count / raw:,.0f} msg/s", f"{raw / elapsed:.2f}x", "target ≥ 500 msg/s")
    print(f"  (baseline: the same {count:,} objects written on {threads} threads with the"
          " same fsyncs as the folder destination — temp file, each new folder, the object's"
          " folder — in this process; sm: the whole command, start-up and spool included)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bench_run_s3(work: Path, count: int, concurrency: int = 8) -> None:
    """`sm run` against moto's S3 server, beside a raw boto3 loop doing the same PUTs.

    moto runs in a process of its own (`moto_server`), so neither side shares its GIL: the
    raw loop runs in this process, `sm` in its own.
    """
    import boto3
    from botocore.config import Config

    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(env)
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              config=Config(max_pool_connections=concurrency))
        client.create_bucket(Bucket="raw")
        client.create_bucket(Bucket="sm-archive")
        home = work / "s3-home"
        objects = fill(home, "s3://sm-archive/archive/", count, "s3", endpoint_url=endpoint,
                       allow_insecure_endpoint=True)

        def put(index: int) -> None:
            # What the S3 destination sends: gzip here, create-only, checksum, metadata.
            key, payload = objects[index]
            body = gzip_body(payload)
            client.put_object(
                Bucket="raw", Key=f"archive/{key}", Body=body, IfNoneMatch="*",
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode(),
                ContentType="application/gzip",
                Metadata={"sm-payload-sha256": hashlib.sha256(payload).hexdigest()})

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(put, range(count)))
        raw = time.perf_counter() - started
        elapsed = sm(home, "run", "--once", "--concurrency", str(concurrency), env=env)
        listed = sum(1 for page in client.get_paginator("list_objects_v2").paginate(
            Bucket="sm-archive", Prefix="archive/") for item in page.get("Contents", [])
            if "/_sm/" not in item["Key"])  # messages, not manifests
    finally:
        server.terminate()
        server.wait()
    row(f"sm run --once -c {concurrency}, S3 ({listed})", f"{count / elapsed:,.0f} msg/s",
        f"{count / raw:,.0f} msg/s", f"{raw / elapsed:.2f}x", "target ≥ 0.8x")
    print(f"  (baseline: boto3 put_object of the same objects on {concurrency} threads, with"
          " sm's headers — IfNoneMatch, ChecksumSHA256, metadata — gzip in the thread, in this"
          " process; moto_server in a third process; sm: the whole command)")


def bench_status(work: Path, runs: int = 7) -> None:
    home = work / "run-home"  # the spool the folder run left: thousands of stored rows
    times, cpu = status_samples(home, runs)
    row(f"sm --json status (median of {runs})", f"{statistics.median(times):.3f} s",
        f"min {min(times):.3f} s", "-", "")
    row("  (CPU time of the command)", f"{statistics.median(cpu):.3f} s", "-", "-",
        "target ≤ 0.45 s CPU")
    version = [_time([str(ROOT / ".venv" / "bin" / "sm"), "--version"], quiet=True)
               for _ in range(runs)]
    row(f"sm --version (median of {runs})", f"{statistics.median(version):.3f} s",
        f"min {min(version):.3f} s", "-", "target ≤ 0.15 s")
    startup = [_time([sys.executable, "-c", "pass"]) for _ in range(runs)]
    row("  (python -c pass, for scale)", f"{statistics.median(startup):.3f} s", "-", "-", "")


def bench_find(work: Path, count: int, runs: int = 5) -> None:
    """`sm --json find --recipient` over an index of `count` stored messages (5 per person)."""
    home = work / "find-home"
    spool = Spool(home / "spool.db")
    people = max(1, count // 5)
    spool.conn.execute("BEGIN IMMEDIATE")  # autocommit connection: one explicit transaction
    where = SqliteIndex(spool.conn).location_id("file:///bench/", "")
    rows = ((str(i % 3), f"f-{i}", "email", "blast", str(i % 500),
             hashlib.sha256(f"user{i % people}@example.com".encode()).digest(),
             f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z", f"key-{i}", bytes(32),
             None, where, 0.0) for i in range(count))
    spool.conn.executemany(  # the lean index as a settle writes it (spool/archive.py)
        "INSERT INTO archive_entries (project_id, message_id, medium, message_type,"
        " campaign_id, recipient_hash, sent_at, key, payload_sha256, version_id, location,"
        " stored_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    spool.conn.execute("COMMIT")
    spool.close()
    times = [sm(home, "--json", "find", "--recipient", " User7@Example.com ")
             for _ in range(runs)]
    row(f"sm --json find --recipient ({count:,})", f"{statistics.median(times):.3f} s",
        f"min {min(times):.3f} s", "-", "target well under 1 s")

# ----------------------------------------------------------------------------- manifests

MANIFEST_TRIGGER = "manifest_entry_on_settle"  # spool/manifests.py: the entry of each outcome


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _user_cpu_of_children() -> float:
    """User CPU only: the system time of a run is mostly its fsyncs, whose cost here moves
    with the host's other disk writers."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime


def spool_copy(template: Path, home: Path, archive: Path, *, manifests: bool) -> None:
    """A home whose spool is a page-for-page copy of `template` (SQLite's backup API) and whose
    project archives to `archive`. Without `manifests` the copy's manifest trigger is dropped,
    as a spool from before manifests settles: no outcome adds an entry, so nothing is
    completed, sealed or written (the hooks still run and find nothing)."""
    archive.mkdir(mode=0o700)
    save_projects(home / "config.toml",
                  {SCALE_PROJECT: ProjectDestination(url=f"file://{archive}/")})
    Spool(home / "spool.db").close()  # created as sm creates it: private, WAL
    source, target = sqlite3.connect(template), sqlite3.connect(home / "spool.db")
    source.backup(target)
    if not manifests:
        target.execute(f"DROP TRIGGER {MANIFEST_TRIGGER}")
        target.commit()
    target.close()
    source.close()


def _archive_counts(archive: Path) -> tuple[int, int]:
    """Message objects and manifest segments in a folder archive."""
    messages = segments = 0
    for path in archive.rglob("*.gz"):
        if path.name.endswith(".jsonl.gz"):
            segments += 1
        else:
            messages += 1
    return messages, segments


def bench_manifest_cost(work: Path, count: int, rounds: int, threads: int = 8,
                        log_env: dict[str, str] | None = None,
                        baseline_env: dict[str, str] | None = None) -> None:
    """`sm run --once -c 8` to a folder on two copies of one filled spool: as sm runs it
    (every outcome's manifest entry in the settling transaction, the entries completed, the
    segment sealed when the run stops and written to the folder, its checkpoint signed and
    written) and the same spool with the manifest trigger dropped. Rounds interleaved, the
    order alternating; median ratio. `log_env` is the environment of the first (e.g. a seal
    every 500 outcomes, each checkpoint copied and time-stamped: `bench_log_cost`); with
    `baseline_env` the baseline keeps its manifests too and runs in that environment (the
    same seals without anchors)."""
    template_home = work / "mf-template"
    fill(template_home, f"file://{work / 'mf-unused'}/", count, "mf")
    template = template_home / "spool.db"
    names = ("manifests", "no manifests")
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    user: dict[str, list[float]] = {name: [] for name in names}
    counts: dict[str, tuple[int, int]] = {}
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            home, archive = work / f"mf-{round_}-{name[0]}", work / f"mf-archive-{round_}-{name[0]}"
            spool_copy(template, home, archive,
                       manifests=name == "manifests" or baseline_env is not None)
            os.sync()  # the copy's pages are on disk before the clock starts, as in a real spool
            cpu_before, user_before = _cpu_of_children(), _user_cpu_of_children()
            elapsed = sm(home, "run", "--once", "--concurrency", str(threads),
                         env=log_env if name == "manifests" else baseline_env)
            cpu[name].append(_cpu_of_children() - cpu_before)
            user[name].append(_user_cpu_of_children() - user_before)
            rates[name].append(count / elapsed)
            counts[name] = _archive_counts(archive)
    on, off = rates["manifests"], rates["no manifests"]
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    cpu_ratios = [b / a for a, b in zip(cpu["manifests"], cpu["no manifests"], strict=True)]
    user_ratios = [b / a for a, b in zip(user["manifests"], user["no manifests"], strict=True)]
    stored, segments = counts["manifests"]
    row(f"sm run, manifest cost ({stored})", f"{statistics.median(on):,.0f} msg/s",
        f"{statistics.median(off):,.0f} msg/s", f"{statistics.median(ratios):.2f}x",
        "target ≥ 0.95x (cost ≤ 5%)")
    on_cpu, off_cpu = statistics.median(cpu["manifests"]), statistics.median(cpu["no manifests"])
    row("  (CPU time of the command)", f"{on_cpu:.2f} s", f"{off_cpu:.2f} s",
        f"{statistics.median(cpu_ratios):.2f}x", "")
    row("  (user CPU time of the command)", f"{statistics.median(user['manifests']):.2f} s",
        f"{statistics.median(user['no manifests']):.2f} s",
        f"{statistics.median(user_ratios):.2f}x", "")
    print(f"  (medians of {rounds} interleaved rounds, order alternating; ratios"
          f" {', '.join(f'{r:.2f}' for r in ratios)}, of CPU time"
          f" {', '.join(f'{r:.2f}' for r in cpu_ratios)}, of user CPU time"
          f" {', '.join(f'{r:.2f}' for r in user_ratios)}; both: sm run --once -c {threads} to a"
          f" folder, whole command, on copies of one spool of {count:,} queued messages;"
          f" sm wrote {stored:,} objects and {segments} segment(s); baseline: "
          + ("the same manifests, run with " + ", ".join(f"{k}={v}" for k, v in
                                                         baseline_env.items())
             if baseline_env is not None else "the copy's manifest trigger dropped, so no"
             " entry is added, completed, sealed or written")
          + f" ({counts['no manifests'][0]:,} objects, {counts['no manifests'][1]} segments))")


def bench_log_cost(work: Path, count: int, rounds: int) -> None:
    """The signed log's cost (SPEC 9.1: ≥ 0.95x of it off): `sm run --once -c 8` sealing every
    500 outcomes, each seal's checkpoint signed, written, copied to a second folder and
    time-stamped by a loopback `openssl ts` authority, against the same spool with no
    manifests at all (an upper bound of the log's cost: sealing and writing segments are in it
    too)."""
    sys.path.insert(0, str(ROOT))
    from tests.support.tsa import TimeStampAuthority  # the test suite's real openssl TSA

    folder = work / "tsa"
    folder.mkdir()
    authority = TimeStampAuthority(folder)
    authority.start()
    copies = work / "checkpoint-copies"
    copies.mkdir(mode=0o700)
    anchored = {"SM_MANIFEST_MAX_ENTRIES": "500",
                "SM_CHECKPOINT_COPIES": json.dumps([f"file://{copies}/"]),
                "SM_TIMESTAMP_AUTHORITIES": json.dumps([authority.url])}
    try:
        (work / "anchors").mkdir()
        (work / "whole").mkdir()
        print("  anchoring: the same seals, checkpoints signed, with and without their anchors")
        bench_manifest_cost(work / "anchors", count, rounds, log_env=anchored,
                            baseline_env={"SM_MANIFEST_MAX_ENTRIES": "500"})
        print("  the whole log: seals, signatures and anchors, against no manifests at all")
        bench_manifest_cost(work / "whole", count, rounds, log_env=anchored)
    finally:
        authority.stop()
    print(f"  (signed log: {len(list(copies.rglob('*.txt')))} checkpoint copies and"
          f" {len(list(copies.rglob('*.tsr')))} time-stamps made across the rounds)")


def _fill_batches(home: Path, url: str, count: int, prefix: str, batch: int = 5000) -> None:
    """Record `count` messages in the spool of `home`, a batch at a time."""
    save_projects(home / "config.toml", {SCALE_PROJECT: ProjectDestination(url=url)})
    with Spool.open(home=home) as spool:
        for first in range(0, count, batch):
            spool.record_many([message(i, prefix)
                               for i in range(first, min(count, first + batch))])


def sm_json(home: Path, *args: str) -> tuple[float, float, dict[str, Any]]:
    """Run `sm --json ARGS`: wall time, CPU time and the parsed document."""
    cpu_before, started = _cpu_of_children(), time.perf_counter()
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "sm"), "--json", *args],
                          env={**os.environ, "SM_HOME": str(home)}, capture_output=True,
                          check=False)
    elapsed, cpu = time.perf_counter() - started, _cpu_of_children() - cpu_before
    if done.returncode != 0:
        raise RuntimeError(f"sm {' '.join(args)} exited {done.returncode}:"
                           f" {done.stderr.decode()[-2000:]}{done.stdout.decode()[:2000]}")
    return elapsed, cpu, json.loads(done.stdout)


def raw_audit(archive: Path, project_id: str, *, deep: bool, threads: int = 8
              ) -> tuple[float, float]:
    """The floor of `sm audit` on a folder, in this process: walk the project's message
    folders and lstat every file (as the folder destination lists), read and parse every
    manifest segment (gunzip, one JSON document a line, its SHA-256), and find every stored
    entry in the listing with its size. With `deep`, also read every object on `threads`
    threads and hash its bytes and its gunzipped payload. No spool, no findings kept.
    Returns the wall time and the CPU time (all threads of this process)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    listing: dict[str, int] = {}
    for medium in ("email", "sms", "push"):
        for folder, _dirs, names in os.walk(archive / medium / project_id):
            for name in names:
                path = Path(folder) / name
                listing[path.relative_to(archive).as_posix()] = path.lstat().st_size
    entries: list[dict[str, Any]] = []
    for path in sorted((archive / "_sm" / "manifests" / project_id).rglob("*.jsonl.gz")):
        body = path.read_bytes()
        hashlib.sha256(body).hexdigest()
        entries += [json.loads(line) for line in gzip.decompress(body).splitlines()[1:]]
    present = [e for e in entries
               if e["outcome"] == "stored" and listing.get(e["key"]) == e["size"]]
    assert len(present) == len(listing), (len(present), len(listing))
    if deep:
        def check(entry: dict[str, Any]) -> bool:
            body = (archive / entry["key"]).read_bytes()
            return (hashlib.sha256(body).hexdigest() == entry["object_sha256"] and
                    hashlib.sha256(gzip.decompress(body)).hexdigest() == entry["payload_sha256"])

        with ThreadPoolExecutor(threads) as pool:
            assert all(pool.map(check, present))
    return time.perf_counter() - started, time.process_time() - cpu_started


def bench_audit(work: Path, count: int, threads: int = 8) -> None:
    """`sm audit` and `sm audit --deep` over `count` messages that `sm run --once -c 8`
    archived to a folder (real objects, real manifests), each a whole command, beside the
    floor of the same checks done in this process."""
    home, archive = work / f"audit-home-{count}", work / f"audit-archive-{count}"
    archive.mkdir(mode=0o700)
    started = time.perf_counter()
    _fill_batches(home, f"file://{archive}/", count, "aud")
    filled = time.perf_counter() - started
    made = sm(home, "run", "--once", "--concurrency", str(threads))
    stored, segments = _archive_counts(archive)
    print(f"  (an archive of {stored:,} messages and {segments} manifest segment(s): recorded"
          f" in {filled:.0f} s, archived by sm run --once -c {threads} in {made:.0f} s,"
          f" {count / made:,.0f} msg/s)", flush=True)
    os.sync()
    _load_row()
    for deep in (False, True):
        args = ("audit", "--deep") if deep else ("audit",)
        elapsed, cpu, document = sm_json(home, *args)
        (project,) = document["projects"]
        assert document["ok"] and project["stored"] == count, document
        raw, raw_cpu = raw_audit(archive, SCALE_PROJECT, deep=deep)
        row(f"sm {' '.join(args)} ({project['stored']:,})", f"{elapsed:.1f} s", f"{raw:.1f} s",
            f"{raw / elapsed:.2f}x", "-")
        row("  (messages per second)", f"{count / elapsed:,.0f} msg/s",
            f"{count / raw:,.0f} msg/s", "-", "")
        row("  (CPU time)", f"{cpu:.1f} s", f"{raw_cpu:.1f} s", "-", "")
    print(f"  (sm: whole commands with --json, each found {count:,} stored entries in"
          f" {segments} segment(s) and no finding; baseline: the same listing, manifests and"
          f" (--deep) object hashes read in this process with no spool, {threads} threads for"
          " --deep; the archive's files were in the page cache)")


# ----------------------------------------------------------------------------- --scale

SCALE_PROJECT = "12345"
SCALE_RUN = 10_000  # messages each `sm run` is timed over, at every size
SCALE_ROUNDS = 2  # runs at each size, interleaved (the machine's load changes meanwhile)


def _template(spool: Spool) -> dict[str, Any]:
    """One real recorded row (through `Spool.record`), as columns, with its body as
    `payload`; removed again."""
    spool.record(message(0, "tmpl"))
    cursor = spool.conn.execute("SELECT m.*, b.payload FROM messages m JOIN message_bodies b"
                                " ON b.id = m.id WHERE message_id = 'tmpl-0'")
    names = [d[0] for d in cursor.description]
    row_ = dict(zip(names, cursor.fetchone(), strict=True))
    spool.conn.execute("DELETE FROM messages WHERE id = ?", (row_.pop("id"),))
    return row_


def fill_scale(path: Path, *, stored: int, queued: int, archive_url: str, first: int = 0
               ) -> float:
    """A spool with `stored` archived rows (history) then `queued` rows, by direct SQL in one
    transaction through the real schema (`Spool(path)` runs the migrations first). Each row
    is the real recorded row with its own message id and recipient: payload, key, hashes and
    times made as ingest makes them. Queued rows have their body in `message_bodies` (its
    gzip object, as ingest keeps it); stored
    rows have none and their archive index row (the lean layout: binary hashes, the key
    rebuilt from the layout), as a settle leaves them. Rows are numbered from `first` (to add
    more to a spool filled before). Returns the seconds it took."""
    started = time.perf_counter()
    spool = Spool(path)
    tmpl = _template(spool)
    payload = payload_of(bytes(tmpl.pop("payload")))  # kept as its gzip object
    assert payload.count(b"tmpl-0") == 1 and payload.count(b"user0@example.com") == 1
    head, rest = payload.split(b"tmpl-0")
    middle, tail = rest.split(b"user0@example.com") if b"user0@" in rest else (None, None)
    assert middle is not None and tail is not None, "message_id precedes recipient in payload"
    columns = ["id", *tmpl]
    tmpl["id"] = None
    insert = (f"INSERT INTO messages ({', '.join(columns)})"
              f" VALUES ({', '.join('?' * len(columns))})")
    base = time.time() - 3600.0 - (first + stored + queued) * 0.001  # past, in id order
    prefix = "archive/"

    at_ = {name: index for index, name in enumerate(columns)}
    template_values = [tmpl[c] for c in columns]
    next_id = (spool.conn.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0]
               + 1 - first)
    bodies: list[tuple[int, bytes]] = []
    entries: list[tuple[Any, ...]] = []
    where = SqliteIndex(spool.conn).location_id(archive_url, prefix)

    def rows(first: int, count: int, state: str) -> Iterator[list[Any]]:
        stored_ = state == State.STORED
        bodies.clear()
        entries.clear()
        for n in range(first, first + count):
            mid, email = f"s-{n}", f"user{n}@example.com"
            rhash = hashlib.sha256(email.encode()).hexdigest()
            body = b"".join((head, mid.encode(), middle, email.encode(), tail))
            key = f"email/{SCALE_PROJECT}/{rhash}/1234567/{mid}.json.gz"
            at = base + n * 0.001
            values = template_values.copy()
            values[at_["message_id"]] = mid
            values[at_["recipient_hash"]] = rhash
            values[at_["state"]] = state
            values[at_["key"]] = key
            values[at_["id"]] = next_id + n
            if stored_:
                entries.append((SCALE_PROJECT, mid, values[at_["medium"]],
                                values[at_["message_type"]], values[at_["campaign_id"]],
                                bytes.fromhex(rhash), values[at_["sent_at"]],
                                hashlib.sha256(body).digest(), where, at + 1))
            else:
                bodies.append((next_id + n, gzip_body(body)))  # kept as ingest keeps it
            values[at_["payload_sha256"]] = hashlib.sha256(body).hexdigest()
            values[at_["content_sha256"]] = hashlib.sha256(b"core:" + mid.encode()).hexdigest()
            values[at_["created_at"]] = values[at_["confirmed_at"]] = at
            values[at_["updated_at"]] = at + 1 if stored_ else at
            values[at_["recipient_hashes"]] = f'{{"email":"{rhash}"}}'
            if stored_:
                values[at_["attempts"]] = 1
                values[at_["stored_at"]] = at + 1
                values[at_["stored_key"]] = prefix + key
                values[at_["destination_url"]] = archive_url
            yield values

    conn = spool.conn
    # A fixture, not a measurement: no journal and a large cache while filling (the spool is
    # switched back to WAL afterwards, as sm opens it).
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    conn.execute("BEGIN IMMEDIATE")
    for start, count, state in ((first, stored, State.STORED),
                                (first + stored, queued, State.QUEUED)):
        for chunk in range(start, start + count, 10_000):  # bodies in chunks, not all in memory
            conn.executemany(insert, list(rows(chunk, min(10_000, start + count - chunk),
                                               state)))
            conn.executemany(
                "INSERT INTO archive_entries (project_id, message_id, medium, message_type,"
                " campaign_id, recipient_hash, sent_at, payload_sha256, location, stored_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", entries)
            conn.executemany("INSERT INTO message_bodies (id, payload) VALUES (?, ?)", bodies)
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=WAL")
    os.sync()
    spool.close()
    return time.perf_counter() - started


def claim_latency(path: Path, rounds: int = 15) -> dict[str, list[float]]:
    """`Spool.queue.claim` of 64 (as the archiver calls it: its lease commits without an
    fsync), interleaved with a one-row fsync'd write transaction on the same connection (what
    every claim cost at least while leases were synced). The claims are released."""
    spool = Spool(path)
    owner, longest = lease_owner_name(), RetryPolicy().longest_wait
    max_row = spool.queue.max_row_id()
    times: dict[str, list[float]] = {"claim": [], "fsync": []}

    def claim() -> float:
        started = time.perf_counter()
        got = spool.queue.claim(owner, SCALE_PROJECT, CLAIM_AT_LEAST, lease_seconds=300,
                                max_row_id=max_row, overdue_after=time.time() + longest)
        assert len(got) == CLAIM_AT_LEAST
        return time.perf_counter() - started

    for _ in range(rounds):
        times["claim"].append(claim())
        started = time.perf_counter()
        with spool.lock:
            spool.conn.execute("BEGIN IMMEDIATE")
            # A value that changes: SQLite writes nothing for `SET x = x`.
            spool.conn.execute("UPDATE messages SET updated_at = ? WHERE id = ?",
                               (time.time(), max_row))
            spool.conn.execute("COMMIT")
        times["fsync"].append(time.perf_counter() - started)
    spool.queue.release(owner)
    spool.close()
    return times


def claim_plan(path: Path) -> list[str]:
    """EXPLAIN QUERY PLAN of the claim's reads (queued by id with their bodies, due retries
    by time)."""
    conn = sqlite3.connect(path)
    plans = []
    for sql in ("SELECT messages.id, b.payload FROM messages LEFT JOIN message_bodies b"
                " ON b.id = messages.id WHERE state = 'queued' AND project_id = ?"
                " AND messages.id <= ? ORDER BY messages.id LIMIT 64",
                "SELECT id FROM messages WHERE state = 'retry_wait' AND project_id = ?"
                " AND next_attempt_at <= ? AND id <= ? ORDER BY next_attempt_at LIMIT 64"):
        detail = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql,
                                             (SCALE_PROJECT, 0, 0)[:sql.count("?")])]
        plans.append("; ".join(detail))
    conn.close()
    return plans


def timed_run(home: Path, count: int) -> tuple[float, int, int]:
    """Start `sm -q run --once`; the wall time until `count` more messages are stored,
    start-up included; then SIGTERM if it still runs (it finishes in-flight work
    and releases its claims). Also the peak VmHWM and VmRSS of the `sm` process itself
    (/proc/PID/status, read while it runs), in KiB."""
    spool_db = home / "spool.db"
    watch = sqlite3.connect(spool_db, timeout=60)
    since = time.time() - 1.0  # the filled history was stored an hour ago and more
    started = time.perf_counter()
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "sm"), "-q", "run", "--once"],
                            env={**os.environ, "SM_HOME": str(home)},
                            stdout=subprocess.DEVNULL)
    hwm = rss = 0
    done_at = None
    try:
        while True:
            for line in _proc_status(proc.pid):
                if line.startswith("VmHWM:"):
                    hwm = max(hwm, int(line.split()[1]))
                elif line.startswith("VmRSS:"):
                    rss = max(rss, int(line.split()[1]))
            # Through the stored-by-time partial index: a seek to this run's rows, not a
            # count over the whole stored history every 0.1 s.
            stored = watch.execute(
                f"SELECT COUNT(*) FROM messages WHERE state = '{State.STORED}'"
                " AND project_id = ? AND stored_at >= ?", (SCALE_PROJECT, since)).fetchone()[0]
            if stored >= count and done_at is None:
                done_at = time.perf_counter() - started
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait()
        watch.close()
    if done_at is None:
        raise RuntimeError(f"sm run ended (exit {proc.returncode}) before storing {count}")
    return done_at, hwm, rss


def _proc_status(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return []


def status_samples(home: Path, runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU times of `runs` whole `sm --json status` commands, after one unmeasured
    call (which warms the page cache like a second look would)."""
    sm(home, "--json", "status")
    times, cpu = [], []
    for _ in range(runs):
        before = _cpu_of_children()
        times.append(sm(home, "--json", "status"))
        cpu.append(_cpu_of_children() - before)
    return times, cpu


def sm_status_times(home: Path, runs: int = 5) -> tuple[float, float]:
    """Median wall time and CPU time of `sm --json status` (whole command)."""
    times, cpu = status_samples(home, runs)
    return statistics.median(times), statistics.median(cpu)


def bench_scale(work: Path, big: int) -> None:
    """Claims, `sm run` and `sm status` at 10k and `big` queued, and `big` stored + 10k queued.

    Every `sm run` is timed over its first SCALE_RUN stored messages (start-up included), so
    the three sizes do the same work; the spools differ only in what lies behind.
    """
    sizes = {  # label: (stored history, queued)
        f"{SCALE_RUN // 1000}k queued": (0, SCALE_RUN),
        f"{big / 1e6:g}M queued": (0, max(big, SCALE_RUN * (SCALE_ROUNDS + 1))),
        f"{big / 1e6:g}M stored + {SCALE_RUN // 1000}k queued": (big, SCALE_RUN),
    }
    homes = {}
    for index, (label, (stored, queued)) in enumerate(sizes.items()):
        home = work / f"scale-{index}"
        archive = work / f"scale-archive-{index}"
        archive.mkdir(mode=0o700)
        url = f"file://{archive}/"
        save_projects(home / "config.toml", {SCALE_PROJECT: ProjectDestination(url=url)})
        seconds = fill_scale(home / "spool.db", stored=stored, queued=queued, archive_url=url)
        homes[label] = (home, stored)
        print(f"  (filled {label} in {seconds:.1f} s, spool"
              f" {(home / 'spool.db').stat().st_size / 2**30:.2f} GiB)", flush=True)
    first = next(iter(homes))
    for line in claim_plan(homes[f"{big / 1e6:g}M queued"][0] / "spool.db"):
        print(f"  claim plan at {big / 1e6:g}M: {line}")
    _load_row()
    for label, (home, _) in homes.items():
        times = claim_latency(home / "spool.db")
        claim, fsync = (statistics.median(times[k]) for k in ("claim", "fsync"))
        row(f"claim of {CLAIM_AT_LEAST}, {label}", f"{claim * 1e3:.2f} ms",
            f"{fsync * 1e3:.2f} ms", f"{claim / fsync:.2f}x",
            f"target ≤ 2 ms (max {max(times['claim']) * 1e3:.2f} ms)")
    print("  (medians of 15; baseline: a one-row write transaction on the same connection,"
          " i.e. one fsync'd COMMIT, the least a claim cost while leases were synced)")
    rates: dict[str, list[float]] = {label: [] for label in homes}
    marks: dict[str, int] = dict.fromkeys(homes, 0)
    for round_ in range(SCALE_ROUNDS):
        _load_row()
        if round_:  # the next SCALE_RUN to do where the first round emptied the queue
            for label, (home, stored) in homes.items():
                if sizes[label][1] == SCALE_RUN:
                    fill_scale(home / "spool.db", stored=0, queued=SCALE_RUN,
                               archive_url=_url_of(home), first=stored + round_ * SCALE_RUN)
        for label, (home, _) in homes.items():
            seconds, hwm, _rss = timed_run(home, SCALE_RUN)
            rates[label].append(SCALE_RUN / seconds)
            marks[label] = max(marks[label], hwm)
            ratio = rates[label][-1] / rates[first][-1]
            row(f"sm run --once, folder, {label}", f"{rates[label][-1]:,.0f} msg/s",
                f"{rates[first][-1]:,.0f} msg/s", f"{ratio:.2f}x",
                "-" if label == first else "target ≥ 0.8x")
    print(f"  (each: wall time until {SCALE_RUN:,} messages are stored, start-up included,"
          f" in {SCALE_ROUNDS} rounds; baseline: the 10k spool's run in the same round)")
    for label in homes:
        if label != first:
            ratios = [r / b for r, b in zip(rates[label], rates[first], strict=True)]
            row(f"  median ratio, {label}", f"{statistics.median(ratios):.2f}x", "-", "-",
                "target ≥ 0.8x")
    for label, hwm in marks.items():
        row(f"VmHWM of sm run, {label}", f"{hwm / 1024:,.0f} MiB",
            f"{marks[first] / 1024:,.0f} MiB", f"{hwm / marks[first]:.2f}x",
            "flat" if label != first else "")
    _load_row()
    for label, (home, _) in homes.items():
        if "stored" in label:
            continue
        wall, cpu = sm_status_times(home)
        row(f"sm --json status, {label}", f"{wall:.3f} s", f"cpu {cpu:.3f} s", "-",
            "target ≤ 1 s" if label != first else "")
    _load_row()


def _url_of(home: Path) -> str:
    from stored_messages_cli.config import project_urls

    return project_urls(home / "config.toml")[SCALE_PROJECT]


_BENCH_STARTED = time.perf_counter()


def _load_row() -> None:
    print(f"  load average now: {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
          f" ({time.perf_counter() - _BENCH_STARTED:.0f} s into the run)", flush=True)


def _time(command: list[str], quiet: bool = False) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL if quiet else None)
    return time.perf_counter() - started


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()},"
            f" SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()},"
            f" load average {load}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--workdir", help="where to put the spools (default: a temp folder)")
    parser.add_argument("--scale", action="store_true",
                        help="only the scale figures: claims, sm run and sm status at 10k and"
                             " 1M queued rows and 1M stored behind 10k (under 10 minutes)")
    parser.add_argument("--scale-rows", type=int, default=1_000_000,
                        help="the big spool's rows for --scale (default 1,000,000)")
    parser.add_argument("--audit", action="store_true",
                        help="only sm audit and sm audit --deep over --audit-count messages"
                             " archived by sm run to a folder (about 10 minutes)")
    parser.add_argument("--audit-count", type=int, default=100_000,
                        help="messages for --audit (default 100,000)")
    parser.add_argument("--manifests", action="store_true",
                        help="only the manifest cost figure (sm run with and without)")
    parser.add_argument("--log", action="store_true",
                        help="only the signed log's cost: sm run sealing every 500 outcomes,"
                             " checkpoints copied and time-stamped, against no manifests")
    parser.add_argument("--senders", action="store_true",
                        help="only the sender figures: record p50/p99, record on 8 threads"
                             " (group commit) and record_many (a couple of minutes)")
    parser.add_argument("--cpu", action="store_true",
                        help="only CPU per message for senders: record of a short SMS vs a raw"
                             " durable insert, record_many vs a raw executemany, encoding and"
                             " gzip now vs before, --rounds alternating rounds (about a minute)")
    parser.add_argument("--serve", action="store_true",
                        help="only sm serve: JSON Lines batches of 1,000 per CPU-second vs sm"
                             " ingest, and single POSTs from 8 keep-alive clients (msg/s)")
    parser.add_argument("--daemon", action="store_true",
                        help="only issue 25's daemon figures (scripts/bench_daemon.py): sm run"
                             " to the S3 stand-in and to a folder vs raw loops, and the steady"
                             " rate at 200,000 vs 5,000 queued (8-12 minutes)")
    parser.add_argument("--encryption", action="store_true",
                        help="only the cost of per-recipient encryption: ingest CPU per"
                             " message and sm run --once to a folder, encrypted vs plain")
    parser.add_argument("--budgets", action="store_true",
                        help="only issue 25's sender budgets, each beside its baseline: record"
                             " CPU minus a raw insert's, record on 8 threads / one thread,"
                             " record_many of the email per CPU-second, sm ingest of 30,000"
                             " lines less its start-up per CPU-second, and beside each its floor"
                             " (the steps a message cannot skip; scripts/bench_floors.py)"
                             " (about 3 minutes)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved rounds of the manifest cost figure (default 5)")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    print(machine())
    print(f"{'figure':<34} {'sm':>16} {'baseline':>16} {'ratio':>8}   target")
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="sm-bench-") as tmp:
        work = Path(tmp) / uuid.uuid4().hex[:6]
        work.mkdir()
        if args.scale:
            bench_scale(work, args.scale_rows)
            print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
            return
        rounds = 3 if args.quick else max(3, args.rounds)
        if args.manifests:
            _load_row()
            bench_manifest_cost(work, int(3000 * scale), rounds)
            print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
            return
        if args.log:
            _load_row()
            bench_log_cost(work, int(3000 * scale), rounds)
            print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
            return
        if args.serve:
            from bench_serve import bench_serve  # scripts/bench_serve.py

            bench_serve(work, rounds, scale, message, row)
            print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
            return
        if args.daemon:
            from bench_daemon import bench_daemon  # scripts/bench_daemon.py

            bench_daemon(work_root=str(work), rounds=rounds if args.quick else max(5, rounds),
                         count=max(2500, int(5000 * scale)), big=int(200_000 * scale))
            return
        if args.encryption:
            from bench_encryption import bench_encryption

            bench_encryption(work, int(3000 * scale), rounds, message, row)
            print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
            return
        if args.cpu:
            bench_cpu(work, max(5, args.rounds), scale)
            print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
            return
        if args.budgets:
            _load_row()
            bench_budgets(work, max(5, args.rounds), scale)
            print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
            return
        if args.senders:
            bench_record(work, int(500 * scale))
            _load_row()
            bench_record_threads(work, int(100 * scale), rounds=rounds)
            _load_row()
            bench_record_many(work, int(20000 * scale))
            _load_row()
            bench_ingest(work, int(20000 * scale))
            print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
            return
        if args.audit:
            bench_audit(work, int(args.audit_count * scale))
            print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
            return
        bench_record(work, int(500 * scale))
        bench_record_threads(work, int(100 * scale))
        bench_record_many(work, int(20000 * scale))
        bench_ingest(work, int(20000 * scale))
        bench_run_folder(work, int(3000 * scale))
        bench_run_s3(work, int(2000 * scale))
        bench_status(work)
        bench_find(work, int(1_000_000 * scale))
        _load_row()
        bench_manifest_cost(work, int(3000 * scale), rounds)
        _load_row()
        bench_audit(work, int(10_000 * scale))
    print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
