"""Running the app on uvicorn over sockets made beforehand (`listen.py`).

uvicorn handles SIGTERM and SIGINT: it stops accepting, lets the requests in flight finish
(their spool writes included) for up to `GRACEFUL_SECONDS`, then returns; a second signal
ends it at once. Its own log lines go through `sm`'s handlers (`--log-format json`). HTTP is
parsed by httptools and the loop is uvloop (the `serve` extra installs both: they halve the
server's CPU a single-message request, docs/performance.md); uvicorn falls back to h11 and
asyncio's loop where they are missing (`http="auto"`, `loop="auto"`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from .listen import Listener

log = logging.getLogger("sm.serve")

GRACEFUL_SECONDS = 30
KEEP_ALIVE_SECONDS = 75  # longer than the usual client pool's idle time: no reset races


@dataclass(frozen=True)
class Tls:
    """The certificate chain and key `sm serve` presents."""

    cert: Path
    key: Path


def adopt_uvicorn_logs(parent: str = "sm") -> None:
    """Send uvicorn's log lines (warnings and errors) to `parent`'s handlers."""
    ours = logging.getLogger(parent)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = list(ours.handlers)
        logger.setLevel(max(ours.getEffectiveLevel(), logging.WARNING))
        logger.propagate = False


def serve(app: ASGIApp, listeners: list[Listener], tls: Tls | None = None) -> None:
    """Serve `app` on `listeners` until SIGTERM/SIGINT (blocking, on the main thread)."""
    server = make_server(app, tls)
    addresses = [listener.address for listener in listeners]
    log.info("sm serve listening on %s", ", ".join(addresses),
             extra={"event": "serve_started", "addresses": addresses, "tls": tls is not None})
    with _signals_after_shutdown():
        server.run(sockets=[listener.sock for listener in listeners])
    log.info("sm serve stopped", extra={"event": "serve_stopped"})


@contextlib.contextmanager
def _signals_after_shutdown() -> Iterator[None]:
    """uvicorn raises the signal that stopped it again once it has shut down, to whatever
    handler was there before it: this one, which lets `sm serve` close its spool and socket
    and exit 0, as `sm run` does."""
    def stopped(signum: int, frame: object) -> None:
        log.debug("signal %d after shutdown", signum, extra={"event": "serve_signal"})

    before = {sig: signal.signal(sig, stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def make_server(app: ASGIApp, tls: Tls | None = None) -> uvicorn.Server:
    """The uvicorn server `serve` runs (tests and benchmarks run it in-process too:
    `server.run(sockets=…)` on a thread, then `server.should_exit = True`)."""
    return uvicorn.Server(uvicorn.Config(
        app, http="auto", loop="auto", lifespan="off", log_config=None, access_log=False,
        server_header=False, proxy_headers=False, timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        ssl_certfile=str(tls.cert) if tls else None, ssl_keyfile=str(tls.key) if tls else None))
