"""Every named state, class and reason code, once (SPEC 4, 5 and 8).

They are `StrEnum`s: each member *is* its string, so it goes into SQL parameters, JSON and
comparisons as the text the spool stores. SQL never spells these words itself; it binds them.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """Where a message stands in the spool (SPEC 4)."""

    AWAITING_CONFIRMATION = "awaiting_confirmation"
    QUEUED = "queued"
    IN_FLIGHT = "in_flight"
    RETRY_WAIT = "retry_wait"
    STORED = "stored"
    EXPIRED = "expired"
    FAILED = "failed"
    DISCARDED = "discarded"


STATES: tuple[State, ...] = tuple(State)
FINAL_STATES: frozenset[State] = frozenset(
    {State.STORED, State.EXPIRED, State.FAILED, State.DISCARDED})
# Confirmed and not yet archived: what `sm status` ages and an audit counts as pending.
UNARCHIVED_STATES: tuple[State, ...] = (State.QUEUED, State.IN_FLIGHT, State.RETRY_WAIT)
# The outcomes of archiving, each recorded in a manifest (a discarded message never enters).
SETTLED_OUTCOMES: tuple[State, ...] = (State.STORED, State.EXPIRED, State.FAILED)


class RetryClass(StrEnum):
    """How a failed upload is retried (SPEC 5); also the `retry_reason` column."""

    RATE_LIMITED = "rate_limited"
    UNREACHABLE = "unreachable"


class ErrorClass(StrEnum):
    """What a destination error means to the archiver: a retry class, or a conflict."""

    RATE_LIMITED = RetryClass.RATE_LIMITED.value
    UNREACHABLE = RetryClass.UNREACHABLE.value
    CONFLICT = "conflict"


class FinalReason(StrEnum):
    """Why a message ended `failed`, `expired` or `discarded` (the `final_reason` column).

    A code only; the words for a person go to `last_error`.
    """

    CONFLICT = "conflict"
    CORRUPT_IN_SPOOL = "corrupt_in_spool"
    EXPIRED_UNREACHABLE = "expired_unreachable"
    NEVER_CONFIRMED = "never_confirmed"
    SEND_FAILED = "send_failed"
    MEDIUM_NOT_ARCHIVED = "medium_not_archived"


class HealthState(StrEnum):
    """What the archiver last learnt about a destination (`sm status`).

    `unsafe`: the store failed the create-only proof (it overwrote an object a conditional
    write should have left alone); its messages wait as for `unreachable` (SPEC 9.2).
    """

    OK = "ok"
    UNREACHABLE = "unreachable"
    RATE_LIMITED = "rate_limited"
    UNSAFE = "unsafe"
    UNKNOWN = "unknown"


# Health states in which a destination is sent nothing: its messages wait behind a probe slot.
DOWN_HEALTH: frozenset[HealthState] = frozenset({HealthState.UNREACHABLE, HealthState.UNSAFE})


class HealthReason(StrEnum):
    """Why a destination is in a health state no upload may cross (`sm status --json`)."""

    CREATE_ONLY_NOT_HONOURED = "create_only_not_honoured"


HEALTH_REASONS: dict[HealthState, HealthReason] = {
    HealthState.UNSAFE: HealthReason.CREATE_ONLY_NOT_HONOURED}


class IngestOutcome(StrEnum):
    """What recording one message or event did."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    DISCARDED = "discarded"
    REJECTED = "rejected"


class CheckStatus(StrEnum):
    """One `sm verify` line's verdict."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


class Medium(StrEnum):
    """The channels a message goes out on (the first part of every object key)."""

    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class MessageType(StrEnum):
    """How a send was started."""

    BLAST = "blast"
    TRIGGERED = "triggered"
    JOURNEY = "journey"


class HoldState(StrEnum):
    """Where one object of a legal hold case stands (`hold_objects.state`, SPEC 9.4)."""

    PENDING = "pending"  # the store's hold is still to be applied
    APPLIED = "applied"  # the store holds the object (and the log has its `hold` entry)
    RELEASING = "releasing"  # the case was released: the store's hold is still to be lifted
    RELEASED = "released"  # lifted (or kept for another open case), `release` entry logged


class EventState(StrEnum):
    """Where a verified provider event stands (`provider_events`, SPEC 9.3)."""

    ORPHAN = "orphan"  # its message is not recorded (yet): waits `orphan_event_ttl`
    MATCHED = "matched"  # its message is known: its evidence waits for upload
    ARCHIVED = "archived"  # its evidence object is in the bucket and in the log


class LogOutcome(StrEnum):
    """Log entries that are not an archiving outcome (no message is ever in one of these states).

    A legal hold applied or released (SPEC 9.4); a message's data key destroyed by `sm forget`
    (SPEC 9.5); a provider's delivery event archived as evidence (SPEC 9.3).
    """

    HOLD = "hold"
    RELEASE = "release"
    ERASED = "erased"
    EVIDENCE = "evidence"


# Every outcome a manifest entry may carry: the archiving outcomes, then the others.
ENTRY_OUTCOMES: tuple[str, ...] = (*SETTLED_OUTCOMES, *LogOutcome)
ERASED_OUTCOME = LogOutcome.ERASED
EVIDENCE_OUTCOME = LogOutcome.EVIDENCE
