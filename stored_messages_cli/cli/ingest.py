"""`sm ingest`: read JSON Lines of sent messages and send events into the spool."""

# No `from __future__ import annotations`: typer would have to eval every annotation.

import itertools
import re
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, BinaryIO

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


def _checked_lines(name: str, fh: BinaryIO) -> Iterable[bytes]:
    """The lines of `fh`, after refusing a compressed stream by its first line."""
    first = fh.readline()
    _refuse_compressed(name, first)
    return itertools.chain([first], fh) if first else iter(())


def register(app: typer.Typer) -> None:
    """Add ingest."""

    @command(app, "ingest")
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
        with state.open_spool() as spool:
            for name in sources:
                label = "stdin" if name == "-" else name
                if name == "-":
                    report = spool.ingest_lines(_checked_lines(name, sys.stdin.buffer),
                                                source=label)
                else:
                    with open(name, "rb") as fh:
                        report = spool.ingest_lines(_checked_lines(name, fh), source=label)
                total.accepted += report.accepted
                total.duplicate += report.duplicate
                total.rejected += report.rejected
                total.discarded += report.discarded
                for error in report.errors:
                    entry = {"line": error["line"], "reason": error["reason"]}
                    if len(sources) > 1:
                        entry["file"] = label
                    total.errors.append(entry)
        if out.json_mode:
            out.emit_json(total.as_dict())
        else:
            for error in total.errors:
                where = f"{error['file']}:" if "file" in error else "line "
                out.print(f"{where}{error['line']}: {error['reason']}", highlight=False,
                          markup=False)
            summary = (f"accepted {total.accepted}, duplicate {total.duplicate},"
                       f" rejected {total.rejected}")
            if total.discarded:
                summary += f" ({total.discarded} accepted as discarded: medium not archived)"
            out.print(summary, highlight=False)
        if total.rejected:
            raise typer.Exit(1)


