"""The destination contract of legal holds and retention (SPEC 9.4), on a folder, moto's S3
with object lock, gcp-storage-emulator (which the session's fixture teaches GCS's hold rule:
tests/support/fixtures/gcs.py) and Azurite behind a relay that teaches it version-level
immutability, which it does not implement (tests/support/azure_holds.py): a hold placed and
lifted is what the store reports, a missing object is ObjectNotFound, retention only ever
moves later, a held object cannot be deleted. Azurite itself, and an S3 bucket without object
lock, are reported as unable to hold, naming why."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from stored_messages_cli.destinations.base import DestinationOptions
from stored_messages_cli.errors import DestinationError, ObjectNotFound
from stored_messages_cli.message import sha256_hex
from tests.support.azure_holds import AzureHoldsRelay
from tests.support.fixtures.azure import connection_string
from tests.support.fixtures.s3 import block_public_access

HOLDING = ["file", "s3_locked", "gcs", "azure_holds"]


@pytest.fixture
def s3_locked_destination(moto_endpoint: str, s3_client: Any) -> Iterator[Any]:
    """An S3 destination on a new bucket with object lock, prefix `archive/`."""
    from stored_messages_cli.destinations.s3 import S3Destination

    name = f"sm-lock-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    block_public_access(s3_client, name)
    destination = S3Destination(f"s3://{name}/archive/", DestinationOptions(
        endpoint_url=moto_endpoint, allow_insecure_endpoint=True, region="us-east-1"))
    yield destination
    destination.close()


@pytest.fixture
def azure_holds_destination(azurite_endpoint: str, azure_container: str,
                            monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An Azure destination reaching Azurite through `AzureHoldsRelay`, prefix `archive/`."""
    from stored_messages_cli.destinations.azure import AzureDestination

    relay = AzureHoldsRelay(azurite_endpoint)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(relay.url))
    destination = AzureDestination(f"az://{azure_container}/archive/",
                                   DestinationOptions(allow_insecure_endpoint=True))
    yield destination
    destination.close()
    relay.close()


@pytest.fixture(params=HOLDING)
def destination(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_destination")


def stored(destination: Any, name: str = "m-1") -> tuple[str, str | None]:
    """An object written as sm writes one; (key, version id)."""
    payload = b'{"message_id":"%s"}' % name.encode()
    key = f"{destination.prefix}email/12345/h/c/{name}.json.gz"
    result = destination.put(key, gzip.compress(payload, mtime=0), sha256_hex(payload))
    return key, result.version_id


def test_a_hold_placed_and_lifted_is_what_the_store_reports(destination: Any) -> None:
    assert destination.hold_support() is None
    key, version = stored(destination)
    other, other_version = stored(destination, "m-2")
    assert destination.legal_hold(key, version) is False
    destination.set_legal_hold(key, version, True, "case-1")
    destination.set_legal_hold(key, version, True, "case-1")  # again: still held, no error
    assert destination.legal_hold(key, version) is True
    assert destination.legal_hold(other, other_version) is False
    destination.set_legal_hold(key, version, False, "case-1")
    assert destination.legal_hold(key, version) is False
    assert destination.get(key).body  # the object itself is untouched


def test_a_missing_object_is_not_found(request: pytest.FixtureRequest,
                                      destination: Any) -> None:
    missing = f"{destination.prefix}email/12345/h/c/nothing.json.gz"
    if "azure_holds" not in request.node.name:  # the relay keeps holds without Azurite
        with pytest.raises(ObjectNotFound):
            destination.set_legal_hold(missing, None, True, "case-1")
    with pytest.raises(ObjectNotFound):
        destination.legal_hold(missing, None)


@pytest.mark.parametrize("name", ["s3_locked", "gcs", "azure_holds"])
def test_retention_moves_later(request: pytest.FixtureRequest, name: str) -> None:
    destination = request.getfixturevalue(f"{name}_destination")
    key, version = stored(destination)
    assert destination.retention_until(key, version) is None
    later = 1_900_000_000.0
    destination.extend_retention(key, version, later)
    assert destination.retention_until(key, version) == later
    destination.extend_retention(key, version, later + 86400)
    assert destination.retention_until(key, version) == later + 86400


@pytest.mark.parametrize("name", ["gcs", "azure_holds"])
def test_a_held_object_cannot_be_deleted(request: pytest.FixtureRequest, name: str) -> None:
    destination = request.getfixturevalue(f"{name}_destination")
    key, version = stored(destination)
    destination.set_legal_hold(key, version, True, "case-1")
    with pytest.raises(DestinationError):
        destination.delete(key)
    assert destination.head(key) is not None
    destination.set_legal_hold(key, version, False, "case-1")
    destination.delete(key)
    assert destination.head(key) is None


def test_stores_that_cannot_hold_say_why(s3_destination: Any, azure_destination: Any) -> None:
    assert "object lock" in s3_destination.hold_support()
    assert "object lock" in s3_destination.retention_support()
    assert "immutability" in azure_destination.hold_support()


def test_which_stores_keep_retention(file_destination: Any, s3_locked_destination: Any,
                                     gcs_destination: Any) -> None:
    assert "folder" in file_destination.retention_support()
    assert s3_locked_destination.retention_support() is None
    assert gcs_destination.retention_support() is None
