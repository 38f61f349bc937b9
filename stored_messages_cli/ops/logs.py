"""Log lines for people and for log pipelines (`--log-format text|json`).

A JSON line is one object: `ts` (RFC 3339 UTC with `Z`), `level`, a stable snake_case
`event`, `logger`, `message` (the human sentence), then the event's fields (`project_id`,
`destination`, `retry_class`, `error`, counts…). Code that logs an event passes it and its
fields as `extra={"event": "daemon_started", "concurrency": 8, …}`.

Log calls that predate events are recognised by their (constant) format string and given
their event name and named fields here; anything else is `event: "log"`. Logs never carry
message content or raw recipient addresses (SPEC 7).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has: anything else on a record came in through `extra`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "taskName"}

# Older log calls, recognised by how their format string starts → (event, names of their
# leading %-arguments). Prefixes, so a reworded tail keeps its event; better still, such a call
# passes `extra={"event": …}` itself.
KNOWN_EVENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "destination %s of project %s is unreachable": (
        "destination_unreachable", ("destination", "project_id", "error")),
    "destination %s of project %s is still unreachable": (
        "destination_still_unreachable", ("destination", "project_id", "error")),
    "destination %s of project %s is healthy again": (
        "destination_recovered", ("destination", "project_id")),
    "destination %s of project %s is rate limiting": (
        "destination_rate_limited", ("destination", "project_id", "error")),
    "destination %s of project %s no longer rate limiting": (
        "destination_rate_limit_cleared", ("destination", "project_id")),
    "%d message(s) of project %s expired": ("messages_expired", ("count", "project_id")),
    "probing the unreachable destination of project %s": (
        "destination_probe", ("project_id",)),
    "%d message(s) of project %s waiting on its destination are due": (
        "messages_due", ("count", "project_id")),
    "project %s has a new destination %s": (
        "destination_changed", ("project_id", "destination")),
    "returned %d message(s) with lapsed leases": ("leases_returned", ("count",)),
    "discarded %d message(s) never confirmed": ("messages_discarded", ("count",)),
    "message %s of project %s cannot be archived": (
        "message_failed", ("message_id", "project_id", "error")),
    "Stopping: finishing in-flight uploads": ("daemon_stopping", ()),
}


def rfc3339(epoch: float) -> str:
    """`2026-11-27T17:00:00.123Z`."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def event_of(record: logging.LogRecord) -> tuple[str, dict[str, Any]]:
    """A record's event name and its fields."""
    fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
    event = fields.pop("event", None)
    if event:
        return str(event), fields
    if isinstance(record.msg, str):
        for prefix, (name, names) in KNOWN_EVENTS.items():
            if record.msg.startswith(prefix):
                args = record.args if isinstance(record.args, tuple) else ()
                return name, {**dict(zip(names, args, strict=False)), **fields}
    return "log", fields


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line (`--log-format json`)."""

    def format(self, record: logging.LogRecord) -> str:
        event, fields = event_of(record)
        document: dict[str, Any] = {
            "ts": rfc3339(record.created),
            "level": record.levelname.lower(),
            "event": event,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields.items():
            if key not in document:
                document[key] = value if isinstance(
                    value, str | int | float | bool | None | list | dict) else str(value)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


class TextLogFormatter(logging.Formatter):
    """`2026-11-27T17:00:00Z INFO message`: one readable line each."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
