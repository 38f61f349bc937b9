"""A relay in front of Azurite that teaches it version-level immutability, which it does not
implement ("Current API is not implemented yet"): the one rule of Azure legal holds, as the
GCS fixture teaches its emulator `ifGenerationMatch`.

What it adds, as Azure Blob Storage does it: Get Container Properties says
`x-ms-immutable-storage-with-versioning-enabled: true`; Set Blob Legal Hold
(`PUT ?comp=legalhold`) and Set Blob Immutability Policy (`PUT ?comp=immutabilityPolicies`)
are kept per blob (and version) and shown by Get Blob Properties (`x-ms-legal-hold`,
`x-ms-immutability-policy-until-date`, `x-ms-immutability-policy-mode`); Delete Blob of a
held blob is refused (409 `BlobImmutableDueToLegalHold`). Everything else goes to Azurite
unchanged.
"""

from __future__ import annotations

import threading
import uuid
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.http_relay import RelayHandler


class AzureHoldsRelay:
    """Forward to Azurite (`upstream`, its blob endpoint URL), keeping holds and policies."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.holds: dict[tuple[str, str], bool] = {}
        self.policies: dict[tuple[str, str], tuple[str, str]] = {}  # (until, mode)
        self._lock = threading.Lock()
        relay = self

        class Handler(RelayHandler):
            def _handle(self) -> None:
                body = self._body()
                split = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                place = (unquote(split.path), query.get("versionid", ""))
                comp, restype = query.get("comp"), query.get("restype")
                if self.command == "PUT" and comp == "legalhold":
                    held = self.headers.get("x-ms-legal-hold", "").lower() == "true"
                    with relay._lock:
                        relay.holds[place] = held
                    self._answer(200, {"x-ms-legal-hold": "true" if held else "false"})
                    return
                if self.command == "PUT" and comp == "immutabilityPolicies":
                    until = self.headers.get("x-ms-immutability-policy-until-date", "")
                    mode = self.headers.get("x-ms-immutability-policy-mode", "Unlocked")
                    with relay._lock:
                        relay.policies[place] = (until, mode)
                    self._answer(200, {"x-ms-immutability-policy-until-date": until,
                                       "x-ms-immutability-policy-mode": mode})
                    return
                if self.command == "DELETE" and not comp and relay.held(place):
                    self._answer(409, {"x-ms-error-code": "BlobImmutableDueToLegalHold"})
                    return
                extra: dict[str, str] = {}
                if restype == "container" and not comp and self.command in ("GET", "HEAD"):
                    extra["x-ms-immutable-storage-with-versioning-enabled"] = "true"
                elif not comp and not restype and self.command in ("GET", "HEAD"):
                    with relay._lock:
                        if relay.holds.get(place) is not None:
                            extra["x-ms-legal-hold"] = str(relay.holds[place]).lower()
                        if place in relay.policies:
                            until, mode = relay.policies[place]
                            extra["x-ms-immutability-policy-until-date"] = until
                            extra["x-ms-immutability-policy-mode"] = mode
                self._relay(target, body, extra)

            def _answer(self, status: int, headers: dict[str, str]) -> None:
                self.send_response_only(status)
                for name, value in {**headers, "x-ms-request-id": str(uuid.uuid4()),
                                    "x-ms-version": "2023-11-03",
                                    "Content-Length": "0"}.items():
                    self.send_header(name, value)
                self.end_headers()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        path = parts.path.rstrip("/")
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        threading.Thread(target=self.server.serve_forever, name="azure-holds-relay",
                         daemon=True).start()

    def held(self, place: tuple[str, str]) -> bool:
        """True while the blob (version) at `place` has a legal hold."""
        with self._lock:
            return bool(self.holds.get(place) or self.holds.get((place[0], "")))

    def close(self) -> None:
        """Stop relaying."""
        self.server.shutdown()
        self.server.server_close()


def relay_for(azurite_endpoint: str) -> Any:
    """An AzureHoldsRelay in front of Azurite's blob endpoint."""
    return AzureHoldsRelay(azurite_endpoint)
