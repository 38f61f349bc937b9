"""The inbox: JSON Lines that senders in other languages write with SQL, in their own transaction.

Migration step 10. One table, `inbox`: `id`, `line` (one line exactly as `sm ingest` reads it:
a message, or a `sent` / `send_failed` event) and an optional `source` (the sender's name, kept
with a rejection). A sender of a PostgreSQL fleet inserts its line in the transaction that
records the send, so the message is as durable as the send itself (a transactional outbox);
`sm run` drains the inbox as its loop turns (`Intake.drain_inbox`) with the same validation
and the same bytes as `sm ingest`. docs/fleet.md is the contract for senders.
"""

from __future__ import annotations


