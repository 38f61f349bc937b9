"""`sm ingest`: read JSON Lines of sent messages and send events into the spool."""

# No `from __future__ import annotations`: typer would have to eval every annotation.

import itertools
import json
import re
import shlex
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer

from ..spool import IngestReport
from .common import command, fail, state_of

# Leading bytes of compressed files, and the command that decompresses each to stdout.
COMPRESSED = (
    (re.compile(rb"\x1f\x8b"), "gzip", "zcat"),
    (re.compile(rb"BZh[1-9]1AY&SY"), "bzip2", "bzcat"),
    (re.compile(rb"\xfd7zXZ\x00"), "xz", "xzcat"),
    (re.compile(rb"\x28\xb5\x2f\xfd"), "zstd", "zstdcat"),
)


def _refuse_compressed(name: str, head: bytes) -> None:
    """Stop with one clear error when `head` starts like a compressed file, not JSON Lines.

    Its lines would otherwise each be rejected as "not valid UTF-8" or "not valid JSON".
    """
    for magic, kind, tool in COMPRESSED:
        if magic.match(head):
            label = "standard input" if name == "-" else name
            source = "FILE" if name == "-" else shlex.quote(name)
            fail(f"{label} looks {kind}-compressed; use `{tool} {source} | sm ingest -`",
                 code=1)


LINE_CHUNK = 1 << 20  # how much of a line over the limit is read at a time, to skip it


class BoundedLines:
    """The lines of a stream, none held longer than `limit` bytes (`max_payload_bytes`).

    A longer line is read past a chunk at a time and stands as an empty line (so the spool's
    line numbers stay those of the file); `too_long` maps its number to its size.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.too_long: dict[int, int] = {}

    def read(self, fh: BinaryIO) -> Iterator[bytes]:
        """Yield the lines of `fh`, each over-long one as b"\\n"."""
        number = 0
        while raw := fh.readline(self.limit + 1):
            number += 1
            if len(raw) <= self.limit or raw.endswith(b"\n"):
                yield raw
                continue
            size = len(raw)
            while raw and not raw.endswith(b"\n"):
                raw = fh.readline(LINE_CHUNK)
                size += len(raw)
            self.too_long[number] = size - raw.endswith(b"\n")
            yield b"\n"

    def errors(self) -> list[dict[str, Any]]:
        """One rejection per over-long line, as the spool reports its own."""
        return [{"line": number, "reason": f"the line is {size} bytes, over max_payload_bytes"
                 f" ({self.limit})"} for number, size in self.too_long.items()]


def _checked_lines(name: str, lines: Iterator[bytes]) -> Iterable[bytes]:
    """`lines`, after refusing a compressed stream by its first line."""
    first = next(lines, b"")
    _refuse_compressed(name, first)
    return itertools.chain([first], lines) if first else iter(())


STREAM_FLUSH_AFTER = 1.0  # seconds: the longest a line read from stdin waits to be committed


class LineKinds:
    """Counts the lines that go by, and remembers which are send events (not messages).

    A newcomer who reads "accepted 7" and later "stored 4" must see that 3 of the 7 were
    events (confirmations, send failures) that changed messages already in the spool.
    """

    def __init__(self) -> None:
        self.lines = 0
        self.event_lines: set[int] = set()

    def follow(self, lines: Iterable[bytes]) -> Iterable[bytes]:
        """Yield `lines` unchanged, numbered as the spool numbers them (from 1)."""
        for number, raw in enumerate(lines, start=1):
            if raw.strip():
                self.lines += 1
                if b'"event"' in raw and _is_event(raw):  # cheap test first: events are few
                    self.event_lines.add(number)
            yield raw


def _is_event(raw: bytes) -> bool:
    try:
        document = json.loads(raw)
    except ValueError:
        return False
    return isinstance(document, dict) and "event" in document


def ingest(
    ctx: typer.Context,
    files: Annotated[list[str] | None, typer.Argument(
        help="JSON Lines files; '-' or nothing reads standard input.")] = None,
) -> None:
    """Read JSON Lines of messages and send events into the spool.

    Prints accepted / duplicate / rejected counts, and each rejected line with its number
    and reason; exits 1 if any line was rejected. Example: sm ingest sent-2026-11-27.jsonl
    """
    state = state_of(ctx)
    out = state.output
    sources = files or ["-"]
    for name in sources:
        if name != "-" and not Path(name).is_file():
            fail(f"{name} does not exist or is not a file", code=2)
    for name in sources:  # every file is checked before any line goes in
        if name != "-":
            with open(name, "rb") as fh:
                _refuse_compressed(name, fh.read(16))
    total = IngestReport()
    line_count = messages = events = 0
    limit = _intake_settings(state).max_payload_bytes
    with state.open_spool(create=True) as spool:
        for name in sources:
            label = "stdin" if name == "-" else name
            kinds = LineKinds()
            bounded = BoundedLines(limit)
            if name == "-":
                # A stream (`tail -F sent.log | sm ingest -`): lines are committed within
                # a second of arriving, not only every INGEST_BATCH lines.
                report = spool.ingest_lines(
                    kinds.follow(_checked_lines(name, bounded.read(sys.stdin.buffer))),
                    source=label, flush_after=STREAM_FLUSH_AFTER)
            else:
                with open(name, "rb") as fh:
                    report = spool.ingest_lines(
                        kinds.follow(_checked_lines(name, bounded.read(fh))), source=label)
            total.accepted += report.accepted
            total.duplicate += report.duplicate
            total.rejected += report.rejected + len(bounded.too_long)
            total.discarded += report.discarded
            line_count += len(bounded.too_long)
            rejected_events = 0
            for error in sorted([*report.errors, *bounded.errors()],
                                key=lambda e: int(e["line"])):
                rejected_events += error["line"] in kinds.event_lines
                entry = {"line": error["line"], "reason": error["reason"]}
                if len(sources) > 1:
                    entry["file"] = label
                total.errors.append(entry)
            line_count += kinds.lines
            events += len(kinds.event_lines) - rejected_events
            messages += kinds.lines - len(kinds.event_lines) - (report.rejected
                                                                - rejected_events)
    if out.json_mode:
        # SPEC 6 keys first and unchanged; `lines`, `messages`, `events` only added.
        out.emit_json({**total.as_dict(), "lines": line_count, "messages": messages,
                       "events": events})
    else:
        for error in total.errors:
            where = f"{error['file']}:" if "file" in error else "line "
            out.print(f"{where}{error['line']}: {error['reason']}", highlight=False,
                      markup=False)
        out.summary(ingest_summary(line_count, messages, events, total))
    if total.rejected:
        raise typer.Exit(1)


def _intake_settings(state: Any) -> Any:
    """The settings ingest runs on: config.toml's, or while it does not load the last good
    ones (a warning names the problem): a broken file never stops a sender (SPEC 9.2)."""
    from ..config.last_good import intake_settings  # pydantic: read with the file

    found = intake_settings(state.paths.config_file)
    if found.problem is not None:
        state.output.warn(f"config.toml is not valid ({found.problem}); recording with"
                          f" {found.source}. Try: fix it (sm status shows it until then)")
    return found.settings


def register(app: typer.Typer) -> None:
    """Add ingest."""
    command(app, "ingest")(ingest)


def ingest_summary(lines: int, messages: int, events: int, total: IngestReport) -> str:
    """`8 lines: 5 messages, 2 send events, 1 rejected; accepted 7, duplicate 0, rejected 1`.

    Messages apart from events: events confirm or fail messages already recorded, so they
    are accepted but never become archived objects themselves.
    """
    counted = [_plural(messages, "message")]
    if events:
        counted.append(_plural(events, "send event") + " (they confirm or fail recorded"
                       " messages; only messages are archived)")
    if total.rejected:
        counted.append(f"{total.rejected} rejected")
    summary = (f"{_plural(lines, 'line')}: {', '.join(counted)}; accepted {total.accepted},"
               f" duplicate {total.duplicate}, rejected {total.rejected}")
    if total.discarded:
        summary += f" ({total.discarded} accepted as discarded: medium not archived)"
    return summary


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
