"""The archive PUT to Azure Blob Storage without the SDK's per-call machinery (the hot path of
`sm run` on an `az://` destination).

`BlobClient.upload_blob` costs ~3 ms of CPU a call here: a new blob client, the azure-core
pipeline's dozen policies, request and response objects, a `requests` session. An archive PUT
is always the same request, so `AzureLeanPut` sends it itself, keeping every part that carries
a guarantee the SDK's:

- **what**: the SDK's Put Blob: `PUT {account URL}/CONTAINER/BLOB` (names quoted as the SDK
  quotes them), `x-ms-blob-type: BlockBlob`, `If-None-Match: *` (create-only), `Content-MD5`
  (the service checks the body against it) and `x-ms-blob-content-md5` (stored), the content
  type, the `sm_payload_sha256` metadata and the SDK's `x-ms-version`;
- **where**: the account URL of the SDK's own service client (`service.url`), which
  `AzureDestination` has checked (HTTPS, or a loopback emulator when allowed);
- **who**: the credential the SDK was given: a connection string's account key signs the
  request with Shared Key (the documented algorithm, over the same headers the SDK signs), its
  shared access signature is added to the URL's query; with `--account-url`, the same
  `DefaultAzureCredential` object the SDK holds gives an Entra ID token
  (`get_token("https://storage.azure.com/.default")`, azure-core's public protocol), kept
  until five minutes before it expires, as azure-core's bearer-token policy keeps it;
- **how**: a urllib3 pool this module owns (`lean_http.lean_pool`): keep-alive, the
  destination's `max_connections`, the SDK's timeouts, certificates checked against the
  bundle `requests` would use.

Only two answers are taken here: 201 (created; `x-ms-version-id` is the version id) and 409
`BlobAlreadyExists` (the key is taken: the caller compares the stored bytes). Anything else —
any other status, a reset connection, a timeout, a TLS failure — makes `put` return None, and
the caller sends the blob again through the SDK, which classifies errors and retries exactly
as it always did (a stalled request costs the read timeout before that). A create-only PUT
can always be sent again: if the first one did land, the SDK's re-send meets
`BlobAlreadyExists` and the caller finds the same bytes stored.

The path stands down for good (every PUT through the SDK) for a connection string it does
not read (`UseDevelopmentStorage`, an account key that is not base64), for a token over plain
HTTP (the SDK refuses to send one), after a 401 to a token (the SDK's bearer policy answers
the service's challenge, e.g. another tenant), and where a proxy applies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import platform
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, urlsplit

# Imported only with an az:// destination (`azure` loads this module).
from azure.storage.blob import __version__ as sdk_version

from .lean_http import TAKEN, Created, LeanSender, lean_pool

LEAN_AGENT = "sm-put"  # in the User-Agent of every request this path sends
STORAGE_SCOPE = "https://storage.azure.com/.default"
TOKEN_REFRESH_SECONDS = 300  # a token this close to its expiry is replaced (as azure-core)
# The fixed headers Shared Key signs by position (Content-Length and the rest by name).
_POSITIONAL = ("content-encoding", "content-language", "content-length", "content-md5",
               "content-type", "date", "if-modified-since", "if-match", "if-none-match",
               "if-unmodified-since", "range")


@dataclass(frozen=True)
class AccountCredential:
    """What a connection string authenticates with: an account key or a SAS token."""

    account_name: str
    account_key: bytes | None = None  # decoded
    sas: str | None = None  # the query string, without `?`
    token_credential: Any = None  # an azure-core TokenCredential (get_token)


def connection_credential(connection_string: str) -> AccountCredential | None:
    """The credential the SDK takes from a connection string (its account key, else its
    shared access signature), or None for one this path does not handle."""
    pairs = [part.split("=", 1) for part in connection_string.strip().rstrip(";").split(";")]
    if any(len(pair) != 2 for pair in pairs):
        return None
    settings = {name.strip().upper(): value for name, value in pairs}
    if settings.get("USEDEVELOPMENTSTORAGE", "").lower() == "true":
        return None
    name, key = settings.get("ACCOUNTNAME"), settings.get("ACCOUNTKEY")
    if name and key:
        try:
            return AccountCredential(name, account_key=base64.b64decode(key, validate=True))
        except (binascii.Error, ValueError):
            return None
    sas = settings.get("SHAREDACCESSSIGNATURE", "").lstrip("?")
    if sas:
        return AccountCredential(name or "", sas=sas)
    return None


def shared_key_signature(account_name: str, account_key: bytes, method: str, path: str,
                         headers: dict[str, str]) -> str:
    """The `Authorization` value of a Shared Key request with no query (the Blob service's
    string-to-sign: the verb, the fixed headers by position with a zero Content-Length as
    empty, the `x-ms-` headers sorted, then `/account/path`)."""
    lower = {name.lower(): value for name, value in headers.items() if value}
    if lower.get("content-length") == "0":
        del lower["content-length"]
    canonical = "".join(f"{name}:{value}\n" for name, value in sorted(
        (name, value) for name, value in lower.items() if name.startswith("x-ms-")))
    to_sign = (method + "\n" + "\n".join(lower.get(name, "") for name in _POSITIONAL) + "\n"
               + canonical + f"/{account_name}{path}")
    digest = hmac.digest(account_key, to_sign.encode("utf-8"), "sha256")
    return f"SharedKey {account_name}:{base64.b64encode(digest).decode('ascii')}"


class AzureLeanPut(LeanSender):
    """Put Blob (create-only) into one container, sent on this path's own pool: a 201 is
    `Created` (with its version id), a 409 BlobAlreadyExists `TAKEN`."""

    def __init__(self, account_url: str, container: str, credential: AccountCredential | None,
                 *, api_version: str, max_connections: int, timeout: tuple[float, float],
                 content_type: str, clock: Callable[[], float] = time.time) -> None:
        self._base = account_url.split("?", 1)[0].rstrip("/")
        self._container_path = f"/{quote(container.encode('utf-8'))}/"
        self._credential = credential
        self._api_version = api_version
        self._content_type = content_type
        self._clock = clock
        pool, direct = lean_pool(self._base + "/", max_connections, *timeout)
        super().__init__(pool)
        bearer = credential is not None and credential.token_credential is not None
        #: False when this path leaves every PUT to the SDK (see the module docstring).
        self.enabled = direct and credential is not None and not (
            bearer and not self._base.startswith("https://"))
        self._token: Any = None  # the last AccessToken
        self._token_lock = threading.Lock()
        self._user_agent = (f"azsdk-python-storage-blob/{sdk_version} Python/"
                            f"{platform.python_version()} ({platform.platform()}) {LEAN_AGENT}")

    def _request(self, key: str, body: bytes, metadata: dict[str, str]
                 ) -> tuple[str, dict[str, str]]:
        """The URL and headers of the Put Blob, signed."""
        credential = self._credential
        assert credential is not None
        url = self._base + self._container_path + quote(key, safe="~/")
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode("ascii")
        headers = {
            "User-Agent": self._user_agent,
            "Accept-Encoding": "gzip, deflate",
            "Accept": "application/xml",
            "Content-Length": str(len(body)),
            **{f"x-ms-meta-{name}": value for name, value in metadata.items()},
            "x-ms-blob-type": "BlockBlob",
            "x-ms-blob-content-type": self._content_type,
            "x-ms-blob-content-md5": md5,
            "If-None-Match": "*",
            "x-ms-version": self._api_version,
            "Content-Type": "application/octet-stream",
            "Content-MD5": md5,
            "x-ms-date": formatdate(self._clock(), usegmt=True),
            "x-ms-client-request-id": str(uuid.uuid4()),  # the SDK uuid1(): 30 µs more
        }
        if credential.token_credential is not None:
            headers["Authorization"] = f"Bearer {self._bearer_token(credential)}"
        elif credential.account_key is not None:
            headers["Authorization"] = shared_key_signature(
                credential.account_name, credential.account_key, "PUT", urlsplit(url).path,
                headers)
        elif credential.sas:
            url = f"{url}?{credential.sas}"
        return url, headers

    def _bearer_token(self, credential: AccountCredential) -> str:
        """The current token, asked for again when it is within five minutes of expiry."""
        with self._token_lock:
            token = self._token
            if token is None or token.expires_on - self._clock() < TOKEN_REFRESH_SECONDS:
                token = self._token = credential.token_credential.get_token(STORAGE_SCOPE)
            return str(token.token)

    def put(self, key: str, body: bytes, metadata: dict[str, str]) -> Created | str | None:
        """`Created`, `TAKEN`, or None for an answer the SDK must handle (send it again
        through the SDK)."""
        if not self.enabled:
            return None
        try:
            url, headers = self._request(key, body, metadata)
            response = self._send("PUT", url, body, headers)
            if response.status == 201:
                return Created(response.headers.get("x-ms-version-id"))
            if response.status == 409 and response.headers.get(
                    "x-ms-error-code") == "BlobAlreadyExists":
                return TAKEN
            if response.status == 401 and self._credential is not None and (
                    self._credential.token_credential is not None):
                self.enabled = False  # the SDK's bearer policy answers the challenge
        except Exception:  # the SDK sends it again and reports what it meets
            pass
        self._hand_back()
        return None

    def close(self) -> None:
        """Close the connections and forget the token."""
        with self._token_lock:
            self._token = None
        self._pool.clear()
