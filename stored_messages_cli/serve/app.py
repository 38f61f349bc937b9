"""The ASGI application of `sm serve` (SPEC 9.3), on Starlette.

Routes: `POST /v1/messages`, `POST /v1/events` (behind the bearer token when there is one),
`POST /v1/providers/{provider}/{project_id}` (provider webhooks: they authenticate by their
own signatures, so never behind the token), `GET /healthz`, `GET /metrics`. Every answer is
JSON (errors too), except `/metrics`, which is Prometheus' text. Every spool call runs off
the event loop (`run_in_threadpool`); a body is read at most up to `max_payload_bytes`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..clock import Clock
from ..spool import Spool, SpoolError
from .gather import Gatherer
from .ingest import (
    EVENTS,
    JSON_LINES_TYPES,
    MESSAGES,
    ONE_DOCUMENT_TYPES,
    Answer,
    Backlog,
    BodyIngest,
    error,
    unwritable,
)
from .metrics import METRICS_CONTENT_TYPE, ServeMetrics, endpoint_of

log = logging.getLogger("sm.serve")

PROVIDERS_NOT_CONFIGURED = "provider webhooks are not configured"
LARGE_BODY = 1 << 20  # bytes: a body above this (a batch) waits for a place to be held
LARGE_BODIES = 4  # large bodies held at once


class WebhookReceiver(Protocol):
    """Provider webhooks, framework-free: verify, record, answer (SPEC 9.3)."""

    def receive(self, provider: str, project_id: str, body: bytes, headers: Mapping[str, str],
                url: str) -> tuple[int, dict[str, Any]]:
        """The HTTP status and JSON document for one webhook request (blocking): `body` as
        received, `headers` with lower-cased names, `url` the full request URL."""
        ...


@dataclass(frozen=True)
class ServeOptions:
    """What the app is built with."""

    max_payload_bytes: int
    max_queued: int
    token: bytes | None = None  # the bearer token /v1/messages and /v1/events require on TCP


class JsonAnswer(Response):
    """A JSON response (orjson: the hot path answers thousands a second)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def answer(result: Answer) -> Response:
    """An `Answer` as a Starlette response."""
    return JsonAnswer(result.document, status_code=result.status, headers=result.headers)


class TooLarge(Exception):
    """The body is over `max_payload_bytes`."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (TooLarge) as soon as it is known to be over `limit`."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> Response:
    """The 413 answer."""
    return answer(error(413, f"the body is over max_payload_bytes ({limit} bytes); nothing was"
                        " written", hint="send smaller batches (JSON Lines of up to 1,000"
                        " messages)"))


class Authorizer:
    """The bearer-token check, in constant time."""

    def __init__(self, token: bytes | None) -> None:
        self.token = token

    def refusal(self, request: Request) -> Response | None:
        """The 401 answer for a TCP request without the right token, else None. A Unix
        socket's own mode (0600) decides who may connect to it: ASGI gives its requests
        `server` = `[path, None]`, no port. A request that says nothing of its server needs
        the token too."""
        server = request.scope.get("server")
        if self.token is None or (server is not None and server[1] is None):
            return None
        given = request.headers.get("authorization", "")
        scheme, _, credentials = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
                credentials.strip().encode("utf-8", "surrogateescape"), self.token):
            return None
        return JsonAnswer({"error": "missing or wrong bearer token",
                           "hint": "send Authorization: Bearer TOKEN (the token file sm serve"
                           " was started with)"}, status_code=401,
                          headers={"WWW-Authenticate": "Bearer"})


def _content_kind(request: Request) -> bool | None:
    """True for JSON Lines, False for one JSON document, None for a type not taken."""
    content_type = request.headers.get("content-type", "")
    media = content_type.partition(";")[0].strip().lower()
    if media in JSON_LINES_TYPES:
        return True
    if media in ONE_DOCUMENT_TYPES:
        return False
    return None


class Handlers:
    """The endpoints of one app, over one spool."""

    def __init__(self, spool: Spool, options: ServeOptions, clock: Clock,
                 receiver: WebhookReceiver | None, metrics: ServeMetrics) -> None:
        self.spool = spool
        self.options = options
        self.intake = BodyIngest(spool)
        self.singles = Gatherer(self.intake.post_each)
        self.backlog = Backlog(spool, options.max_queued, clock)
        self.authorizer = Authorizer(options.token)
        self.receiver = receiver
        self.metrics = metrics
        self._large = asyncio.Semaphore(LARGE_BODIES)
        self.unwritable: str | None = None  # why the last write failed, until one succeeds

    def ingest_route(self, kind: str) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint `POST /v1/{kind}`."""
        async def post(request: Request) -> Response:
            return await self.ingest(kind, request)

        return post

    async def ingest(self, kind: str, request: Request) -> Response:
        """Token, content type, back-pressure, size; then the spool, off the event loop."""
        refused = self.authorizer.refusal(request)
        if refused is not None:
            return refused
        json_lines = _content_kind(request)
        if json_lines is None:
            return answer(error(415, "send Content-Type: application/json (one document)"
                                " or application/x-ndjson (JSON Lines)"))
        if request.headers.get("content-encoding", "identity").lower() != "identity":
            return answer(error(415, "Content-Encoding is not accepted; send the body"
                                " uncompressed"))
        if kind == MESSAGES:  # events add no message: confirmations are what drain the backlog
            waiting = self.backlog.cached()
            if waiting is None:
                try:
                    waiting = await run_in_threadpool(self.backlog.read)
                except SpoolError as exc:  # the spool cannot even be counted: nor written
                    self.unwritable = str(exc)
                    return answer(unwritable(exc))
            busy = self.backlog.refusal(waiting)
            if busy is not None:
                return answer(busy)
        async with self._room_for(request):
            try:
                body = await read_body(request, self.options.max_payload_bytes)
            except TooLarge:
                return too_large(self.options.max_payload_bytes)
            if kind == MESSAGES and not json_lines:  # gathered: one COMMIT for many requests
                result = await self.singles.submit(body)
            else:
                result = await run_in_threadpool(self.intake.post, kind, body,
                                                 json_lines=json_lines)
        if result.status == 503:
            log.error("the spool cannot write: %s", result.document["error"],
                      extra={"event": "serve_spool_unwritable"})
            self.unwritable = result.document["error"]
        else:
            self.unwritable = None
            document = result.document
            self.metrics.recorded(f"/v1/{kind}", document.get("accepted", 0),
                                  document.get("duplicate", 0), document.get("rejected", 0))
        return answer(result)

    def _room_for(self, request: Request) -> AbstractAsyncContextManager[Any]:
        """Where a request's body is held while it is read and recorded: a large body (or
        one of unknown length) waits for one of `LARGE_BODIES` places, so memory stays
        bounded (a few times `max_payload_bytes`) whatever the number of clients; a small
        one (a single message) never waits."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) <= LARGE_BODY:
            return nullcontext()
        return self._large

    async def provider(self, request: Request) -> Response:
        """`POST /v1/providers/{provider}/{project_id}`: the receiver's answer, or 404."""
        receiver = self.receiver
        if receiver is None:
            return answer(error(404, PROVIDERS_NOT_CONFIGURED))
        async with self._room_for(request):
            try:
                body = await read_body(request, self.options.max_payload_bytes)
            except TooLarge:
                return too_large(self.options.max_payload_bytes)
            headers: dict[str, str] = {}
            for name, value in request.headers.items():  # ASGI names are lower-case already
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            status, document = await run_in_threadpool(
                receiver.receive, request.path_params["provider"],
                request.path_params["project_id"], body, headers, str(request.url))
        return JsonAnswer(document, status_code=status)

    async def healthz(self, request: Request) -> Response:
        """`GET /healthz` (no token needed): 200 `{"status": "ok"}`, or 503 while the last
        write to the spool failed (a load balancer then sends senders elsewhere)."""
        if self.unwritable is not None:
            return JsonAnswer({"status": "spool_unwritable", "error": self.unwritable},
                              status_code=503)
        return JsonAnswer({"status": "ok"})

    async def metrics_page(self, request: Request) -> Response:
        """`GET /metrics`: Prometheus' text."""
        return Response(self.metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        """404, 405 and the other HTTP errors Starlette raises, as JSON."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        words = {404: "no such endpoint", 405: "method not allowed here"}.get(
            status, exc.detail if isinstance(exc, HTTPException) else "internal error")
        headers = getattr(exc, "headers", None)
        return JsonAnswer({"error": words}, status_code=status, headers=headers)

    async def internal_error(self, request: Request, exc: Exception) -> Response:
        """Anything unexpected: a JSON 500 (the traceback goes to the log)."""
        log.error("request to %s failed", request.url.path, exc_info=exc,
                  extra={"event": "serve_request_failed", "path": request.url.path})
        return JsonAnswer({"error": "internal error; see the server's log"}, status_code=500)


def build_app(spool: Spool, options: ServeOptions, clock: Clock,
              receiver: WebhookReceiver | None = None,
              metrics: ServeMetrics | None = None) -> ASGIApp:
    """The app: routes over `spool`; `receiver` handles provider webhooks (None: 404)."""
    counted = metrics or ServeMetrics()
    handlers = Handlers(spool, options, clock, receiver, counted)
    app = Starlette(routes=[
        Route("/v1/messages", handlers.ingest_route(MESSAGES), methods=["POST"]),
        Route("/v1/events", handlers.ingest_route(EVENTS), methods=["POST"]),
        Route("/v1/providers/{provider}/{project_id}", handlers.provider, methods=["POST"]),
        Route("/healthz", handlers.healthz, methods=["GET"]),
        Route("/metrics", handlers.metrics_page, methods=["GET"]),
    ], exception_handlers={HTTPException: handlers.http_error,
                           Exception: handlers.internal_error})
    return Timed(app, counted)


class Timed:
    """ASGI middleware: each request counted by endpoint and code, and timed."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            endpoint = endpoint_of(scope["path"])
            seconds = time.perf_counter() - started
            self.metrics.answered(endpoint, status, seconds)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s %s %d", scope["method"], scope["path"], status,
                          extra={"event": "serve_request", "method": scope["method"],
                                 "endpoint": endpoint, "status": status,
                                 "seconds": round(seconds, 6)})
