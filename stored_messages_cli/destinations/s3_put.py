"""The archive PUT to S3 without botocore's per-call machinery (the hot path of `sm run`).

A `put_object` through a boto3 client costs ~3 ms of CPU here: parameter validation,
serialisation, forty-odd event handlers, endpoint rules, response parsing. An archive PUT is
always the same request, so `LeanPut` sends it itself, on public interfaces only, and keeps
every part that carries a guarantee botocore's:

- **where**: the URL and signing region are the ones botocore itself used for this bucket,
  learned from a PUT made through the client (its public `before-send` event), so endpoint
  rules, addressing style, a region redirect and the endpoint checks of `make_s3_client`
  all stay botocore's;
- **what**: every header is serialised from the PutObject model (`If-None-Match`, checksum,
  metadata, object lock, bucket owner, SSE…); before its first request the path compares the
  headers it signs with the ones botocore signed for the learned PUT and stands down if they
  differ;
- **who**: botocore's SigV4 signer (`S3SigV4Auth` on an `AWSRequest`) with the session's
  credentials (`get_credentials()`, the object the client signs with), frozen per request
  with `get_frozen_credentials()`, which refreshes them (AssumeRole, SSO, instance roles)
  before they expire;
- **how**: straight to urllib3, through a pool this module owns (`s3_http.HttpPool`), set up
  as botocore sets up the client's: the same CA bundle, client certificate, proxies,
  timeouts and pool size, with the same mapping of urllib3's errors to botocore's, and no
  `Expect: 100-continue`;
- **when it fails**: botocore's standard-mode retry conditions and backoff (the classes the
  client uses), and a failure raised as the very exception the client would raise, parsed by
  botocore's error parser from the real response body (so a throttle, a 403, a 5xx, a reset
  connection and a taken key are classified exactly as before).

Anything else (no route learned yet, a redirect, any other 3xx or 4xx, a proxy setting the
pool does not reproduce) goes through the client, which handles it as it always did; a
create-only PUT can always be sent again.
"""

from __future__ import annotations

import calendar
import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Imported only with an S3 destination (`S3Destination` loads this module when it connects).
import botocore
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError
from botocore.parsers import create_parser
from botocore.retries.standard import RetryContext
from botocore.utils import percent_encode

from .s3_http import HttpPool, host_header

OPERATION = "PutObject"
_EVENT = f"before-send.s3.{OPERATION}"
# Statuses whose errors this path raises itself (after its retries); others go to the client.
_RAISED_STATUSES = frozenset({403, 404, 409, 412, 429})


@dataclass(frozen=True)
class Route:
    """Where botocore sent a PutObject for this bucket, and how it signed it."""

    base_url: str  # the URL without the `/key` part
    host: str  # its Host header, signed and sent as given
    region: str
    service: str
    signed_headers: frozenset[str]


def signature_scope(authorization: str | None) -> tuple[str, str, frozenset[str]] | None:
    """(region, service, signed header names) of a SigV4 `Authorization` header, or None
    for anything else (unsigned, SigV4a, S3 Express sessions)."""
    if not authorization or not authorization.startswith("AWS4-HMAC-SHA256 "):
        return None
    fields = dict(part.strip().split("=", 1) for part in
                  authorization.removeprefix("AWS4-HMAC-SHA256 ").split(",") if "=" in part)
    scope = fields.get("Credential", "").split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or "SignedHeaders" not in fields:
        return None
    return scope[2], scope[3], frozenset(fields["SignedHeaders"].split(";"))


class LeanPut:
    """`put_object(**params)` for one S3 client, sent directly when it safely can."""

    def __init__(self, client: Any, credentials: Any, retry_policy: Any, max_attempts: int,
                 *, verify: bool | str = True, tcp_keepalive: bool = False,
                 enabled: bool = True) -> None:
        self._client = client
        self._credentials = credentials
        self._retry_policy = retry_policy
        self._max_attempts = max_attempts
        self._operation = client.meta.service_model.operation_model(OPERATION)
        self._members = self._operation.input_shape.members
        self._parser = create_parser(client.meta.service_model.metadata["protocol"])
        # Its own connections, with the TLS rules, proxies and timeouts of the client's
        self._http = HttpPool(client.meta.config, client.meta.endpoint_url, verify,
                              tcp_keepalive)
        self._user_agent = f"Botocore/{_botocore_version()} sm-put"
        self._route: Route | None = None
        self._verified = False
        self._off = not enabled or not self._http.supported or credentials is None
        self._local = threading.local()
        client.meta.events.register(_EVENT, self._observe, unique_id="sm-lean-put-route")

    @property
    def route(self) -> Route | None:
        """The learned route, or None while PUTs still go through the client."""
        return None if self._off else self._route

    def put(self, params: dict[str, Any]) -> dict[str, Any]:
        """What `client.put_object(**params)` returns (`VersionId`), or raises the same."""
        route = self.route
        if route is not None:
            headers = self._headers(params)
            if headers is not None:
                answer = self._send(route, params, headers)
                if answer is not None:
                    return answer
        return self._through_client(params)

    def close(self) -> None:
        """Close this path's open connections (the client closes its own)."""
        self._http.close()

    # ----------------------------------------------------------------------- the client

    def _through_client(self, params: dict[str, Any]) -> dict[str, Any]:
        """The PUT through boto3, learning its route from what went on the wire."""
        self._local.path = self._key_path(params["Key"])
        self._local.sent = None
        try:
            response: dict[str, Any] = self._client.put_object(**params)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
                self._adopt()  # S3 answered at that address: the route is right
            raise
        finally:
            self._local.path = None
        self._adopt()
        return response

    def _observe(self, request: Any, **_: Any) -> None:
        """`before-send`: note the URL and signature of this thread's PUT (the last
        attempt's wins, so a region redirect is followed)."""
        path = getattr(self._local, "path", None)
        if path is not None and request.url.endswith(path):
            self._local.sent = (request.url[:-len(path)],
                                _header(request.headers, "Authorization"))

    def _adopt(self) -> None:
        sent = getattr(self._local, "sent", None)
        self._local.sent = None
        if sent is None:
            return
        base_url, authorization = sent
        scope = signature_scope(authorization)
        if scope is not None:
            region, service, signed = scope
            self._route = Route(base_url, host_header(base_url), region, service, signed)

    # ----------------------------------------------------------------------- the request

    def _key_path(self, key: str) -> str:
        return "/" + str(percent_encode(key, safe="/~"))  # as botocore's serializer

    def _headers(self, params: dict[str, Any]) -> dict[str, str] | None:
        """The request headers the PutObject model gives `params`; None when a parameter
        is not a plain header (the client serialises those)."""
        headers: dict[str, str] = {}
        for name, value in params.items():
            if name in ("Bucket", "Key", "Body"):
                continue
            member = self._members.get(name)
            where = member.serialization.get("location") if member is not None else None
            wire = member.serialization.get("name") if member is not None else None
            if where == "header" and wire and member.type_name == "string" and isinstance(
                    value, str):
                headers[wire] = value
            elif where == "header" and wire and member.type_name == "timestamp" and (
                    isinstance(value, datetime)) and member.serialization.get(
                    "timestampFormat") == "iso8601":
                # botocore sends header times to the second (it goes through timegm)
                seconds = calendar.timegm(value.utctimetuple())
                headers[wire] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
            elif where == "headers" and wire and isinstance(value, dict) and all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                headers.update({f"{wire}{k}": v for k, v in value.items()})
            else:
                return None
        return headers

    def _signed(self, route: Route, url: str, params: dict[str, Any], headers: dict[str, str],
                attempt: int) -> Any:
        # Host given, so the signer signs what urllib3 sends (and need not derive it twice)
        request = _PutRequest(method="PUT", url=url, data=params["Body"], headers={
            **headers, "Host": route.host, "User-Agent": self._user_agent})
        # The context botocore's client gives the signer. No checksum context: botocore sets
        # none when the caller gives the checksum header, so the payload hash is signed too.
        request.context.update({"client_config": self._client.meta.config,
                                "has_streaming_input": self._operation.has_streaming_input})
        frozen = self._credentials.get_frozen_credentials()  # refreshed when due
        S3SigV4Auth(frozen, route.service, route.region).add_auth(request)
        # added after signing, as botocore adds them (they are never signed)
        request.headers["amz-sdk-invocation-id"] = _invocation_id()
        request.headers["amz-sdk-request"] = f"attempt={attempt}; max={self._max_attempts}"
        return request

    def _send(self, route: Route, params: dict[str, Any], headers: dict[str, str]
              ) -> dict[str, Any] | None:
        """Send the PUT with botocore's retry conditions; the client's answer, the client's
        exception, or None to hand the PUT to the client."""
        url = route.base_url + self._key_path(params["Key"])
        attempt = 1
        while True:
            request = self._signed(route, url, params, headers, attempt)
            if not self._verified:
                signed = signature_scope(_header(request.headers, "Authorization"))
                if signed is None or signed[2] != route.signed_headers:
                    self._off = True  # not the request botocore sends: stand down for good
                    return None
                self._verified = True
            try:
                response = self._http.send(url, params["Body"], dict(request.headers.items()))
            except Exception as exc:  # botocore's own HTTP errors (reset, timeout, TLS…)
                context = RetryContext(attempt_number=attempt, operation_model=self._operation,
                                       caught_exception=exc)
                if not self._retry_policy.should_retry(context):
                    raise
                time.sleep(self._retry_policy.compute_retry_delay(context))
                attempt += 1
                continue
            status = response.status_code
            if 200 <= status < 300:
                return {"VersionId": response.headers.get("x-amz-version-id"),
                        "ETag": response.headers.get("ETag"),
                        "ResponseMetadata": {"HTTPStatusCode": status,
                                             "HTTPHeaders": dict(response.headers),
                                             "RetryAttempts": attempt - 1}}
            parsed = self._parser.parse({"status_code": status, "headers": response.headers,
                                         "body": response.content},
                                        self._operation.output_shape)
            context = RetryContext(attempt_number=attempt, operation_model=self._operation,
                                   parsed_response=parsed, http_response=response)
            if self._retry_policy.should_retry(context):
                time.sleep(self._retry_policy.compute_retry_delay(context))
                attempt += 1
                continue
            if status in _RAISED_STATUSES or status >= 500 or self._retryable_kind(
                    parsed, response):
                metadata = parsed.setdefault("ResponseMetadata", {})
                metadata.update(context.get_retry_metadata())  # as botocore's adapter does
                metadata["RetryAttempts"] = attempt - 1
                code = str(parsed.get("Error", {}).get("Code", ""))
                raise self._client.exceptions.from_code(code)(parsed, OPERATION)
            self._route = None  # a redirect or a request S3 did not take: relearn
            return None

    def _retryable_kind(self, parsed: dict[str, Any], response: Any) -> bool:
        """Whether botocore would retry this answer had it attempts left (a throttle or a
        transient error that used up its retries)."""
        return bool(self._retry_policy.should_retry(RetryContext(
            attempt_number=1, operation_model=self._operation, parsed_response=parsed,
            http_response=response)))


class _PutRequest(AWSRequest):
    """The request to sign: its body is bytes, so the signer's payload hash reads them
    directly (`AWSRequest.body` prepares a whole copy of the request to get them)."""

    @property
    def body(self) -> bytes:
        """The bytes to send (what `prepare().body` would return for bytes)."""
        return bytes(self.data)


_IDS = random.Random()  # seeded from the OS once; an id a request, no system call each


def _invocation_id() -> str:
    """A random version-4 UUID for `amz-sdk-invocation-id` (a request's tracing id, as
    botocore sends; not a secret), drawn without a system call per request."""
    return str(uuid.UUID(int=_IDS.getrandbits(128), version=4))


def _header(headers: Any, name: str) -> str | None:
    value = headers.get(name)
    return value.decode() if isinstance(value, bytes) else value


def _botocore_version() -> str:
    return str(botocore.__version__)
