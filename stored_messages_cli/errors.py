"""Exceptions shared by every layer; the CLI translates them once into `Error: …` lines."""

from __future__ import annotations


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

    `retry_class` is one of the names in `stored_messages_cli.retry` (`rate_limited`,
    `unreachable`) or `conflict` for a create-only write that met different bytes.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_class: str = "unreachable",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_class = retry_class


class ObjectConflict(DestinationError):
    """The key already holds an object with another `sm-payload-sha256`."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_class="conflict")


class ObjectNotFound(SmError):
    """The requested object is not in the destination."""


class IntegrityError(SmError):
    """Bytes read back do not match their recorded checksum."""
