"""The lean S3 PUT's own HTTP connections: a urllib3 pool set up as botocore sets up the
client's, from the client's public configuration.

`make_s3_client` gives the client its CA bundle and TCP keep-alive explicitly and hands the
same values here; timeouts, pool size, proxies and the client certificate are read from
`client.meta.config`; proxies from the environment are looked up as botocore looks them up
(`urllib.request.getproxies` / `proxy_bypass` for the client's endpoint). A proxy setting
this pool does not reproduce (`proxies_config`) makes `HttpPool.supported` false, and the
lean path then leaves every PUT to the client. urllib3's errors become the botocore
exceptions the client raises for them, so a failure reads and classifies the same.
"""

from __future__ import annotations

import base64
import socket
import threading
from concurrent.futures import CancelledError
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies, proxy_bypass

# Imported only with an S3 destination (`s3_put` loads this module when it connects).
import urllib3
from botocore import exceptions as botocore_errors
from botocore.awsrequest import AWSResponse
from botocore.httpsession import get_cert_path, mask_proxy_url
from urllib3 import exceptions as urllib3_errors
from urllib3.util import parse_url
from urllib3.util.retry import Retry

# What botocore's client sets on every socket (Nagle off), plus keep-alive when asked.
_NO_DELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
_KEEPALIVE = (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


def environment_proxies(endpoint_url: str) -> dict[str, str]:
    """The proxies botocore takes from the environment for `endpoint_url` (none when
    `no_proxy` covers its host), by scheme."""
    try:
        if proxy_bypass(urlsplit(endpoint_url).netloc):
            return {}
    except (TypeError, socket.gaierror):  # as botocore: a failing lookup is no bypass
        pass
    return dict(getproxies())


def full_proxy_url(proxy: str) -> str:
    """A proxy URL with its scheme (`proxy:3128` means `http://proxy:3128`, as in botocore)."""
    if proxy.startswith(("http:", "https:")):
        return proxy
    return "http:" + proxy if proxy.startswith("//") else "http://" + proxy


def proxy_headers(proxy_url: str) -> dict[str, str]:
    """`Proxy-Authorization` for the user and password in `proxy_url`, if it has both."""
    parts = urlsplit(proxy_url)
    if not (parts.username and parts.password):
        return {}
    pair = f"{unquote(parts.username)}:{unquote(parts.password)}".encode("ascii")
    return {"Proxy-Authorization": f"Basic {base64.b64encode(pair).decode()}"}


def host_header(url: str) -> str:
    """The Host header an HTTP client sends for `url`: its lower-case host, bracketed when
    IPv6, with the port unless it is the scheme's default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


class HttpPool:
    """Connections to one S3 endpoint, with the client's TLS, proxy, timeout and pool
    settings; `send` is one request and its whole answer."""

    def __init__(self, config: Any, endpoint_url: str, verify: bool | str,
                 tcp_keepalive: bool) -> None:
        # A proxy's own CA bundle, client certificate or HTTPS forwarding: not reproduced.
        self.supported = not config.proxies_config
        self._proxies = {scheme: full_proxy_url(url) for scheme, url in (
            config.proxies if config.proxies is not None
            else environment_proxies(endpoint_url)).items() if url}
        cert_file, key_file = (config.client_cert if isinstance(config.client_cert, tuple)
                               else (config.client_cert, None))
        self._settings: dict[str, Any] = {
            "timeout": urllib3.Timeout(connect=config.connect_timeout,
                                       read=config.read_timeout),
            "maxsize": config.max_pool_connections,
            "socket_options": [_NO_DELAY, *([_KEEPALIVE] if tcp_keepalive else [])],
            "cert_file": cert_file, "key_file": key_file,
            # botocore checks certificates against this bundle (certifi's by default)
            **({"cert_reqs": "CERT_REQUIRED", "ca_certs": get_cert_path(verify)} if verify
               else {"cert_reqs": "CERT_NONE"}),
        }
        self._direct = urllib3.PoolManager(**self._settings)
        self._proxied: dict[str, urllib3.ProxyManager] = {}
        self._lock = threading.Lock()
        self._origins: dict[tuple[str, str], tuple[str, int | None, str]] = {}

    def proxy_for(self, url: str) -> str | None:
        """The proxy a request to `url` goes through, or None."""
        return self._proxies.get(urlsplit(url).scheme)

    def _manager(self, proxy_url: str | None) -> urllib3.PoolManager:
        if proxy_url is None:
            return self._direct
        with self._lock:
            manager = self._proxied.get(proxy_url)
            if manager is None:
                manager = self._proxied[proxy_url] = urllib3.ProxyManager(
                    proxy_url, proxy_headers=proxy_headers(proxy_url), **self._settings)
        return manager

    def send(self, url: str, body: bytes, headers: dict[str, str]) -> AWSResponse:
        """PUT `body` to `url` (no retries, no redirects) and read the whole answer; the
        connection goes back to the pool. Raises the botocore exception for a failure."""
        proxy_url = self.proxy_for(url)
        try:
            pool = self._manager(proxy_url).connection_from_host(*self._origin(url))
            # a plain-HTTP request through a proxy names the whole URL, as botocore sends it
            target = url if proxy_url and url.startswith("http:") else request_path(url)
            raw = pool.urlopen(
                method="PUT", url=target, body=body, headers=headers, retries=Retry(False),
                assert_same_host=False, redirect=False, preload_content=False,
                decode_content=False, chunked=False, enforce_content_length=False)
            response = AWSResponse(url, raw.status, raw.headers, raw)
            _ = response.content  # read it all: the connection goes back to the pool
            return response
        except CancelledError:
            raise
        except Exception as exc:
            # the exception botocore raises for it (with no cause, as botocore raises it)
            raise botocore_http_error(exc, url, proxy_url) from None

    def _origin(self, url: str) -> tuple[str, int | None, str]:
        """The host, port and scheme urllib3 reads from `url` (as `connection_from_url`
        does), parsed once per endpoint rather than once per request."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        origin = self._origins.get(key)
        if origin is None:
            parsed = parse_url(f"{parts.scheme}://{parts.netloc}")
            origin = self._origins[key] = (parsed.host or "", parsed.port, parsed.scheme or "http")
        return origin

    def close(self) -> None:
        """Close every open connection (the pool stays usable)."""
        self._direct.clear()
        with self._lock:
            for manager in self._proxied.values():
                manager.clear()


def request_path(url: str) -> str:
    """The path and query of `url`, as sent on the request line."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def botocore_http_error(exc: Exception, url: str, proxy_url: str | None) -> Exception:
    """The botocore exception the client's HTTP session makes of urllib3's `exc`."""
    if isinstance(exc, urllib3_errors.SSLError):
        return botocore_errors.SSLError(endpoint_url=url, error=exc)
    if isinstance(exc, urllib3_errors.NewConnectionError | socket.gaierror):
        return botocore_errors.EndpointConnectionError(endpoint_url=url, error=exc)
    if isinstance(exc, urllib3_errors.ProxyError):
        return botocore_errors.ProxyConnectionError(proxy_url=mask_proxy_url(proxy_url), error=exc)
    if isinstance(exc, urllib3_errors.ConnectTimeoutError):
        return botocore_errors.ConnectTimeoutError(endpoint_url=url, error=exc)
    if isinstance(exc, urllib3_errors.ReadTimeoutError):
        return botocore_errors.ReadTimeoutError(endpoint_url=url, error=exc)
    if isinstance(exc, urllib3_errors.ProtocolError):
        return botocore_errors.ConnectionClosedError(error=exc, request=None, endpoint_url=url)
    return botocore_errors.HTTPClientError(error=exc)
