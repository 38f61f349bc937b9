"""The archive PUT to Cloud Storage without the SDK's per-call machinery (the hot path of
`sm run` on a `gs://` destination).

`Blob.upload_from_string` costs ~3 ms of CPU a call here: a `requests` session behind
google-auth's `AuthorizedSession`, trace spans, the bucket-metadata cache, retry wrappers and
a new `Blob` each time. An archive PUT is always the same request, so `GCSLeanPut` sends it
itself, on public interfaces only, keeping every part that carries a guarantee the SDK's:

- **what**: the SDK's multipart upload, byte for byte: `POST {endpoint}/upload/storage/v1/b/
  BUCKET/o?uploadType=multipart&ifGenerationMatch=0` (create-only), a first part with the
  object resource as the SDK serialises it (`name`, `metadata` with the payload hash, the
  `crc32c` of the body, which GCS checks), a second part with the body as
  `application/gzip`, and the SDK's headers;
- **where**: the endpoint the SDK client itself uses (`client.api_endpoint`), which
  `GCSDestination` has checked (HTTPS, or a loopback emulator when allowed);
- **who**: the credentials the SDK would resolve: anonymous with `STORAGE_EMULATOR_HOST`,
  else Application Default Credentials (`google.auth.default` with the client's scopes),
  applied per request by `credentials.before_request`, which refreshes a token before it
  expires (through google-auth's urllib3 transport, on this pool);
- **how**: a urllib3 pool this module owns: keep-alive, as many connections as the
  destination's `max_connections`, the SDK's timeouts, certificates checked against the
  bundle `requests` would use (certifi's, or `REQUESTS_CA_BUNDLE` / `CURL_CA_BUNDLE`).

Only two answers are taken here: 200 with the object resource (created; its generation is
the version id) and 412 (the key is taken: the caller compares the stored bytes). Anything
else — any other status, a reset connection, a timeout, a TLS failure, an answer that does
not read — makes `put` return None, and the caller sends the object again through the SDK,
which classifies errors and retries exactly as it always did (a stalled request costs the
read timeout before that). A create-only PUT can always be sent again: if the first one did
land, the SDK's re-send meets 412 and the caller finds the same bytes stored. After a 401 the
credentials are resolved again for the next PUT, as the SDK's session refreshes them on one.

The path stands down for good (every PUT through the SDK) where it would not send what the
SDK sends: a proxy configured for the endpoint, or mutual TLS (`GOOGLE_API_USE_CLIENT_
CERTIFICATE`, `GOOGLE_API_USE_MTLS_ENDPOINT=always`), where the SDK picks another endpoint
and presents a client certificate.
"""

from __future__ import annotations

import base64
import json
import os
import random
import sys
import threading
import uuid
from typing import Any
from urllib.parse import quote

# Imported only with a gs:// destination (`gcs` loads this module).
import google.auth
import google_crc32c
from google.api_core.client_info import ClientInfo
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import DefaultCredentialsError
from google.auth.transport import mtls
from google.auth.transport.urllib3 import Request as AuthRequest
from google.cloud import storage

from .lean_http import TAKEN, Created, LeanSender, lean_pool

LEAN_AGENT = "sm-put"  # in the User-Agent of every request this path sends
MTLS_ENDPOINT_ENV = "GOOGLE_API_USE_MTLS_ENDPOINT"
CLIENT_CERT_ENV = "GOOGLE_API_USE_CLIENT_CERTIFICATE"
_JSON_PART = b"content-type: application/json; charset=UTF-8\r\n\r\n"


def multipart_body(key: str, body: bytes, metadata: dict[str, str], content_type: str,
                   boundary: str) -> bytes:
    """The SDK's multipart upload body: the object resource (name, metadata, CRC32C of the
    body, serialised as the SDK does) then the body."""
    crc = base64.b64encode(google_crc32c.Checksum(body).digest()).decode("ascii")
    resource = json.dumps({"name": key, "metadata": metadata, "crc32c": crc}).encode("utf-8")
    separator = b"--" + boundary.encode("ascii")
    return b"".join((
        separator, b"\r\n", _JSON_PART, resource, b"\r\n",
        separator, b"\r\ncontent-type: ", content_type.encode("utf-8"), b"\r\n\r\n", body,
        b"\r\n", separator, b"--"))


def new_boundary() -> str:
    """A part boundary of the SDK's form (fifteen `=`, nineteen random digits, `==`)."""
    return f"==============={random.randrange(sys.maxsize):019d}=="


def mtls_wanted() -> bool:
    """Whether the SDK would use mutual TLS (another endpoint, a client certificate)."""
    if os.environ.get(MTLS_ENDPOINT_ENV, "").strip().lower() == "always":
        return True
    # google-auth's own decision where it has one (it also reads a certificate config file)
    should_use = getattr(mtls, "should_use_client_cert", None)
    if should_use is not None:
        try:
            return bool(should_use())
        except Exception:  # a decision it cannot make: leave it to the SDK
            return True
    return os.environ.get(CLIENT_CERT_ENV, "").strip().lower() == "true"


class GCSLeanPut(LeanSender):
    """The create-only multipart upload to one bucket, sent on this path's own pool: a 200 is
    `Created` (at its generation), a 412 `TAKEN`."""

    def __init__(self, endpoint: str, bucket: str, *, emulator: bool, max_connections: int,
                 timeout: tuple[float, float], content_type: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self._emulator = emulator
        self._content_type = content_type
        self._url = (f"{self.endpoint}/upload/storage/v1/b/{quote(bucket, safe='')}/o"
                     "?uploadType=multipart&ifGenerationMatch=0")
        pool, direct = lean_pool(self._url, max_connections, *timeout)
        super().__init__(pool)
        #: False when this path leaves every PUT to the SDK (see the module docstring).
        self.enabled = direct and not mtls_wanted()
        self._auth_request = AuthRequest(self._pool)
        agent = ClientInfo(client_library_version=storage.__version__,
                           user_agent=f"gcloud-python/{storage.__version__} {LEAN_AGENT}")
        self._user_agent = agent.to_user_agent()
        self._credentials: Any = None
        self._credentials_lock = threading.Lock()

    # ----------------------------------------------------------------------- credentials

    def _authorised(self, headers: dict[str, str]) -> None:
        """Add the credentials' headers (a token refreshed first when it is due)."""
        with self._credentials_lock:
            if self._credentials is None:
                if self._emulator:
                    self._credentials = AnonymousCredentials()  # as the SDK, on an emulator
                else:
                    try:
                        self._credentials, _ = google.auth.default(scopes=list(
                            storage.Client.SCOPE))
                    except DefaultCredentialsError:
                        self.enabled = False  # the SDK reports it, on every PUT until closed
                        raise
            self._credentials.before_request(self._auth_request, "POST", self._url, headers)

    # ----------------------------------------------------------------------- the request

    def put(self, key: str, body: bytes, metadata: dict[str, str]) -> Created | str | None:
        """`Created`, `TAKEN`, or None for an answer the SDK must handle (send it again
        through the SDK)."""
        if not self.enabled:
            return None
        boundary = new_boundary()
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": self._user_agent,
            "x-goog-api-client": f"{self._user_agent} gccl-invocation-id/{uuid.uuid4()}",
            "content-type": f'multipart/related; boundary="{boundary}"',
            "x-upload-content-type": self._content_type,
        }
        payload = multipart_body(key, body, metadata, self._content_type, boundary)
        try:
            self._authorised(headers)
            response = self._send("POST", self._url, payload, headers)
            status = response.status
            if status == 200:
                resource = json.loads(response.data)
                generation = resource.get("generation")
                if resource.get("name") == key:
                    return Created(str(generation) if generation is not None else None)
            elif status == 412:
                return TAKEN
            elif status == 401:  # a token GCS no longer takes: resolve them again next time
                with self._credentials_lock:
                    self._credentials = None
        except Exception:  # the SDK sends it again and reports what it meets
            pass
        self._hand_back()
        return None

    def close(self) -> None:
        """Close the connections and forget the credentials."""
        with self._credentials_lock:
            self._credentials = None
        self._pool.clear()
