"""`sm serve`: take messages and send events in over HTTP (SPEC 9.3, docs/serve.md)."""

# No `from __future__ import annotations`: typer would have to eval every annotation.

import logging
import os
import stat
from pathlib import Path
from typing import Annotated, Any

import typer

from ..clock import Clock, SystemClock
from .common import command, fail, state_of, usage_error

log = logging.getLogger("sm.serve")

MIN_TOKEN_LENGTH = 16
SOCKET = "serve.sock"
TOKEN_HINT = "make one: (umask 077; openssl rand -hex 32 > sm-serve.token)"


def serve(
    ctx: typer.Context,
    socket_path: Annotated[str | None, typer.Option(
        "--socket", metavar="PATH",
        help="Listen on this Unix socket (mode 0600). Default: SM_HOME/serve.sock when"
        " --listen is not given.")] = None,
    listen: Annotated[str | None, typer.Option(
        "--listen", metavar="HOST:PORT",
        help="Also (or only) listen on TCP; needs --token-file, and TLS off loopback.")] = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", envvar="SM_SERVE_TOKEN_FILE", metavar="FILE",
        help="The bearer token /v1/messages and /v1/events require (required on TCP).")] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", metavar="FILE", help="TLS certificate chain (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        "--tls-key", metavar="FILE", help="TLS private key (PEM).")] = None,
) -> None:
    """Take messages and send events in over HTTP, answering after the spool's COMMIT.

    POST /v1/messages and /v1/events take one JSON document or JSON Lines
    (Content-Type: application/x-ndjson) and answer with sm ingest's summary. Runs until
    SIGTERM/SIGINT (requests in flight finish first). Example: sm serve --listen
    127.0.0.1:8025 --token-file /etc/sm/serve.token
    """
    state = state_of(ctx)
    _require_the_extra()
    from ..serve.listen import closing_all, inherited_listeners

    inherited = inherited_listeners()
    if inherited and (socket_path or listen):
        raise usage_error("systemd passed this process its sockets (LISTEN_FDS); --socket"
                          " and --listen are not used with socket activation",
                          hint="remove --socket/--listen from the service's ExecStart")
    token = _read_token(token_file) if token_file else None
    tls = _tls(tls_cert, tls_key)
    with closing_all(inherited) as listeners:
        if not inherited:  # made into `listeners`: closed (socket file removed) whatever fails
            _listen(listeners, state, socket_path, listen, token, tls)
        _check_listeners(listeners, token, tls)
        _run(state, listeners, token, tls)


def _require_the_extra() -> None:
    """Exit 1 naming the extra when Starlette or uvicorn is missing (not a traceback)."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        fail(f"sm serve needs the extra [serve] (Starlette and uvicorn): {exc}",
             hint="pip install 'stored-messages-cli[serve]'")


def _listen(made: list[Any], state: Any, socket_path: str | None, listen: str | None,
            token: bytes | None, tls: Any) -> None:
    """Add the sockets the options ask for to `made`, the TCP rules checked before anything
    is bound."""
    from ..ops.metrics import parse_metrics_addr
    from ..serve.listen import tcp_listener, unix_listener

    address = None
    if listen is not None:
        try:
            address = parse_metrics_addr(listen)
        except ValueError as exc:
            raise usage_error(str(exc), param_hint="--listen") from None
        _check_tcp(address[0], token, tls)
    if socket_path is not None or listen is None:
        from ..config import ensure_private_dir

        # SM_HOME/serve.sock (without SM_HOME, beside the spool in the state folder)
        path = Path(socket_path) if socket_path else state.paths.spool_file.parent / SOCKET
        ensure_private_dir(path.parent)
        made.append(unix_listener(path))
    if address is not None:
        made.append(tcp_listener(*address))


def _check_tcp(host: str, token: bytes | None, tls: Any) -> None:
    from ..network import is_loopback

    if token is None:
        raise usage_error("TCP needs a bearer token: give --token-file FILE (or"
                          " SM_SERVE_TOKEN_FILE)", param_hint="--listen", hint=TOKEN_HINT)
    if tls is None and not is_loopback(host):
        raise usage_error(f"{host} is not a loopback address: TCP off loopback needs TLS"
                          " (--tls-cert FILE --tls-key FILE)", param_hint="--listen",
                          hint="give --tls-cert and --tls-key, or listen on 127.0.0.1")


def _check_listeners(listeners: list[Any], token: bytes | None, tls: Any) -> None:
    """The TCP rules for sockets systemd passed (options were checked before binding)."""
    for listener in listeners:
        if listener.is_tcp:
            _check_tcp(str(listener.sock.getsockname()[0]), token, tls)


def _read_token(path: Path) -> bytes:
    """The token in `path` (surrounding whitespace removed); a usage error if unusable."""
    try:
        mode = path.stat().st_mode
        text = path.read_bytes().strip()
    except OSError as exc:
        raise usage_error(f"cannot read {path}: {exc.strerror or exc}",
                          param_hint="--token-file", hint=TOKEN_HINT) from None
    if len(text) < MIN_TOKEN_LENGTH or b"\n" in text or b" " in text:
        raise usage_error(f"{path} must hold one token of at least {MIN_TOKEN_LENGTH}"
                          " characters on one line", param_hint="--token-file",
                          hint=TOKEN_HINT)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the token file %s can be read by other users; chmod 600 it", path,
                    extra={"event": "serve_token_file_open"})
    return text


def _tls(cert: Path | None, key: Path | None) -> Any:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise usage_error("give both --tls-cert and --tls-key", param_hint="--tls-cert")
    for path, option in ((cert, "--tls-cert"), (key, "--tls-key")):
        if not os.access(path, os.R_OK) or not path.is_file():
            raise usage_error(f"cannot read {path}", param_hint=option)
    import ssl

    from ..serve.server import Tls

    try:  # a bad pair is a usage error now, not a traceback when the first client connects
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise usage_error(f"the TLS certificate and key do not load: {exc}",
                          param_hint="--tls-cert") from None
    return Tls(cert, key)


def _run(state: Any, listeners: list[Any], token: bytes | None, tls: Any) -> None:
    from ..config.last_good import intake_settings
    from ..serve.app import ServeOptions, build_app
    from ..serve.server import adopt_uvicorn_logs
    from ..serve.server import serve as run_server

    found = intake_settings(state.paths.config_file)
    if found.problem is not None:
        state.output.warn(f"config.toml is not valid ({found.problem}); serving with"
                          f" {found.source}. Try: fix it (sm status shows it until then)")
    settings = found.settings
    clock = SystemClock()
    adopt_uvicorn_logs()
    with state.open_spool(create=True) as spool:
        options = ServeOptions(max_payload_bytes=settings.max_payload_bytes,
                               max_queued=settings.serve_max_queued, token=token)
        app = build_app(spool, options, clock, receiver=_webhook_receiver(spool, settings,
                                                                          clock))
        run_server(app, listeners, tls)


def _webhook_receiver(spool: Any, settings: Any, clock: Clock) -> Any:
    """The provider webhooks' receiver (`serve.app.WebhookReceiver`, SPEC 9.3), or None when
    no project configures a provider: `/v1/providers/…` then answers 404."""
    from ..webhooks.receiver import make_receiver

    return make_receiver(spool, settings, clock)


def register(app: typer.Typer) -> None:
    """Add serve."""
    command(app, "serve")(serve)
