"""The retry policy (SPEC 5), pure: an error gets a class, a class gets a next attempt time.

Classification lives here for every backend. It duck-types the SDKs' exceptions (status
code, error code, exception name) so this module imports no cloud SDK.
"""

from __future__ import annotations

import random
import socket
import ssl
from dataclasses import dataclass

RATE_LIMITED = "rate_limited"
UNREACHABLE = "unreachable"
CONFLICT = "conflict"
RETRY_CLASSES: tuple[str, ...] = (RATE_LIMITED, UNREACHABLE)

THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
    "TooManyRequestsException", "SlowDown", "ServerBusy", "RequestThrottled",
    "ProvisionedThroughputExceededException", "OperationTimedOut_Throttled",
})


@dataclass(frozen=True, slots=True)
class ErrorFacts:
    """What can be read off an SDK exception without importing the SDK."""

    status: int | None
    code: str | None


def error_facts(exc: BaseException) -> ErrorFacts:
    """Pull the HTTP status and service error code out of a boto/GCS/Azure exception."""
    status: int | None = None
    code: str | None = None
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        code = response.get("Error", {}).get("Code")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    for attr in ("status_code", "code"):  # azure HttpResponseError / google api_core
        value = getattr(exc, attr, None)
        if status is None and isinstance(value, int) and not isinstance(value, bool):
            status = value
    azure_code = getattr(exc, "error_code", None)  # azure: ErrorCode header / body
    if code is None and azure_code is not None:
        code = str(getattr(azure_code, "value", azure_code))
    if code is None:
        reason = getattr(exc, "reason", None)  # google api_core `.reason`
        if isinstance(reason, str) and reason:
            code = reason
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    return ErrorFacts(status if isinstance(status, int) else None, code)


def classify(exc: BaseException) -> str:
    """The retry class of an exception: `rate_limited` or `unreachable` (the default).

    Anything not recognised is `unreachable`: it is retried on the slow schedule and
    eventually expires where an operator sees it; it is never dropped.
    """
    facts = error_facts(exc)
    if facts.code in THROTTLING_CODES or facts.status == 429:
        return RATE_LIMITED
    if _named(exc, "Throttl", "TooManyRequests", "SlowDown"):
        return RATE_LIMITED
    return UNREACHABLE


def _named(exc: BaseException, *fragments: str) -> bool:
    names = [cls.__name__ for cls in type(exc).__mro__]
    return any(fragment in name for name in names for fragment in fragments)


def is_connection_error(exc: BaseException) -> bool:
    """True for errors below HTTP: refused, reset, DNS, TLS, timeouts."""
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror | ssl.SSLError):
        return True
    return _named(exc, "EndpointConnectionError", "ConnectTimeout", "ReadTimeout",
                  "ConnectionClosedError", "ServiceRequestError", "ConnectionError")


def describe(exc: BaseException) -> str:
    """A short, content-free description of an error for logs and `last_error`."""
    facts = error_facts(exc)
    if facts.code or facts.status:
        parts = [p for p in (facts.code, f"HTTP {facts.status}" if facts.status else None) if p]
        return " / ".join(parts)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The schedule: rate limiting backs off forever; unreachable waits slots, then expires."""

    retry_interval: float = 8 * 3600
    retry_window: float = 7 * 86400
    backoff_base: float = 1.0
    backoff_cap: float = 300.0

    def rate_limited_delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Exponential backoff with full jitter from `backoff_base`, capped at `backoff_cap`.

        `attempts` is how many attempts failed so far (1 for the first failure).
        """
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** max(0, min(attempts - 1, 30)))
        pick = (rng or random).uniform(0.5, 1.0)  # keep at least half: no zero-wait storms
        return max(self.backoff_base * 0.5, ceiling * pick)

    def next_probe_at(self, now: float) -> float:
        """When an unreachable destination is tried again."""
        return now + self.retry_interval

    def expired(self, first_failure_at: float, now: float) -> bool:
        """True when an unreachable message has waited the whole retry window."""
        return now >= first_failure_at + self.retry_window
