"""Exceptions shared by every layer; the CLI translates them once into `Error: …` lines."""

from __future__ import annotations

from .states import ErrorClass


class SmError(Exception):
    """Base class for every error `sm` reports to a user."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class InvalidMessage(SmError, ValueError):
    """A message (or event) that cannot be accepted; the text is the one-line reason."""


class MessageConflict(SmError):
    """The same (project_id, message_id) was recorded before with other content."""


class UnknownMessage(SmError):
    """An event names a message the spool has never seen."""


class ConfigError(SmError):
    """The configuration is missing or wrong (no destination, bad URL, unsafe endpoint)."""


class DestinationError(SmError):
    """A destination call failed; `retry_class` says how the archiver treats it.

    The destination sets it where it wraps the SDK error (`retry.classify`): `rate_limited`,
    `unreachable`, or `conflict` for a create-only write that met different bytes. Left out,
    it is `unreachable`, SPEC 5's class for every error not classified otherwise.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_class: ErrorClass = ErrorClass.UNREACHABLE,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_class = ErrorClass(retry_class)


class ObjectConflict(DestinationError):
    """The key already holds an object with another `sm-payload-sha256`."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_class=ErrorClass.CONFLICT)


class ObjectNotFound(SmError):
    """The requested object is not in the destination."""


class IntegrityError(SmError):
    """Bytes read back do not match their recorded checksum."""


class UnreadableObject(IntegrityError):
    """Stored bytes sm refuses to read: not one intact gzip member, not the size or SHA-256
    recorded for them, or a payload over `max_payload_bytes` (SPEC 9.2); `detail` is the why
    without the key."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"cannot read {key}: {detail}")
        self.key = key
        self.detail = detail


class PayloadTooLarge(UnreadableObject):
    """A payload (decompressed, or a line at ingest) over `max_payload_bytes`."""
