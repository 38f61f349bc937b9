"""A create-only write that finds its key taken counts the object there as "already stored"
only if its BYTES are the ones sm would have written. `sm-payload-sha256` metadata can be
forged by anyone who can write to the bucket, so it proves nothing on its own: anything else
is a `conflict`, and the object is left exactly as it is.

The forged objects are put straight into the real stores (moto, gcp-storage-emulator,
Azurite, a folder) with the SDKs, carrying the right metadata and other bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.errors import ObjectConflict
from tests.support.fixtures.core import jsonl

BACKENDS = ["file", "s3", "gcs", "azure"]
FORGED_PAYLOAD = b'{"forged":"these are not the bytes sm archived"}'


def archived(document: dict[str, Any]) -> tuple[bytes, str]:
    """An object body as the archiver writes it, and its payload hash."""
    payload = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return gzip.compress(payload, mtime=0), hashlib.sha256(payload).hexdigest()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, request.getfixturevalue(f"{request.param}_destination")


def plant(name: str, destination: Any, key: str, body: bytes, payload_sha256: str,
          request: pytest.FixtureRequest) -> None:
    """Put `body` at `key` with `sm-payload-sha256` = `payload_sha256`, bypassing sm."""
    if name == "file":
        path = destination.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    elif name == "s3":
        request.getfixturevalue("s3_client").put_object(
            Bucket=destination.bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256",
            Metadata={"sm-payload-sha256": payload_sha256})
    elif name == "gcs":
        blob = request.getfixturevalue("gcs_client").bucket(destination.bucket_name).blob(key)
        blob.metadata = {"sm-payload-sha256": payload_sha256}
        blob.upload_from_string(body, content_type="application/gzip")
    else:
        service = request.getfixturevalue("azure_service")
        service.get_blob_client(destination.container_name, key).upload_blob(
            body, metadata={"sm_payload_sha256": payload_sha256})


def stored_bytes(name: str, destination: Any, key: str, request: pytest.FixtureRequest
                 ) -> bytes:
    """The object's bytes as the store holds them, read with the SDK (not through sm)."""
    if name == "file":
        return (destination.root / key).read_bytes()
    if name == "s3":
        return request.getfixturevalue("s3_client").get_object(
            Bucket=destination.bucket, Key=key)["Body"].read()
    if name == "gcs":
        blob = request.getfixturevalue("gcs_client").bucket(destination.bucket_name).blob(key)
        return blob.download_as_bytes(raw_download=True)
    service = request.getfixturevalue("azure_service")
    return service.get_blob_client(destination.container_name, key).download_blob().readall()


def test_forged_metadata_on_other_bytes_is_a_conflict_and_stays(
        backend: tuple[str, Any], request: pytest.FixtureRequest) -> None:
    name, destination = backend
    body, sha = archived({"message_id": "forged", "text": "the real message"})
    key = destination.prefix + "email/1/abc/unassociated/forged.json.gz"
    # Other bytes (same length, even) under the metadata of the message sm is about to write.
    forged = gzip.compress(FORGED_PAYLOAD, mtime=0)
    if name == "file":  # a folder's metadata is derived from the bytes: same payload, other gzip
        forged = gzip.compress(json.dumps({"message_id": "forged", "text": "the real message"},
                                          sort_keys=True, separators=(",", ":")).encode(),
                               mtime=1_700_000_000)
    assert forged != body
    plant(name, destination, key, forged, sha, request)
    assert destination.head(key).payload_sha256 == sha  # the forgery fools a metadata check
    with pytest.raises(ObjectConflict, match="already exists with other content"):
        destination.put(key, body, sha)
    assert stored_bytes(name, destination, key, request) == forged  # untouched


def test_the_same_bytes_planted_by_someone_else_count_as_stored(
        backend: tuple[str, Any], request: pytest.FixtureRequest) -> None:
    name, destination = backend
    body, sha = archived({"message_id": "same", "text": "identical"})
    key = destination.prefix + "sms/1/abc/unassociated/same.json.gz"
    plant(name, destination, key, body, sha, request)
    result = destination.put(key, body, sha)
    assert result.created is False
    assert stored_bytes(name, destination, key, request) == body


def test_s3_trusts_the_stores_sha256_of_the_body_without_downloading(
        s3_destination: Any, s3_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    body, sha = archived({"message_id": "checked"})
    key = "archive/push/1/abc/unassociated/checked.json.gz"
    assert s3_destination.put(key, body, sha).created is True
    info = s3_destination.head(key)
    assert info.checksums["sha256"]  # HEAD with ChecksumMode=ENABLED gave S3's own SHA-256

    def no_download(key: str) -> Any:
        raise AssertionError("the object was downloaded although S3 gave its SHA-256")

    monkeypatch.setattr(s3_destination, "get", no_download)
    assert s3_destination.put(key, body, sha).created is False


# --------------------------------------------------------------------------- end to end


def expected_key_and_payload(message: dict[str, Any]) -> tuple[str, bytes]:
    recipient = hashlib.sha256(message["recipient"]["email"].strip().lower().encode()
                               ).hexdigest()
    key = (f"archive/email/{message['project_id']}/{recipient}/{message['campaign_id']}/"
           f"{message['message_id']}.json.gz")
    document = dict(message, schema_version=1)
    for field in ("project_id", "campaign_id", "template_id", "journey_id"):
        if document.get(field) is not None:
            document[field] = str(document[field])
    payload = json.dumps(document, sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False).encode()
    return key, payload


def test_sm_run_marks_a_message_whose_key_holds_forged_bytes_as_a_conflict(
        cli, sm_home: Path, moto_endpoint: str, s3_bucket: str, s3_client: Any,
        make_message) -> None:
    connected = cli("connect", f"s3://{s3_bucket}/archive/", "--project", "12345",
                    "--endpoint-url", moto_endpoint, "--allow-insecure-endpoint")
    assert connected.exit_code == 0, connected.stderr
    message = make_message()
    key, payload = expected_key_and_payload(message)
    forged = gzip.compress(FORGED_PAYLOAD, mtime=0)
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=forged, ChecksumAlgorithm="SHA256",
                         Metadata={"sm-payload-sha256": hashlib.sha256(payload).hexdigest()})
    assert cli("ingest", "-", input=jsonl(message)).exit_code == 0

    ran = cli("--json", "run", "--once")

    assert ran.exit_code == 1
    assert json.loads(ran.stdout)["stored"] == 0
    assert "already exists with other content" in ran.stderr
    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"]["stored"] == 0
    assert status["counts"]["failed"] == 1
    assert "conflict" in json.dumps(status["final_reasons"])
    assert s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == forged
    found = cli("--json", "find", "--message-id", message["message_id"])
    assert json.loads(found.stdout) == []  # never indexed as stored


def test_sm_run_counts_the_genuine_bytes_already_there_as_stored(
        cli, moto_endpoint: str, s3_bucket: str, s3_client: Any, make_message) -> None:
    connected = cli("connect", f"s3://{s3_bucket}/archive/", "--project", "12345",
                    "--endpoint-url", moto_endpoint, "--allow-insecure-endpoint")
    assert connected.exit_code == 0, connected.stderr
    message = make_message()
    key, payload = expected_key_and_payload(message)
    body = gzip.compress(payload, compresslevel=6, mtime=0)  # exactly what sm writes
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256",
                         Metadata={"sm-payload-sha256": hashlib.sha256(payload).hexdigest()})
    assert cli("ingest", "-", input=jsonl(message)).exit_code == 0
    ran = cli("--json", "run", "--once")
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(cli("--json", "status").stdout)["counts"]["stored"] == 1
    assert s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == body


def test_the_same_payload_gzipped_differently_is_not_sms_object(
        cli, moto_endpoint: str, s3_bucket: str, s3_client: Any, make_message) -> None:
    """Same payload, same metadata, other bytes (another gzip level): a conflict, untouched."""
    connected = cli("connect", f"s3://{s3_bucket}/archive/", "--project", "12345",
                    "--endpoint-url", moto_endpoint, "--allow-insecure-endpoint")
    assert connected.exit_code == 0, connected.stderr
    message = make_message()
    key, payload = expected_key_and_payload(message)
    other = gzip.compress(payload, compresslevel=1, mtime=0)
    assert other != gzip.compress(payload, compresslevel=6, mtime=0)
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=other,
                         Metadata={"sm-payload-sha256": hashlib.sha256(payload).hexdigest()})
    assert cli("ingest", "-", input=jsonl(message)).exit_code == 0
    cli("run", "--once")
    status = json.loads(cli("--json", "status").stdout)
    assert (status["counts"]["stored"], status["counts"]["failed"]) == (0, 1)
    assert s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == other
