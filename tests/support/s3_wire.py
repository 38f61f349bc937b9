"""A recording proxy between boto3 and moto's S3 server that also enforces the bucket-owner
condition the way S3 does.

moto's server ignores `x-amz-expected-bucket-owner`; real S3 answers 403 AccessDenied when
the header names another account than the bucket's owner. This proxy does the same (asking
the in-process moto which account owns the bucket), so the real SDK code meets the real
failure. Every request is recorded with its headers, so tests can read what went on the wire.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from tests.support.http_relay import RelayHandler

OWNER_HEADER = "x-amz-expected-bucket-owner"


@dataclass(frozen=True)
class WireRequest:
    """One request as it crossed the wire."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names

    @property
    def bucket(self) -> str:
        """The bucket of a path-style request ('' for the service root)."""
        return unquote(urlsplit(self.path).path.lstrip("/").split("/", 1)[0])

    @property
    def access_key(self) -> str | None:
        """The access key id in the SigV4 Authorization header."""
        auth = self.headers.get("authorization", "")
        if "Credential=" not in auth:
            return None
        return auth.split("Credential=", 1)[1].split("/", 1)[0]


class WireProxy:
    """Forward to moto, record every request, refuse a wrong expected owner like S3 does."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.requests: list[WireRequest] = []
        self.fail_status: int | None = None  # answer every request with this 5xx when set
        self.deny: Callable[[WireRequest], bool] | None = None  # 403 what this matches
        # 501 NotImplemented what this matches (an S3-compatible store lacking an API)
        self.unimplemented: Callable[[WireRequest], bool] | None = None
        self._lock = threading.Lock()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, name="s3-wire", daemon=True).start()

    def reset(self) -> None:
        """Empty the log and pass everything through."""
        with self._lock:
            self.requests = []
            self.fail_status = None
            self.deny = None
            self.unimplemented = None

    def seen(self, bucket: str | None = None, method: str | None = None) -> list[WireRequest]:
        """Recorded requests, optionally only those to `bucket` and/or of `method`."""
        with self._lock:
            return [r for r in self.requests if (bucket is None or r.bucket == bucket)
                    and (method is None or r.method == method)]

    def _record(self, request: WireRequest) -> None:
        with self._lock:
            self.requests.append(request)


_PROXIES: dict[str, WireProxy] = {}


def wire_proxy(upstream: str) -> WireProxy:
    """The one proxy in front of `upstream` (started on first use), with an empty log."""
    proxy = _PROXIES.get(upstream)
    if proxy is None:
        proxy = _PROXIES[upstream] = WireProxy(upstream)
    proxy.reset()
    return proxy


def bucket_owner(bucket: str) -> str | None:
    """The account that owns `bucket` in the in-process moto server."""
    from moto.s3.models import s3_backends

    entry = s3_backends.bucket_accounts.get(bucket)
    return entry[1] if entry else None


def _handler_for(proxy: WireProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(RelayHandler):
        def _handle(self) -> None:
            body = self._body()
            request = WireRequest(self.command, self.path,
                                  {k.lower(): v for k, v in self.headers.items()})
            proxy._record(request)
            if proxy.fail_status:
                self._error(proxy.fail_status, "InternalError", "We encountered an error")
                return
            if proxy.deny is not None and proxy.deny(request):
                self._error(403, "AccessDenied", "Access Denied")
                return
            if proxy.unimplemented is not None and proxy.unimplemented(request):
                self._error(501, "NotImplemented", "A header you provided implies"
                            " functionality that is not implemented")
                return
            expected = request.headers.get(OWNER_HEADER)
            owner = bucket_owner(request.bucket) if request.bucket else None
            if expected and owner and expected != owner:
                self._error(403, "AccessDenied", "Access Denied")
                return
            self._relay(proxy.upstream, body)

        def _error(self, status: int, code: str, message: str) -> None:
            payload = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                       f"<Message>{message}</Message><RequestId>wire</RequestId></Error>"
                       ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", "0" if self.command == "HEAD"
                             else str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler
