"""`scripts/bench.py --encryption`: the cost of `encryption = "per-recipient"` (SPEC 9.5),
side by side with the same work unencrypted, in alternating rounds.

  ingest CPU per message   `Spool.record_many` of 1,000 realistic emails (unique recipients:
                           a new data key each, the worst case), CPU seconds of the process
                           (every thread) per message, encrypted vs plain (≤ 15 µs extra)
  seal, per message        the encryption step alone: AES-256-GCM under a cached data key
                           plus the envelope's gzip, vs the plain payload's gzip
  sm run --once, folder    the whole command, encrypted spool vs plain spool (≥ 0.9×)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _home(work: Path, name: str, url: str, encrypted: bool) -> Path:
    from stored_messages_cli.config.projects import ProjectDestination
    from stored_messages_cli.config.writer import save_projects

    home = work / name
    home.mkdir(mode=0o700, parents=True)
    if encrypted:
        (home / "config.toml").write_text('encryption = "per-recipient"\n')
    save_projects(home / "config.toml", {"12345": ProjectDestination(url=url)})
    return home


def _record_cpu(home: Path, inputs: list[dict[str, Any]]) -> float:
    """CPU seconds (all threads) of `record_many` of `inputs` in 1,000s."""
    from stored_messages_cli import Spool

    with Spool.open(home=home) as spool:
        spool.record_many(inputs[:10])  # warm: pydantic, the key files, the cipher
        started = time.process_time()
        for first in range(10, len(inputs), 1000):
            spool.record_many(inputs[first:first + 1000])
        return time.process_time() - started


def _sm(home: Path, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from stored_messages_cli.cli.app import main; main()",
                    "-q", *args], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "SM_HOME": str(home), "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - started


def _per_call(func: Callable[[], object], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        func()
    return (time.process_time() - started) / calls


def bench_encryption(work: Path, count: int, rounds: int,
                     message: Callable[[int, str], dict[str, Any]],
                     row: Callable[[str, str, str, str, str], None]) -> None:
    """Print the figures above (`message` and `row` are bench.py's)."""
    from stored_messages_cli.message import gzip_member, parse_message
    from stored_messages_cli.message.envelope import DataKey

    # 1. the seal step alone, per message
    parsed = parse_message(message(1, "seal"))
    key = DataKey("0" * 32, os.urandom(32))
    plain_us = _per_call(lambda: gzip_member(parsed.payload_bytes), 5000) * 1e6
    sealed_us = _per_call(lambda: gzip_member(key.seal(parsed.payload_bytes, parsed.key,
                                                       parsed.payload_sha)), 5000) * 1e6
    seal_only = _per_call(lambda: key.seal(parsed.payload_bytes, parsed.key,
                                           parsed.payload_sha), 5000) * 1e6
    row("seal, per message (CPU)", f"{sealed_us:.1f} µs", f"{plain_us:.1f} µs",
        f"+{sealed_us - plain_us:.1f}", "AES-GCM alone"
        f" {seal_only:.1f} µs; the rest is gzip of the envelope")
    # 2. ingest CPU per message, alternating rounds: every message to a new recipient (a
    # key made each time), then 100 recipients (each key made once, then cached)
    for recipients, words in ((None, "each to a new recipient"),
                              (100, "to 100 recipients")):
        extra: list[float] = []
        plain_cpu: list[float] = []
        for round_ in range(rounds):
            for encrypted in ((False, True) if round_ % 2 == 0 else (True, False)):
                name = f"ingest-{recipients}-{round_}-{'enc' if encrypted else 'plain'}"
                home = _home(work, name, f"file://{work / name}-archive/", encrypted)
                inputs = [message(i, f"{name}-") for i in range(count + 10)]
                if recipients:
                    for i, item in enumerate(inputs):
                        item["recipient"] = {"email": f"user{i % recipients}@example.com"}
                cpu = _record_cpu(home, inputs) / count * 1e6
                (extra if encrypted else plain_cpu).append(cpu)
        encrypted_med, plain_med = statistics.median(extra), statistics.median(plain_cpu)
        row(f"ingest CPU/msg{', 100 rcpt' if recipients else ''}", f"{encrypted_med:.1f} µs",
            f"{plain_med:.1f} µs", f"+{encrypted_med - plain_med:.1f}", "target ≤ +15 µs")
        print(f"  (min/median/max encrypted {min(extra):.1f}/{encrypted_med:.1f}/"
              f"{max(extra):.1f} µs, plain {min(plain_cpu):.1f}/{plain_med:.1f}/"
              f"{max(plain_cpu):.1f} µs; {rounds} alternating rounds of {count} messages"
              f" by record_many of 1,000, {words})")
    # 3. sm run --once to a folder, alternating
    rates: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(rounds):
        for encrypted in ((False, True) if round_ % 2 == 0 else (True, False)):
            name = f"run-{round_}-{'enc' if encrypted else 'plain'}"
            archive = work / f"{name}-archive"
            archive.mkdir(mode=0o700)
            home = _home(work, name, f"file://{archive}/", encrypted)
            from stored_messages_cli import Spool

            with Spool.open(home=home) as spool:
                spool.record_many([message(i, f"{name}-") for i in range(count)])
            elapsed = _sm(home, "run", "--once", "--concurrency", "8")
            assert sum(1 for _ in archive.rglob("*.json.gz")) == count
            rates[encrypted].append(count / elapsed)
    enc, plain = statistics.median(rates[True]), statistics.median(rates[False])
    row("sm run --once -c 8, folder", f"{enc:,.0f} msg/s", f"{plain:,.0f} msg/s",
        f"{enc / plain:.2f}x", "target ≥ 0.9x")
    print(f"  (encrypted vs plain spool, {count:,} messages each, {rounds} alternating rounds,"
          " whole command)")
