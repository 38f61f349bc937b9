"""The message contract: validation, the payload bytes, the object key and the recipient hash.

The one source of truth for the key layout (`keys.py`), the recipient-hash rule
(`recipients.py`) and the canonical payload encoding (`encode.py`); every other layer imports
them from here. By concern:

- `fields.py`: mediums, message types, id rules, the schema version
- `times.py`: `sent_at` (RFC 3339 with an offset) in, UTC out
- `decode.py`: hostile JSON, decoded and checked without unbounded recursion
- `recipients.py`: the recipient's identity and hashes
- `keys.py`: the object key layout, as data and as functions
- `encode.py`: canonical JSON (orjson, or the standard library's encoder where their bytes could
  differ) and the gzip object with pinned bytes (`gzip_member`)
- `gunzip.py`: the bounded reader of stored gzip bytes (`gunzip`, `MAX_PAYLOAD_BYTES`)
- `validate.py`: `parse_message`, `parse_event`, `parse_line`, `Message`, `SendEvent`
- `batch.py`: the same over many messages, stage by stage
- `models.py`: the pydantic classes, loaded on the first validation (not imported here, so
  commands that never validate load no pydantic)
"""

from .batch import PARALLEL_GZIP_AT, STAGE_CHUNK, gzip_bodies, parse_lines, parse_messages
from .decode import MAX_DEPTH, MAX_VALUES, decode_json
from .encode import (
    GZIP_HEADER,
    canonical_json,
    content_sha256,
    encode_document,
    gzip_body,
    gzip_member,
    payload_bytes,
    reference_canonical_json,
)
from .fields import (
    CONFIRMATION_FIELDS,
    MEDIUMS,
    MESSAGE_ID_RE,
    MESSAGE_TYPES,
    REFERENCE_FIELDS,
    REFERENCE_RE,
    SCHEMA_VERSION,
    check_message_id,
    normalise_reference,
)
from .gunzip import (
    MAX_PAYLOAD_BYTES,
    check_known,
    gunzip,
    max_object_bytes,
    payload_sha256_of,
    too_big,
)
from .keys import (
    KEY_FIELDS,
    KEY_SEPARATOR,
    KEY_SUFFIX,
    UNASSOCIATED,
    WHEN_ABSENT,
    key_pieces,
    object_key,
    parse_key,
    recipient_prefix,
)
from .recipients import (
    RECIPIENT_FIELDS,
    SEARCH_FORMS,
    identifier_hashes,
    identifier_hashes_json,
    recipient_hash,
    recipient_hash_candidates,
    recipient_identity,
    search_hashes,
    sha256_hex,
)
from .times import RFC3339_RE, format_utc, parse_sent_at
from .validate import Message, SendEvent, parse_event, parse_line, parse_message

__all__ = [
    "CONFIRMATION_FIELDS", "GZIP_HEADER", "KEY_FIELDS", "KEY_SEPARATOR", "KEY_SUFFIX",
    "MAX_DEPTH", "MAX_PAYLOAD_BYTES", "MAX_VALUES", "MEDIUMS", "MESSAGE_ID_RE", "MESSAGE_TYPES",
    "PARALLEL_GZIP_AT", "RECIPIENT_FIELDS", "REFERENCE_FIELDS", "REFERENCE_RE", "RFC3339_RE",
    "SCHEMA_VERSION", "SEARCH_FORMS", "STAGE_CHUNK", "UNASSOCIATED", "WHEN_ABSENT", "Message",
    "SendEvent", "canonical_json", "check_known", "check_message_id", "content_sha256",
    "decode_json", "encode_document", "format_utc", "gunzip", "gzip_bodies", "gzip_body",
    "gzip_member", "identifier_hashes", "identifier_hashes_json", "key_pieces",
    "max_object_bytes", "normalise_reference", "object_key", "parse_event", "parse_key",
    "parse_line", "parse_lines", "parse_message", "parse_messages", "parse_sent_at",
    "payload_bytes", "payload_sha256_of", "recipient_hash", "recipient_hash_candidates",
    "recipient_identity", "reference_canonical_json", "recipient_prefix", "search_hashes",
    "sha256_hex", "too_big",
]
