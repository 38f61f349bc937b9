"""The retry policy (SPEC 5), pure: an error gets a class, a class gets a next attempt time.

Classification lives here for every backend. It duck-types the SDKs' exceptions (status
code, error code, exception name) so this module imports no cloud SDK; a backend that wraps
an SDK error keeps it as `__cause__`, and the chain is read too.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .states import ErrorClass, RetryClass

RATE_LIMITED = ErrorClass.RATE_LIMITED
UNREACHABLE = ErrorClass.UNREACHABLE
CONFLICT = ErrorClass.CONFLICT
RETRY_CLASSES: tuple[RetryClass, ...] = tuple(RetryClass)

# Service error codes that mean "slow down" (S3, AWS generally, Azure `ServerBusy`).
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
    "TooManyRequestsException", "SlowDown", "ServerBusy", "RequestThrottled",
    "ProvisionedThroughputExceededException", "rateLimitExceeded", "userRateLimitExceeded",
})
THROTTLING_STATUS = 429
# Exception class names that mean the same where no code is attached (google api_core).
_THROTTLING_NAMES = ("Throttl", "TooManyRequests", "SlowDown")


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
        code = response.get("Error", {}).get("Code") or None
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    elif isinstance(response_status := getattr(response, "status_code", None), int):
        status = response_status  # GCS upload InvalidResponse
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


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and the ones it was raised from (`from`), outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__  # explicit `raise … from`: a wrapper names what it wraps
    return seen


def classify(exc: BaseException) -> ErrorClass:
    """The class of an SDK exception: `rate_limited` or `unreachable` (SPEC 5).

    Destinations call this once, where they wrap an SDK error in a DestinationError that
    carries the class; the archiver reads it from there (`error_class`). Any throttling sign
    anywhere in the exception chain makes it `rate_limited`, and everything else is
    `unreachable`: retried on the slow schedule until it expires where an operator sees it,
    never dropped.
    """
    for link in _chain(exc):
        facts = error_facts(link)
        if facts.code in THROTTLING_CODES or facts.status == THROTTLING_STATUS:
            return RATE_LIMITED
        names = [cls.__name__ for cls in type(link).__mro__]
        if any(fragment in name for name in names for fragment in _THROTTLING_NAMES):
            return RATE_LIMITED
    return UNREACHABLE


def error_class(exc: BaseException) -> ErrorClass:
    """The class an upload failure carries: a destination's own, else classified here.

    Destinations raise DestinationError with its class set at their boundary; anything else
    reaching the archiver (a bug, an unwrapped OS error) is classified by the same rule.
    """
    given = getattr(exc, "retry_class", None)
    if isinstance(given, ErrorClass):
        return given
    return classify(exc)


def describe(exc: BaseException) -> str:
    """A short, content-free description of an error for logs and `last_error`.

    Service errors become `Code / HTTP status`; others `ExceptionName: first line`. Our own
    errors (SmError) are already written to be shown.
    """
    if hasattr(exc, "retry_class") and str(exc):
        return str(exc).splitlines()[0][:300]
    facts = error_facts(exc)
    if facts.code or facts.status:
        parts = [p for p in (facts.code, f"HTTP {facts.status}" if facts.status else None) if p]
        return " / ".join(parts)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The schedule: rate limiting backs off forever; unreachable waits slots, then expires.

    An unreachable destination is probed `recovery_probes` after its outage began (default
    1 min, 5 min, 30 min, 2 h: a short outage ends in minutes), then on the grid of
    `retry_interval` from that start, so a slot falls exactly on the window's end. An empty
    `recovery_probes` is Iterable's strict schedule (every 8 hours only).
    """

    retry_interval: float = 8 * 3600
    retry_window: float = 7 * 86400
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    recovery_probes: tuple[float, ...] = (60.0, 300.0, 1800.0, 7200.0)

    def rate_limited_delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Exponential backoff with jitter: 1 s first, doubling, capped at `backoff_cap`.

        `attempts` is how many attempts have failed so far (1 for the first failure). The
        delay is drawn from the upper half of the current step (`[step/2, step]`, at least
        `backoff_base`), so waiting senders spread out but never retry at once.
        """
        step = min(self.backoff_cap, self.backoff_base * 2.0 ** max(0, min(attempts - 1, 40)))
        low = max(self.backoff_base, step / 2)
        if low >= step:
            return step
        return (rng or random).uniform(low, step)

    def next_slot(self, now: float, previous_slot: float | None = None) -> float:
        """When an unreachable destination is probed next.

        Slots stay on the grid of the first one (`previous_slot` + k × interval), so a probe
        that runs a little late does not push every later slot, and the last slot of the
        window falls exactly on its end.
        """
        if previous_slot is None or previous_slot > now:
            return now + self.retry_interval
        missed = int((now - previous_slot) // self.retry_interval)
        return previous_slot + (missed + 1) * self.retry_interval

    def next_probe(self, now: float, down_since: float) -> float:
        """The first probe slot after `now` of an outage that began at `down_since`.

        Slots are `down_since` + each recovery delay, then `down_since` + k × interval; a
        probe that ran late does not push the later ones. A `down_since` in the future (the
        clock went back) counts as now.
        """
        start = min(down_since, now)
        recovery = [start + delay for delay in self.recovery_probes if start + delay > now]
        grid = start + (int((now - start) // self.retry_interval) + 1) * self.retry_interval
        return min([grid, *recovery])

    @property
    def probes_to_expire(self) -> int:
        """Failed probes a destination must have had before its messages may expire.

        With the wall clock alone a jump forward would expire messages that were never
        retried; this many failures (window ÷ interval) prove the window was really tried.
        """
        return max(1, math.ceil(self.retry_window / self.retry_interval - 1e-9))

    @property
    def longest_wait(self) -> float:
        """The latest a retry may be scheduled ahead of now; anything later is treated as due
        (the clock went back, or a row was written by a clock that was ahead)."""
        return max(self.retry_interval, self.backoff_cap, *self.recovery_probes, 0.0)

    def expires_at(self, first_failure_at: float) -> float:
        """When an unreachable message has waited the whole retry window."""
        return first_failure_at + self.retry_window
