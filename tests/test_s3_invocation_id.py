"""The lean PUT's `amz-sdk-invocation-id`: a version-4 UUID, a new one for each request."""

from __future__ import annotations

import uuid

from stored_messages_cli.destinations.s3_put import _invocation_id


def test_each_request_gets_a_distinct_version_4_uuid() -> None:
    ids = [_invocation_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:100]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
