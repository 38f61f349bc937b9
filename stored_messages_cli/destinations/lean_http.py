"""What the lean GCS and Azure PUTs share: a urllib3 keep-alive pool with the TLS settings the
SDKs' `requests` sessions use, or word that a proxy applies (the lean paths then leave every
PUT to their SDK, which goes through it); the answers a lean PUT takes (`Created`, `TAKEN`)
and how a destination acts on them (`put_lean_first`); the requests it sends and the answers
it hands back to the SDK, counted (`LeanSender`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

# Imported only by the lean PUTs (with a gs:// or az:// destination); both SDKs use requests.
import requests
import urllib3
from requests.utils import select_proxy
from urllib3.util.retry import Retry

from .base import PutResult

TAKEN: Final = "taken"  # the key is taken already: the caller compares the stored bytes


@dataclass(frozen=True)
class Created:
    """The service created the object, with this version id (a GCS generation; an Azure
    version id on an account with versioning), if it gave one."""

    version_id: str | None


class LeanPut(Protocol):
    def put(self, key: str, body: bytes, metadata: dict[str, str]) -> Created | str | None:
        """`Created`, `TAKEN`, or None: an answer the SDK must handle (send it again)."""


def put_lean_first(lean: LeanPut | None, key: str, body: bytes, metadata: dict[str, str], *,
                   existing: Callable[[], PutResult], sdk: Callable[[], PutResult]
                   ) -> PutResult:
    """A destination's create-only `put`: through `lean` when there is one, then `existing`
    (compare the stored bytes) for a taken key, or `sdk` (the SDK's upload, which retries
    and classifies as it always did) for whatever the lean path did not take."""
    if lean is not None:
        answer = lean.put(key, body, metadata)
        if isinstance(answer, Created):
            return PutResult(key=key, created=True, version_id=answer.version_id)
        if answer == TAKEN:
            return existing()
    return sdk()


class LeanSender:
    """A lean PUT's requests on its own pool (no retries, no redirects: an answer it does not
    take goes to the SDK), counting what it sent and what it handed back (tests, metrics)."""

    def __init__(self, pool: urllib3.PoolManager) -> None:
        self._pool = pool
        self.sent = 0
        self.handed_back = 0
        self._count_lock = threading.Lock()

    def _send(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> Any:
        with self._count_lock:
            self.sent += 1
        return self._pool.request(method, url, body=body, headers=headers,
                                  retries=Retry(False), redirect=False, preload_content=True)

    def _hand_back(self) -> None:
        """Count an answer left to the SDK (the caller then returns None)."""
        with self._count_lock:
            self.handed_back += 1


def requests_settings(url: str) -> tuple[str | bool, str | None]:
    """(certificate bundle or True, proxy) that `requests` would use for `url`, from the
    environment as a session with default settings reads it."""
    settings = requests.Session().merge_environment_settings(url, {}, None, None, None)
    proxy = select_proxy(url, settings["proxies"] or {})
    return settings["verify"], proxy


def lean_pool(url: str, max_connections: int, connect: float, read: float
              ) -> tuple[urllib3.PoolManager, bool]:
    """A keep-alive pool for requests to `url` (as many connections as `max_connections`,
    certificates checked against the bundle `requests` uses: certifi's, or
    `REQUESTS_CA_BUNDLE` / `CURL_CA_BUNDLE`), and whether a lean path may use it (False when
    a proxy applies to `url`, or `url` is not http(s))."""
    verify, proxy = requests_settings(url)
    tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED"}
    if verify is False:
        tls = {"cert_reqs": "CERT_NONE"}
    else:
        bundle = requests.certs.where() if verify is True else str(verify)
        tls["ca_cert_dir" if os.path.isdir(bundle) else "ca_certs"] = bundle
    pool = urllib3.PoolManager(maxsize=max(1, max_connections),
                               timeout=urllib3.Timeout(connect=connect, read=read), **tls)
    return pool, proxy is None and url.startswith(("http://", "https://"))
