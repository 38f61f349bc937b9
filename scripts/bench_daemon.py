"""Benchmark: issue 25's three daemon figures, each beside its baseline in the same run.

1. S3: `sm run --once -c 8` to a keep-alive S3 stand-in (a process of its own) against a raw
   boto3 `put_object` loop of the same objects, headers and concurrency (8 threads, in a
   process of its own). The stand-in notes the arrival time of every message PUT, so both
   sides are timed the same way: the rate between the PUTs at 10 % and 90 % of the count
   (start-up, warm-up and shutdown left out); the whole command's rate is printed too.
2. Folder: `sm run --once -c 8` to a folder against a raw loop (a process of its own, 8
   threads) writing the same objects create-only: the key's folders made (each new one
   fsynced into its parent), an O_EXCL temp file written and fsynced, linked into place, the
   object's folder fsynced. Both timed by the objects' own modification times (when each
   object's bytes were written): the rate between the objects at 10 % and 90 % of the count.
3. Steady rate: `sm run` (the daemon) to a folder, the rate between the 300th and the
   2,300th object written (modification times again) with 200,000 queued against 5,000
   queued; the start-up (the command started → its first object) is printed too.

Every spool is filled once per tree by that tree's own `sm ingest` (the S3 and folder
figures from the 5,000 / `--count` spool, the steady one from both) and each round runs on a
page-for-page copy (SQLite's backup API), synced to disk before the clock starts. Rounds
alternate the order of the sides (and of the trees, with several `--tree`). Printed: min /
median / max of the rounds of each side and of the per-round ratios, and the load average at
the start, between figures and at the end.

    python scripts/bench_daemon.py                       # this checkout, 5 rounds: ~8-12 min
    python scripts/bench_daemon.py --tree /old --tree .  # two checkouts side by side
    python scripts/bench_daemon.py --only folder --rounds 3

It is a benchmark, not a test: it asserts only that each side wrote what it was given.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import pickle
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

THREADS = 8
STEADY_FROM, STEADY_TO = 300, 2300  # the steady figure's objects (1-based: the 300th …)


# ----------------------------------------------------------------------------- S3 stand-in


class _Store:
    """What the stand-in keeps: objects by path, and when each message PUT arrived."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.times: dict[str, list[float]] = {}


def _answer(status: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers.items()]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


_PRECONDITION = _answer("412 Precondition Failed", {"Content-Type": "application/xml"},
                        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>"
                        b"PreconditionFailed</Code><Message>At least one of the pre-conditions"
                        b" you specified did not hold</Message></Error>")
_NOT_FOUND = _answer("404 Not Found", {"Content-Type": "application/xml"},
                     b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code>"
                     b"<Message>The specified key does not exist.</Message></Error>")


async def _connection(store: _Store, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
    """One kept-alive connection. PUT honours `If-None-Match: *` (412 when the key exists);
    GET, HEAD and DELETE of a kept object work (the create-only proof needs them);
    `GET /__times/BUCKET` answers the arrival times of that bucket's message PUTs."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            method, target, _ = lines[0].decode().split(" ", 2)
            path = target.split("?", 1)[0]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower().decode()] = value.strip().decode()
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = b""
            if headers.get("transfer-encoding", "").lower() == "chunked":
                parts = []
                while True:
                    size = int((await reader.readline()).split(b";")[0], 16)
                    if size == 0:
                        while (await reader.readline()) not in (b"\r\n", b""):
                            pass
                        break
                    parts.append((await reader.readexactly(size + 2))[:-2])
                body = b"".join(parts)
            elif int(headers.get("content-length", "0")):
                body = await reader.readexactly(int(headers["content-length"]))
            if path.startswith("/__times/"):
                times = store.times.pop(path[len("/__times/"):], [])
                writer.write(_answer("200 OK", {"Content-Type": "application/json"},
                                     json.dumps(times).encode()))
                continue
            if method == "PUT":
                if headers.get("if-none-match") == "*" and path in store.objects:
                    writer.write(_PRECONDITION)
                    continue
                store.objects[path] = (body, headers.get("x-amz-meta-sm-payload-sha256", ""))
                if "/_sm/" not in path:
                    bucket = path.split("/", 2)[1]
                    store.times.setdefault(bucket, []).append(time.monotonic())
                writer.write(_answer("200 OK", {
                    "x-amz-version-id": uuid.uuid4().hex,
                    "ETag": f'"{hashlib.md5(body).hexdigest()}"'}))
            elif method in ("GET", "HEAD"):
                kept = store.objects.get(path)
                if kept is None:
                    writer.write(_NOT_FOUND if method == "GET" else
                                 _answer("404 Not Found", {}))
                    continue
                data, payload_sha = kept
                answer = _answer("200 OK", {
                    "Content-Type": "application/gzip",
                    "ETag": f'"{hashlib.md5(data).hexdigest()}"',
                    "x-amz-meta-sm-payload-sha256": payload_sha,
                    "Last-Modified": "Mon, 07 Dec 2026 12:00:00 GMT"}, data)
                if method == "HEAD":
                    answer = answer[:answer.index(b"\r\n\r\n") + 4]
                writer.write(answer)
            elif method == "DELETE":
                store.objects.pop(path, None)
                writer.write(_answer("204 No Content", {}))
            else:
                writer.write(_answer("200 OK", {}))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve() -> None:
    store = _Store()
    server = await asyncio.start_server(lambda r, w: _connection(store, r, w), "127.0.0.1", 0,
                                        backlog=256)
    sys.stdout.write(f"{server.sockets[0].getsockname()[1]}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def put_times(url: str, bucket: str) -> list[float]:
    """The arrival times of `bucket`'s message PUTs at the stand-in (and forget them)."""
    with urllib.request.urlopen(f"{url}/__times/{bucket}") as answer:
        return sorted(json.loads(answer.read()))


# ----------------------------------------------------------------------------- raw baselines


def raw_s3(url: str, bucket: str, objects_file: str, threads: int) -> None:
    """A plain boto3 client's `put_object` with sm's headers on `threads` threads (keep-alive
    pool of `threads` connections), the SHA-256 in the thread; prints its own wall time."""
    import boto3
    from botocore.config import Config
    from botocore.handlers import add_expect_header

    items = pickle.loads(Path(objects_file).read_bytes())
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", config=Config(
        retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=threads,
        s3={"addressing_style": "path"}))
    client.meta.events.unregister("before-call.s3", add_expect_header)  # same headers as sm

    def put(item: tuple[str, bytes, str]) -> None:
        key, body, payload_sha = item
        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
        client.put_object(Bucket=bucket, Key="archive/" + key, Body=body, IfNoneMatch="*",
                          ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum,
                          ContentType="application/gzip",
                          Metadata={"sm-payload-sha256": payload_sha})

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, items))
    print(time.perf_counter() - started)


def raw_folder(root: str, objects_file: str, threads: int) -> None:
    """The same objects written create-only on `threads` threads, as the folder destination
    must: every folder of the key made and each new one fsynced into its parent, an O_EXCL
    temp file in `.sm-tmp/` written and fsynced, hard-linked into place (create-only), the
    temp name removed, the object's folder fsynced. Prints its own wall time."""
    items = pickle.loads(Path(objects_file).read_bytes())
    base = Path(root)
    tmp_dir = base / ".sm-tmp"
    tmp_dir.mkdir(mode=0o700)

    def fsync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def write(item: tuple[str, bytes, str]) -> None:
        key, body, _ = item
        folder = base
        for name in key.split("/")[:-1]:
            folder = folder / name
            try:
                folder.mkdir(mode=0o700)
            except FileExistsError:
                continue
            fsync_dir(folder.parent)
        tmp = tmp_dir / f"{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, folder / key.rsplit("/", 1)[1])
        tmp.unlink()
        fsync_dir(folder)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, items))
    print(time.perf_counter() - started)


# ----------------------------------------------------------------------------- helpers


def load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def say(text: str) -> None:
    print(text, flush=True)


def tree_label(tree: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain",
                                "stored_messages_cli"], capture_output=True, text=True,
                               check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return tree.name


def sm_argv() -> list[str]:
    """The `sm` console script's entry point, run by this interpreter (the tree is chosen
    by PYTHONPATH)."""
    return [sys.executable, "-c",
            "import sys; from stored_messages_cli.cli.app import main; sys.exit(main())"]


def run_sm(args: list[str], env: dict[str, str]) -> None:
    """Run `sm -q ARGS` to the end; its log lines (the signing key it creates in a fresh
    home) are shown only when it fails."""
    done = subprocess.run([*sm_argv(), "-q", *args], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"sm {' '.join(args)} exited {done.returncode}")


def sm_env(tree: Path, home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "SM_HOME": str(home), "PYTHONPATH": str(tree), **(extra or {})}


AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
           "AWS_DEFAULT_REGION": "us-east-1"}


def write_config(home: Path, url: str, **options: Any) -> None:
    """config.toml with project 12345 archiving to `url` (written without any tree's code:
    the same text for both)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = ["[projects.12345]", f'url = "{url}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in options.items()]
    (home / "config.toml").write_text("\n".join(lines) + "\n")
    (home / "config.toml").chmod(0o600)


def fill_template(tree: Path, work: Path, count: int, lines: Path) -> Path:
    """A spool of `count` queued emails, filled by the tree's own `sm ingest`."""
    home = work / f"template-{uuid.uuid4().hex[:6]}"
    write_config(home, f"file://{work}/unused/")
    started = time.perf_counter()
    run_sm(["ingest", str(lines)], sm_env(tree, home))
    say(f"  filled {count:,} queued by `sm ingest` ({tree_label(tree)}) in"
        f" {time.perf_counter() - started:.1f} s (load {load()})")
    return home / "spool.db"


def spool_copy(template: Path, home: Path) -> None:
    """`home`'s spool: a page-for-page copy of `template`, synced to disk."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    target_path = home / "spool.db"
    source, target = sqlite3.connect(template), sqlite3.connect(target_path)
    source.backup(target)
    target.close()
    source.close()
    target_path.chmod(0o600)
    os.sync()


def object_times(archive: Path) -> list[int]:
    """The modification times (ns) of every message object in a folder archive, sorted."""
    times = []
    for dirpath, _, filenames in os.walk(archive):
        if "/.sm-tmp" in dirpath or "/_sm" in dirpath:
            continue
        for name in filenames:
            if name.endswith(".json.gz"):
                times.append(os.stat(os.path.join(dirpath, name)).st_mtime_ns)
    return sorted(times)


def rate_between(times: list[float], first: int, last: int) -> float:
    """Objects per second between the `first`th and the `last`th (1-based) of `times`."""
    return (last - first) / (times[last - 1] - times[first - 1])


def middle(count: int) -> tuple[int, int]:
    return max(1, count // 10), count - count // 10


def stats(values: list[float], digits: int = 0) -> str:
    return (f"{min(values):,.{digits}f} / {statistics.median(values):,.{digits}f} /"
            f" {max(values):,.{digits}f}")


def email_lines(path: Path, count: int) -> list[tuple[str, bytes, str]]:
    """`count` email lines written to `path`; their (key, gzip object, payload sha256)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    sys.path.insert(0, str(ROOT))
    from bench import message  # scripts/bench.py's realistic email

    from stored_messages_cli.message import gzip_body, parse_message

    made = []
    with path.open("w", encoding="utf-8") as out:
        for index in range(count):
            item = message(index, "d")
            out.write(json.dumps(item) + "\n")
            if len(made) < 10_000:
                parsed = parse_message(item)
                payload = parsed.payload()
                made.append((parsed.key, gzip_body(payload),
                             hashlib.sha256(payload).hexdigest()))
    return made


def report(title: str, rows: dict[str, list[float]], ratios: dict[str, list[float]],
           unit: str, target: str) -> None:
    say(f"{title}   (min / median / max of {len(next(iter(rows.values())))} rounds)")
    for label, values in rows.items():
        say(f"  {label:<44} {stats(values)} {unit}")
    for label, values in ratios.items():
        say(f"  ratio {label:<38} {stats(values, 2)} x   ({target})")


# ----------------------------------------------------------------------------- figures


def bench_s3(trees: list[Path], templates: dict[Path, Path], objects: list[Any], work: Path,
             rounds: int) -> None:
    count = len(objects)
    first, last = middle(count)
    objects_file = work / "s3-objects.pickle"
    objects_file.write_bytes(pickle.dumps(objects))
    process = subprocess.Popen([sys.executable, __file__, "--serve-s3"], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None
    url = f"http://127.0.0.1:{int(process.stdout.readline())}"
    steady: dict[str, list[float]] = {"raw boto3 put_object": []}
    whole: dict[str, list[float]] = {"raw boto3 put_object": []}
    labels = {tree: f"sm run --once -c 8 ({tree_label(tree)})" for tree in trees}
    for tree in trees:
        steady[labels[tree]], whole[labels[tree]] = [], []
    try:
        for round_ in range(rounds):
            sides: list[Path | None] = [None, *trees]
            for side in sides if round_ % 2 == 0 else sides[::-1]:
                bucket = f"b{round_}-{uuid.uuid4().hex[:8]}"
                if side is None:
                    out = subprocess.run([sys.executable, __file__, "--raw-s3", url, bucket,
                                          str(objects_file), str(THREADS)],
                                         env={**os.environ, **AWS_ENV}, check=True,
                                         capture_output=True, text=True).stdout
                    label, elapsed = "raw boto3 put_object", float(out.split()[-1])
                else:
                    home = work / f"s3-{bucket}"
                    write_config(home, f"s3://{bucket}/archive/", endpoint_url=url,
                                 allow_insecure_endpoint=True, region="us-east-1")
                    spool_copy(templates[side], home)
                    started = time.perf_counter()
                    run_sm(["run", "--once", "--concurrency", str(THREADS)],
                           sm_env(side, home, AWS_ENV))
                    label, elapsed = labels[side], time.perf_counter() - started
                    (home / "spool.db").unlink()
                times = put_times(url, bucket)
                assert len(times) == count, (label, len(times), count)
                steady[label].append(rate_between(times, first, last))
                whole[label].append(count / elapsed)
            say(f"  round {round_ + 1}: " + ", ".join(
                f"{k.split(' (')[-1].rstrip(')') if '(' in k else 'raw'} {v[-1]:,.0f}"
                for k, v in steady.items()) + f" PUT/s (load {load()})")
    finally:
        process.terminate()
        process.wait()
    raw = steady["raw boto3 put_object"]
    report(f"S3: {count:,} PUTs, rate between the {first:,}th and {last:,}th PUT at the"
           " stand-in", steady,
           {labels[t]: [a / b for a, b in zip(steady[labels[t]], raw, strict=True)]
            for t in trees}, "PUT/s", "target ≥ 2x")
    raw_whole = whole["raw boto3 put_object"]
    report("  the same, whole command (sm: start-up and shutdown included; raw: its loop)",
           whole, {labels[t]: [a / b for a, b in zip(whole[labels[t]], raw_whole, strict=True)]
                   for t in trees}, "msg/s", "none")


def bench_folder(trees: list[Path], templates: dict[Path, Path], objects: list[Any],
                 work: Path, rounds: int) -> None:
    count = len(objects)
    first, last = middle(count)
    objects_file = work / "folder-objects.pickle"
    objects_file.write_bytes(pickle.dumps(objects))
    steady: dict[str, list[float]] = {"raw create-only loop": []}
    whole: dict[str, list[float]] = {"raw create-only loop": []}
    labels = {tree: f"sm run --once -c 8 ({tree_label(tree)})" for tree in trees}
    for tree in trees:
        steady[labels[tree]], whole[labels[tree]] = [], []
    for round_ in range(rounds):
        sides: list[Path | None] = [None, *trees]
        for side in sides if round_ % 2 == 0 else sides[::-1]:
            archive = work / f"folder-{uuid.uuid4().hex[:8]}"
            archive.mkdir(mode=0o700)
            if side is None:
                os.sync()
                out = subprocess.run([sys.executable, __file__, "--raw-folder", str(archive),
                                      str(objects_file), str(THREADS)], check=True,
                                     capture_output=True, text=True).stdout
                label, elapsed = "raw create-only loop", float(out.split()[-1])
            else:
                home = work / f"home-{archive.name}"
                write_config(home, f"file://{archive}/")
                spool_copy(templates[side], home)
                started = time.perf_counter()
                run_sm(["run", "--once", "--concurrency", str(THREADS)], sm_env(side, home))
                label, elapsed = labels[side], time.perf_counter() - started
                (home / "spool.db").unlink()
            times = object_times(archive)
            assert len(times) == count, (label, len(times), count)
            steady[label].append(rate_between([t / 1e9 for t in times], first, last))
            whole[label].append(count / elapsed)
            subprocess.run(["rm", "-rf", str(archive)], check=True)
        say(f"  round {round_ + 1}: " + ", ".join(
            f"{k.split(' (')[-1].rstrip(')') if '(' in k else 'raw'} {v[-1]:,.0f}"
            for k, v in steady.items()) + f" obj/s (load {load()})")
    raw = steady["raw create-only loop"]
    report(f"Folder: {count:,} objects, rate between the {first:,}th and {last:,}th object"
           " written (file mtimes)", steady,
           {labels[t]: [a / b for a, b in zip(steady[labels[t]], raw, strict=True)]
            for t in trees}, "obj/s", "target ≥ 0.6x")
    raw_whole = whole["raw create-only loop"]
    report("  the same, whole command (sm: start-up and shutdown included; raw: its loop)",
           whole, {labels[t]: [a / b for a, b in zip(whole[labels[t]], raw_whole, strict=True)]
                   for t in trees}, "msg/s", "none")


def steady_run(tree: Path, template: Path, work: Path) -> tuple[float, float]:
    """`sm run` (the daemon) to a fresh folder on a copy of `template`: the rate between the
    300th and 2,300th object written, and the start-up (command started → first object)."""
    archive = work / f"steady-{uuid.uuid4().hex[:8]}"
    archive.mkdir(mode=0o700)
    home = work / f"home-{archive.name}"
    write_config(home, f"file://{archive}/")
    spool_copy(template, home)
    campaign_parent = archive / "email" / "12345"
    started_wall = time.time()
    process = subprocess.Popen([*sm_argv(), "-q", "run"], env=sm_env(tree, home),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # one recipient folder per message
            try:
                if len(os.listdir(campaign_parent)) >= STEADY_TO + 50:
                    break
            except FileNotFoundError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"sm run ended early ({process.returncode})")
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    times = [t / 1e9 for t in object_times(archive)]
    (home / "spool.db").unlink()
    subprocess.run(["rm", "-rf", str(archive)], check=True)
    return rate_between(times, STEADY_FROM, STEADY_TO), times[0] - started_wall


def bench_steady(trees: list[Path], big: dict[Path, Path], small: dict[Path, Path],
                 sizes: tuple[int, int], work: Path, rounds: int) -> None:
    rates: dict[str, list[float]] = {}
    startup: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    for round_ in range(rounds):
        sides = [(tree, name) for tree in trees for name in ("big", "small")]
        if round_ % 2:
            sides.reverse()
        got: dict[tuple[Path, str], float] = {}
        for tree, name in sides:
            rate, start = steady_run(tree, (big if name == "big" else small)[tree], work)
            label = f"sm run, {sizes[0 if name == 'big' else 1]:,} queued ({tree_label(tree)})"
            rates.setdefault(label, []).append(rate)
            startup.setdefault(label, []).append(start)
            got[(tree, name)] = rate
        for tree in trees:
            ratios.setdefault(tree_label(tree), []).append(got[(tree, "big")]
                                                           / got[(tree, "small")])
        say(f"  round {round_ + 1}: " + ", ".join(f"{k.split(', ')[1]} {v[-1]:,.0f}"
                                                  for k, v in rates.items())
            + f" obj/s (load {load()})")
    report(f"Steady: sm run to a folder, rate between the {STEADY_FROM}th and {STEADY_TO:,}th"
           f" object written, {sizes[0]:,} / {sizes[1]:,} queued", rates,
           {f"{sizes[0]:,} / {sizes[1]:,} queued ({t})": v for t, v in ratios.items()},
           "obj/s", "target ≥ 0.9x")
    for label, values in startup.items():
        say(f"  start-up (started → first object) {label:<44} {stats(values, 2)} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", type=Path,
                        help="a checkout whose code `sm` runs (repeat to compare trees side by"
                             " side; default: this one)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=5000,
                        help="messages of the S3 and folder figures, and the steady figure's"
                             " small queue (default 5,000)")
    parser.add_argument("--big", type=int, default=200_000,
                        help="the steady figure's big queue (default 200,000)")
    parser.add_argument("--only", choices=("s3", "folder", "steady"), action="append")
    parser.add_argument("--workdir", help="where the spools go (default: a temp folder)")
    parser.add_argument("--serve-s3", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw-s3", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--raw-folder", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_s3:
        asyncio.run(_serve())
        return
    if args.raw_s3:
        raw_s3(*args.raw_s3[:3], int(args.raw_s3[3]))
        return
    if args.raw_folder:
        raw_folder(*args.raw_folder[:2], int(args.raw_folder[2]))
        return
    bench_daemon(work_root=args.workdir, trees=args.tree, rounds=args.rounds,
                 count=args.count, big=args.big, only=args.only)


def bench_daemon(*, work_root: str | None = None, trees: list[Path] | None = None,
                 rounds: int = 5, count: int = 5000, big: int = 200_000,
                 only: list[str] | None = None) -> None:
    """Issue 25's daemon figures (see the module's text); `scripts/bench.py --daemon`."""
    trees = [t.resolve() for t in (trees or [ROOT])]
    figures = only or ["s3", "folder", "steady"]
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                 "SM_SPOOL_URL"):
        os.environ.pop(name, None)
    say(f"daemon figures: load average {load()}, {os.cpu_count()} CPUs; trees "
        + ", ".join(f"{tree_label(t)}" for t in trees) + f"; {rounds} rounds")
    with tempfile.TemporaryDirectory(dir=work_root, prefix="sm-bench-daemon-") as folder:
        work = Path(folder)
        lines = work / "small.jsonl"
        objects = email_lines(lines, count)
        small = {tree: fill_template(tree, work, count, lines) for tree in trees}
        steps: list[tuple[str, Callable[[], None]]] = []
        if "s3" in figures:
            steps.append(("s3", lambda: bench_s3(trees, small, objects, work, rounds)))
        if "folder" in figures:
            steps.append(("folder", lambda: bench_folder(trees, small, objects, work, rounds)))
        if "steady" in figures:
            def steady() -> None:
                big_lines = work / "big.jsonl"
                email_lines(big_lines, big)
                templates = {tree: fill_template(tree, work, big, big_lines) for tree in trees}
                big_lines.unlink()
                bench_steady(trees, templates, small, (big, count), work, rounds)
            steps.append(("steady", steady))
        for _, step in steps:
            say(f"load average {load()}")
            step()
    say(f"load average at the end {load()}")


if __name__ == "__main__":
    main()
