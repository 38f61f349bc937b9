"""Every recipient identifier of an indexed message, and how complete the index is per project.

Migration step (SPEC 8, "Investigations"):

- `messages.recipient_hashes`: JSON object of the hash of every identifier the message's
  recipient holds (`{"email": …, "user_id": …, "phone_number": …, "device_token": …}`),
  computed at ingest (`model.identifier_hashes`);
- `archive_recipients`: one row per (hash, message) for every indexed message, so
  `sm find --recipient` matches any identifier through an index (step 7, `archive.py`, moves
  these rows into `archive_recipient_hashes`);
- `index_coverage`: per project, whether the local index is `complete` (filled by `sm run`
  from the project's first message, or by a full `sm index rebuild`) or `partial` (filled by
  remote finds and fetches).

The tables are made by schema step 6 (`sqlite/schema.py`, `postgres/schema.py`).
"""

from __future__ import annotations

from ..message import identifier_hashes, identifier_hashes_json

COMPLETE = "complete"
PARTIAL = "partial"


def hashes_json(recipient: object) -> str:
    """`messages.recipient_hashes` for a recipient object (compact JSON)."""
    return identifier_hashes_json(identifier_hashes(recipient))


