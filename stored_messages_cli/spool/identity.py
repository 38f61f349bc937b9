"""A stored message's identity after `sm spool prune` (SPEC 9.2).

Prune deletes a stored message's row from `messages`; its archive index entry stays, with
the project, message id, key and payload SHA-256, and prune adds the first 8 bytes of its
rendered content's hash (`content_prefix`). The insert of a new message skips an id the
index holds (the stores' `INSERT_SQL`), and intake then asks these functions what the second
record of it, or a send event naming it, amounts to: the same as before the prune.

- The same message again (the same payload; or, not yet confirmed, the same content) is a
  `duplicate`; anything else is a `MessageConflict` naming the stored copy, which is kept.
- A message the index knows only from the bucket (`sm index rebuild`, `find --remote`), or
  pruned by an older sm, has no content prefix: a confirmed copy is still compared by its
  payload hash; an unconfirmed one cannot be compared and is a conflict saying so.
- A `sent` event with the stored `sent_at` is a duplicate, another one a conflict; a
  `send_failed` event is a conflict (the message was confirmed and stored).
"""

from __future__ import annotations

from ..errors import InvalidMessage, MessageConflict
from ..message import Message, SendEvent, format_utc, parse_sent_at
from ..states import IngestOutcome
from .archive import content_prefix
from .rows import ArchivedMessage


def _stored_copy(project_id: str, message_id: str, archived: ArchivedMessage) -> str:
    """The message and where its stored copy is, for a conflict's reason."""
    return (f"message {message_id} of project {project_id} was stored at {archived.key}"
            f" (payload_sha256 {archived.payload_sha256})")


def message_again(msg: Message, archived: ArchivedMessage) -> str:
    """The outcome of recording `msg` once more: `duplicate`, or MessageConflict."""
    name = _stored_copy(msg.project_id, msg.message_id, archived)
    same_content = archived.content_prefix == content_prefix(msg.content_sha256())
    if msg.confirmed:
        if archived.payload_sha256 == msg.payload_sha:
            return IngestOutcome.DUPLICATE
        if same_content:
            raise MessageConflict(f"{name} with another sent_at or provider; the stored copy"
                                  " is kept")
    elif same_content:
        return IngestOutcome.DUPLICATE
    elif archived.content_prefix is None:
        raise MessageConflict(f"{name}; a copy without sent_at cannot be compared with it"
                              " (record it with its sent_at and provider)")
    if archived.content_prefix is None:
        raise MessageConflict(f"{name} with another payload; the stored copy is kept")
    raise MessageConflict(f"{name} with other content; the stored copy is kept")


def event_again(event: SendEvent, archived: ArchivedMessage) -> str:
    """The outcome of a send event naming a stored message: `duplicate`, or
    MessageConflict."""
    name = _stored_copy(event.project_id, event.message_id, archived)
    if event.event == "send_failed":
        raise MessageConflict(f"{name}: it was confirmed as sent; a send failure cannot follow"
                              " a confirmation")
    if event.sent_at is not None and _utc(archived.sent_at) == format_utc(event.sent_at):
        return IngestOutcome.DUPLICATE
    raise MessageConflict(f"{name}, confirmed with another sent_at; the first confirmation"
                          " is kept")


def _utc(sent_at: str | None) -> str | None:
    """A `sent_at` from the index in the spool's form (an object indexed from the bucket
    holds it as the sender wrote it)."""
    if sent_at is None:
        return None
    try:
        return format_utc(parse_sent_at(sent_at))
    except InvalidMessage:
        return sent_at
