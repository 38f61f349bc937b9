"""The connections of the lean GCS and Azure PUTs: a urllib3 keep-alive pool with the TLS
settings the SDKs' `requests` sessions use, or word that a proxy applies (the lean paths then
leave every PUT to their SDK, which goes through it)."""

from __future__ import annotations

import os
from typing import Any

# Imported only by the lean PUTs (with a gs:// or az:// destination); both SDKs use requests.
import requests
import urllib3
from requests.utils import select_proxy


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
