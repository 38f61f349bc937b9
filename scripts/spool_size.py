#!/usr/bin/env python3
"""Bytes per message in the spool: queued, stored, and stored after `sm spool prune`.

Records `--count` realistic emails (about 2.4 KB of payload each) through `Spool.record`,
archives them with `sm run --once` to a `file://` folder, then prunes with the clock moved 40
days on. After each step the spool is vacuumed and its file (with its WAL) measured; the
figure is the growth over an empty spool divided by the message count. `--tables` adds the
bytes of every table and index after the prune (SQLite's `dbstat`).

    .venv/bin/python scripts/spool_size.py [--count 5000] [--tables] [--full-ids]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from stored_messages_cli.clock import SystemClock
from stored_messages_cli.spool import Spool
from stored_messages_cli.spool.maintenance import file_bytes, prune, vacuum

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import message  # noqa: E402  (the benchmark's realistic email)

SM = str(Path(sys.executable).with_name("sm"))


class LaterClock(SystemClock):
    """The wall clock, `days` on."""

    def __init__(self, days: float) -> None:
        self.offset = days * 86400.0

    def now(self) -> float:
        return super().now() + self.offset


def compact(path: Path, clock: SystemClock | None = None) -> int:
    spool = Spool(path, clock=clock)
    try:
        vacuum(spool)
    finally:
        spool.close()
    return file_bytes(path)


def tables(path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"
                            " ORDER BY 2 DESC").fetchall()
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--tables", action="store_true", help="bytes per table and index")
    parser.add_argument("--full-ids", action="store_true",
                        help="32-character message ids, recipients with email and user id")
    args = parser.parse_args()
    count = args.count
    with tempfile.TemporaryDirectory(prefix="sm-size-") as tmp:
        home, folder = Path(tmp) / "home", Path(tmp) / "archive"
        folder.mkdir(mode=0o700)
        env = {**os.environ, "SM_HOME": str(home)}
        subprocess.run([SM, "connect", f"file://{folder}", "--project", "12345"],
                       env=env, check=True, capture_output=True)
        path = home / "spool.db"
        empty = compact(path)
        spool = Spool(path)
        batch = []
        for index in range(count):
            item = message(index, "size")
            if args.full_ids:  # a 32-character id and a recipient with email and user id
                item["message_id"] = f"{index:032x}"
                item["recipient"] = {"email": f"user{index}@example.com",
                                     "user_id": f"user-{index:08d}"}
            batch.append(item)
            if len(batch) == 1000:
                spool.record_many(batch)
                batch = []
        if batch:
            spool.record_many(batch)
        spool.close()
        queued = compact(path)
        subprocess.run([SM, "run", "--once"], env=env, check=True,
                       capture_output=True)
        stored = compact(path)
        spool = Spool(path, clock=LaterClock(40))
        try:
            report = prune(spool, 30 * 86400.0)
        finally:
            spool.close()
        pruned = compact(path)
        shape = ("32-character ids, email + user id" if args.full_ids
                 else "short ids, email only")
        print(f"messages: {count} ({shape}; pruned {report.stored} stored rows)")
        for label, size in (("queued (body in the spool)", queued),
                            ("stored, before prune", stored),
                            ("stored, after sm spool prune", pruned)):
            print(f"{label:<32} {(size - empty) / count:8.0f} bytes per message")
        if args.tables:
            for name, size in tables(path):
                print(f"  {name:<50} {size / count:8.1f}")


if __name__ == "__main__":
    main()
