"""Single-message requests gathered on the event loop and written together.

While one group is being written (its validation, its transaction, its fsync), the requests
that arrive wait here; the next group is all of them, handed to one worker thread at once.
A group waits (2 ms at most) only for as many requests as the last one held: a lone
request is written at once. It is the spool's group commit
(`Intake.record_each`) fed from the loop, so eight keep-alive clients cost one thread hop and
one COMMIT per group instead of eight. Each request still gets its own answer, after the
COMMIT that holds its message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

from .ingest import Answer

MOST_AT_ONCE = 1000  # messages a group holds at most (the size of a JSON Lines batch)
GATHER_WINDOW = 0.002  # seconds a group waits, at most, for the last group's clients


class Gatherer:
    """Gathers bodies into groups for `write(bodies) -> answers` (blocking, run off the
    loop), one group at a time."""

    def __init__(self, write: Callable[[list[bytes]], list[Answer]],
                 most: int = MOST_AT_ONCE) -> None:
        self.write = write
        self.most = most
        self._pending: list[tuple[bytes, asyncio.Future[Answer]]] = []
        self._draining: asyncio.Task[None] | None = None
        self._arrived: asyncio.Event | None = None
        self._last_group = 1
        self.window = GATHER_WINDOW

    async def _gather(self) -> None:
        """Wait (at most `window`) for as many requests as the last group held: its clients
        are back a moment after their answers with their next message, and without the
        wait eight clients split into a group of one and one of seven, two fsyncs where one
        does. A lone client never waits."""
        if len(self._pending) >= self._last_group:
            return
        self._arrived = asyncio.Event()
        try:
            await asyncio.wait_for(self._arrived.wait(), self.window)
        except TimeoutError:
            pass
        finally:
            self._arrived = None

    async def submit(self, body: bytes) -> Answer:
        """The answer for `body`, once the group holding it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._pending.append((body, future))
        if self._arrived is not None and len(self._pending) >= self._last_group:
            self._arrived.set()
        if self._draining is None:
            self._draining = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        group: list[tuple[bytes, asyncio.Future[Answer]]] = []
        try:
            while self._pending:
                await self._gather()
                group, self._pending = self._pending[:self.most], self._pending[self.most:]
                self._last_group = len(group)
                try:
                    answers = await run_in_threadpool(self.write, [body for body, _ in group])
                except Exception as exc:  # every request of the group learns of it
                    _fail(group, exc)
                    continue
                for (_, future), answer in zip(group, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        except BaseException as exc:  # cancelled (the loop stops): nobody is left waiting
            _fail([*group, *self._pending], exc)
            self._pending = []
            raise
        finally:
            self._draining = None


def _fail(group: list[tuple[bytes, asyncio.Future[Answer]]], exc: BaseException) -> None:
    """Give `exc` to every request of `group` still waiting."""
    for _, future in group:
        if future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)
