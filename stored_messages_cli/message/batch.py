"""Many messages at once: `parse_messages`, `parse_lines`, `gzip_bodies`.

The same checks, reasons and bytes as `validate.py`'s one-at-a-time functions, done stage by
stage over a chunk of messages, with the garbage collector paused and the gzip objects made
on two threads: the sender's throughput (docs/performance.md).
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Final

from ..errors import InvalidMessage
from .encode import gzip_body
from .validate import (
    PAYLOAD,
    DecodedLine,
    Message,
    SendEvent,
    as_invalid,
    checked,
    decoded_line,
    drafted,
    finished,
    only_invalid,
    parse_raw_message,
)

STAGE_CHUNK: Final = 1000  # messages validated stage by stage together (and with the GC paused)
# A batch this long is compressed on two threads (below it, starting one costs more).
PARALLEL_GZIP_AT: Final = 64
_CPUS: Final = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else os.cpu_count())


# A project whose objects are made later (an encrypted one seals its payload in the spool's
# transaction, SPEC 9.5): its messages get no plain gzip object at validation (`b""`).
MadeLater = Callable[[str], bool]


def parse_messages(raws: Sequence[Any], made_later: MadeLater | None = None
                   ) -> list[Message | InvalidMessage]:
    """`parse_message` of each item: its Message, or the InvalidMessage it would raise.

    The same checks and bytes, done stage by stage over the whole batch (every message
    checked, then every one encoded, then every one compressed): each stage's code stays
    hot in the CPU's caches instead of being evicted by the next stage's for every message
    (`record_many` ran 1.24x the messages a second of one at a time, side by side here).
    A batch of `PARALLEL_GZIP_AT` or more is compressed on two threads (`gzip_bodies`).
    A message of a project `made_later` says yes to gets `b""` as its object, not the plain
    payload's gzip (which an encrypted project would throw away).
    """
    return _parse_many(list(raws), decoded=False, what="message", made_later=made_later)


def parse_lines(texts: Sequence[str], made_later: MadeLater | None = None
                ) -> list[Message | SendEvent | InvalidMessage]:
    """`parse_line` of each text, stage by stage as `parse_messages` does (`made_later`
    too); never raises."""
    items: list[Any] = []
    for text in texts:
        try:
            items.append(only_invalid(partial(decoded_line, text), "line"))
        except InvalidMessage as exc:
            items.append(exc)
    messages = [index for index, item in enumerate(items) if type(item) is DecodedLine]
    parsed = _parse_many([items[index].value for index in messages], decoded=True,
                         what="line", made_later=made_later)
    for index, result in zip(messages, parsed, strict=True):
        items[index] = result
    return items


def _parse_many(items: list[Any], *, decoded: bool, what: str,
                made_later: MadeLater | None = None) -> list[Message | InvalidMessage]:
    """The stages of `parse_message` over `items`, a chunk of `STAGE_CHUNK` at a time; a
    failure is kept in its item's place.

    The cyclic garbage collector is paused during a chunk (if it was on): a chunk makes tens
    of thousands of short-lived containers, and every few hundred of them a collection would
    walk the caller's whole heap (a third more CPU a message with 20,000 messages alive).
    A chunk's objects hold no cycles; whatever it leaves is collected once it is back on.
    """
    if len(items) == 1:  # a lone `record()`: the stages' bookkeeping would cost more
        try:
            return [parse_raw_message(items[0], decoded=decoded)]
        except Exception as exc:
            return [as_invalid(exc, what)]
    results: list[Message | InvalidMessage] = []
    for first in range(0, len(items), STAGE_CHUNK):
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            results += _parse_stages(items[first:first + STAGE_CHUNK], decoded=decoded,
                                     what=what, made_later=made_later)
        finally:
            if paused:
                gc.enable()
    return results


def _parse_stages(items: list[Any], *, decoded: bool, what: str,
                  made_later: MadeLater | None = None) -> list[Message | InvalidMessage]:
    """One chunk: each stage (`checked`, `drafted`, the gzip objects, `finished`) over
    every message still valid, before the next stage begins."""
    failed: list[InvalidMessage | None] = [None] * len(items)

    def checked_here(raw: Any) -> tuple[dict[str, Any], Any]:
        return checked(raw, decoded)

    stages: tuple[Callable[[Any], Any], ...] = (checked_here, drafted)
    for stage in stages:
        for index, item in enumerate(items):
            if failed[index] is None:
                try:
                    items[index] = stage(item)
                except Exception as exc:
                    failed[index] = as_invalid(exc, what)
    good = [index for index, failure in enumerate(failed) if failure is None]
    if made_later is not None:  # a draft's first field is its project id
        projects = {items[index][0] for index in good}
        later = {project for project in projects if made_later(project)}
        if later:
            for index in good:
                if items[index][0] in later:
                    items[index] = finished(items[index], b"")
            good = [index for index in good if type(items[index]) is not Message]
    gzipped = gzip_bodies([items[index][PAYLOAD] for index in good])
    for index, body in zip(good, gzipped, strict=True):
        items[index] = finished(items[index], body)
    return [item if failure is None else failure for item, failure in zip(items, failed,
                                                                           strict=True)]


def gzip_bodies(payloads: Sequence[bytes]) -> list[bytes]:
    """`gzip_body` of each payload. A list of `PARALLEL_GZIP_AT` or more on a machine with a
    second core is split between this thread and a short-lived second one: zlib lets go
    of the GIL while it compresses, so the two halves run at once (~1.8x here)."""
    if len(payloads) < PARALLEL_GZIP_AT or (_CPUS or 1) < 2:
        return [gzip_body(payload) for payload in payloads]
    half = len(payloads) // 2
    first: list[bytes] = []
    failure: list[BaseException] = []

    def compress_first_half() -> None:
        try:
            first.extend(gzip_body(payload) for payload in payloads[:half])
        except BaseException as exc:  # handed to the calling thread  # pragma: no cover
            failure.append(exc)

    helper = threading.Thread(target=compress_first_half, name="sm-gzip", daemon=True)
    helper.start()
    try:
        second = [gzip_body(payload) for payload in payloads[half:]]
    finally:
        helper.join()
    if failure:  # pragma: no cover - zlib fails only when memory runs out
        raise failure[0]
    return first + second
