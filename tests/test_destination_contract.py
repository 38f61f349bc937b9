"""The one contract every destination keeps, run over every backend.

Each parameter asks for `{backend}_destination`: a fresh destination on a new, empty bucket or
folder (prefix `archive/` where the backend has prefixes). The fixtures live in
tests/support/fixtures/{core,s3,gcs,azure}.py.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from typing import Any

import pytest

from stored_messages_cli.destinations.base import PutResult
from stored_messages_cli.errors import ObjectConflict, ObjectNotFound

BACKENDS = ["file", "s3", "gcs", "azure"]


@pytest.fixture(params=BACKENDS)
def destination(request: pytest.FixtureRequest) -> Any:
    """A fresh destination of each backend in turn."""
    return request.getfixturevalue(f"{request.param}_destination")


def archived(document: dict[str, Any]) -> tuple[bytes, str]:
    """An object body as the archiver writes it, and its payload hash."""
    payload = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return gzip.compress(payload, mtime=0), hashlib.sha256(payload).hexdigest()


def key_in(destination: Any, rest: str) -> str:
    return destination.prefix + rest


def test_put_creates_and_get_returns_the_exact_bytes(destination: Any) -> None:
    body, sha = archived({"message_id": "m1", "text": "héllo\r\n"})
    key = key_in(destination, "email/1/abc/unassociated/m1.json.gz")
    result = destination.put(key, body, sha)
    assert isinstance(result, PutResult)
    assert (result.key, result.created) == (key, True)
    fetched = destination.get(key)
    assert fetched.body == body
    assert fetched.info.payload_sha256 == sha
    assert destination.head(key).payload_sha256 == sha


def test_same_bytes_again_is_not_created_twice(destination: Any) -> None:
    body, sha = archived({"message_id": "m2"})
    key = key_in(destination, "sms/1/abc/7/m2.json.gz")
    assert destination.put(key, body, sha).created is True
    assert destination.put(key, body, sha).created is False
    assert destination.get(key).body == body


def test_other_payload_on_an_existing_key_is_a_conflict_and_the_first_stays(
    destination: Any,
) -> None:
    first, first_sha = archived({"message_id": "m3", "v": 1})
    second, second_sha = archived({"message_id": "m3", "v": 2})
    key = key_in(destination, "push/1/abc/unassociated/m3.json.gz")
    destination.put(key, first, first_sha)
    with pytest.raises(ObjectConflict):
        destination.put(key, second, second_sha)
    assert destination.get(key).body == first


def test_head_and_get_of_a_missing_key(destination: Any) -> None:
    key = key_in(destination, "email/1/abc/unassociated/missing.json.gz")
    assert destination.head(key) is None
    with pytest.raises(ObjectNotFound):
        destination.get(key)


def test_list_returns_exactly_the_keys_under_a_prefix(destination: Any) -> None:
    inside = [key_in(destination, f"email/1/aaa/unassociated/m{i}.json.gz") for i in range(3)]
    outside = [key_in(destination, "email/1/aab/unassociated/x.json.gz"),
               key_in(destination, "sms/1/aaa/unassociated/y.json.gz")]
    for key in inside + outside:
        body, sha = archived({"key": key})
        destination.put(key, body, sha)
    listed = sorted(info.key for info in destination.list(key_in(destination, "email/1/aaa/")))
    assert listed == sorted(inside)
    everything = sorted(info.key for info in destination.list(destination.prefix))
    assert everything == sorted(inside + outside)


def test_delete_removes_the_object(destination: Any) -> None:
    body, sha = archived({"message_id": "gone"})
    key = key_in(destination, "_sm/connect-test.json.gz")
    destination.put(key, body, sha)
    destination.delete(key)
    assert destination.head(key) is None
    assert [i.key for i in destination.list(key_in(destination, "_sm/"))] == []


def test_eight_writers_of_one_key_create_it_exactly_once(destination: Any) -> None:
    body, sha = archived({"message_id": "race"})
    key = key_in(destination, "email/1/abc/unassociated/race.json.gz")
    start = threading.Barrier(8)
    results: list[bool] = []
    errors: list[BaseException] = []

    def write() -> None:
        start.wait()
        try:
            results.append(destination.put(key, body, sha).created)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [False] * 7 + [True]
    assert destination.get(key).body == body
