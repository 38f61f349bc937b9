"""`gs://` destinations against gcp-storage-emulator, through the real google-cloud-storage SDK.

Create-only writes rely on `ifGenerationMatch=0`, which the emulator ignores; the session
fixture teaches it that one rule (tests/support/fixtures/gcs.py), and the contract suite
(tests/test_destination_contract.py) proves the create-only behaviour on top of it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import google_crc32c
import pytest
import requests
from google.api_core import exceptions as google_errors

from stored_messages_cli.destinations import gcs
from stored_messages_cli.destinations.base import DestinationOptions
from stored_messages_cli.destinations.gcs import GCSDestination, bucket_checks, retention_check
from stored_messages_cli.errors import ConfigError, DestinationError, IntegrityError
from stored_messages_cli.message import gzip_body, payload_bytes, sha256_hex
from stored_messages_cli.retry import RATE_LIMITED, UNREACHABLE, classify
from tests.support.cloud_pipeline import assert_investigation_works
from tests.support.fixtures.cloud_faults import CannedReply, canned_server, closed_port
from tests.support.fixtures.core import jsonl

EMAIL_KEY = ("email/12345/b7e0d8372a47f54bbefeb251ab9ac1e9e6b2d1983263de10196101be3961ed23/"
             "1234567/9c438a20d26e4e9f8ad4edea23f811cd.json.gz")


def expected_document(message: dict[str, Any]) -> dict[str, Any]:
    """The archived document of the sample email (reference ids as strings)."""
    return dict(message, project_id="12345", campaign_id="1234567", template_id="42")


# --------------------------------------------------------------------------- end to end


def test_connect_ingest_run_find_fetch_rebuild_store_the_exact_gzip_bytes_in_gcs(
        cli, gcs_client, gcs_bucket, make_message, tmp_path) -> None:
    url = f"gs://{gcs_bucket}/archive/"
    connected = cli("connect", url, "--project", "12345", "--allow-insecure-endpoint")
    assert connected.exit_code == 0, connected.output
    message = make_message()
    assert cli("ingest", "-", input=jsonl(message)).exit_code == 0
    ran = cli("run", "--once")
    assert ran.exit_code == 0, ran.output

    payload = payload_bytes(expected_document(message))
    blob = gcs_client.bucket(gcs_bucket).get_blob(f"archive/{EMAIL_KEY}")
    assert blob is not None
    assert blob.download_as_bytes(raw_download=True) == gzip_body(payload)
    assert blob.metadata == {"sm-payload-sha256": sha256_hex(payload)}
    assert blob.content_type == "application/gzip"
    assert blob.content_encoding is None  # no transcoding: readers get the gzip bytes
    crc = base64.b64encode(google_crc32c.Checksum(gzip_body(payload)).digest()).decode()
    assert blob.crc32c == crc
    # the connect test object was deleted; only the message is there
    names = sorted(b.name for b in gcs_client.list_blobs(gcs_bucket))
    assert [n for n in names if not n.startswith("archive/_sm/")] == [f"archive/{EMAIL_KEY}"]
    # the run sealed its manifest beside the objects: segment 1 of the project
    assert [n.rsplit("/", 1)[-1] for n in names if n.startswith("archive/_sm/manifests/12345/")
            ] == ["000000000001.jsonl.gz"]

    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"]["stored"] == 1
    assert [(d["url"], d["health"]) for d in status["destinations"]] == [(url, "ok")]
    assert_investigation_works(cli, url, message, f"archive/{EMAIL_KEY}", payload,
                               tmp_path / "other-home")


def test_destination_reads_back_what_run_stored(gcs_destination, gcs_client) -> None:
    """get/head/list, as find, fetch and index rebuild use them, see what the SDK wrote."""
    payload = payload_bytes({"message_id": "m-1", "schema": "x"})
    key = f"archive/{EMAIL_KEY}"
    gcs_destination.put(key, gzip_body(payload), sha256_hex(payload))
    fetched = gcs_destination.get(key)
    assert fetched.body == gzip_body(payload)
    assert fetched.info.payload_sha256 == sha256_hex(payload)
    assert gcs_destination.head(key).size == len(gzip_body(payload))
    listed = list(gcs_destination.list("archive/email/12345/"))
    assert [(i.key, i.payload_sha256) for i in listed] == [(key, sha256_hex(payload))]


def test_connect_refuses_the_plain_http_emulator_without_the_flag(cli, gcs_bucket) -> None:
    result = cli("connect", f"gs://{gcs_bucket}/archive/", "--project", "12345")
    assert result.exit_code == 1
    assert "is plain http" in result.stderr
    assert "--allow-insecure-endpoint" in result.stderr
    assert json.loads(cli("--json", "destinations").stdout) == []


def test_an_emulator_off_loopback_is_refused_even_with_the_flag(monkeypatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "emulator.example:9023")
    with pytest.raises(ConfigError, match="only accepted for loopback hosts"):
        GCSDestination("gs://b/p/", DestinationOptions(allow_insecure_endpoint=True))


def test_corrupted_stored_bytes_fail_the_crc32c_check(
        gcs_destination, gcs_bucket, gcs_emulator_server) -> None:
    """Bit rot in the store: the bytes change under an unchanged CRC32C."""
    payload = payload_bytes({"message_id": "m-2"})
    key = "archive/email/1/h/c/m-2.json.gz"
    gcs_destination.put(key, gzip_body(payload), sha256_hex(payload))
    storage = gcs_emulator_server._storage
    resource = storage.get_file_obj(gcs_bucket, key)
    storage.create_file(gcs_bucket, key, gzip_body(b'{"message_id":"forged"}'), resource)
    with pytest.raises(IntegrityError, match="CRC32C"):
        gcs_destination.get(key)


# --------------------------------------------------------------------------- errors


@pytest.fixture
def quick_sdk_retries(monkeypatch) -> None:
    """Shorten the SDK's own retries so a failing call gives up in well under a second."""
    monkeypatch.setattr(gcs, "SDK_RETRY_SECONDS", 0.3)


def _error_json(code: int, reason: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message,
                                 "errors": [{"reason": reason, "message": message}]}}).encode()


@pytest.mark.parametrize(("status", "reason", "retry_class"), [
    (429, "rateLimitExceeded", RATE_LIMITED),
    (503, "backendError", UNREACHABLE),
    (500, "internalError", UNREACHABLE),
    (401, "required", UNREACHABLE),
    (403, "forbidden", UNREACHABLE),
])
def test_service_errors_on_the_wire_get_their_retry_class(
        monkeypatch, quick_sdk_retries, status, reason, retry_class) -> None:
    reply = CannedReply(status, _error_json(status, reason, "canned"),
                        {"Content-Type": "application/json"})
    with canned_server(reply) as url:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        destination = GCSDestination("gs://b/archive/",
                                     DestinationOptions(allow_insecure_endpoint=True))
        with pytest.raises(DestinationError) as caught:
            destination.put("archive/k.json.gz", b"x", "0" * 64)
    assert caught.value.retry_class == retry_class
    assert reply.requests >= 1


def test_a_missing_bucket_is_unreachable(gcs_emulator) -> None:
    destination = GCSDestination("gs://sm-no-such-bucket/archive/",
                                 DestinationOptions(allow_insecure_endpoint=True))
    with pytest.raises(DestinationError) as caught:
        destination.put("archive/k.json.gz", b"x", "0" * 64)
    assert caught.value.retry_class == UNREACHABLE
    assert "HTTP 404" in str(caught.value)


def test_a_closed_port_is_unreachable(monkeypatch, quick_sdk_retries) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{closed_port()}")
    destination = GCSDestination("gs://b/archive/",
                                 DestinationOptions(allow_insecure_endpoint=True))
    with pytest.raises(DestinationError) as caught:
        destination.put("archive/k.json.gz", b"x", "0" * 64)
    assert caught.value.retry_class == UNREACHABLE


def test_missing_application_default_credentials_are_unreachable_with_a_hint(
        monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    destination = GCSDestination("gs://b/archive/")
    with pytest.raises(DestinationError) as caught:
        destination.put("archive/k.json.gz", b"x", "0" * 64)
    assert caught.value.retry_class == UNREACHABLE
    assert "gcloud auth application-default login" in (caught.value.hint or "")


@pytest.mark.parametrize(("exc", "retry_class"), [
    (google_errors.TooManyRequests("slow down"), RATE_LIMITED),
    (google_errors.ServiceUnavailable("backend"), UNREACHABLE),
    (google_errors.InternalServerError("oops"), UNREACHABLE),
    (google_errors.Unauthorized("who"), UNREACHABLE),
    (google_errors.Forbidden("no"), UNREACHABLE),
    (google_errors.NotFound("The specified bucket does not exist."), UNREACHABLE),
    (requests.ConnectionError("refused"), UNREACHABLE),
    (requests.Timeout("slow"), UNREACHABLE),
])
def test_sdk_exception_objects_are_classified(exc, retry_class) -> None:
    assert classify(exc) == retry_class


# --------------------------------------------------------------------------- checks


def _by_name(checks: list[Any]) -> dict[str, tuple[str, str]]:
    return {c.name: (c.status, c.detail) for c in checks}


def test_checks_pass_on_a_locked_down_bucket(gcs_client, gcs_bucket, gcs_destination) -> None:
    bucket = gcs_client.get_bucket(gcs_bucket)
    bucket.iam_configuration.public_access_prevention = "enforced"
    bucket.default_kms_key_name = "projects/p/locations/us/keyRings/r/cryptoKeys/sm"
    bucket.versioning_enabled = True
    bucket.retention_period = 30 * 86400
    bucket.patch()
    checks = _by_name(gcs_destination.checks())
    assert checks["tls"][0] == "warn"  # plain http to the loopback emulator
    assert checks["public_access"] == ("pass", "public access prevention is enforced")
    assert checks["encryption"] == (
        "pass", "default customer-managed key projects/p/locations/us/keyRings/r/cryptoKeys/sm")
    assert checks["versioning"] == ("pass", "object versioning is enabled")
    # the emulator cannot lock a policy: an unlocked one is a warning
    assert checks["retention"][0] == "warn"
    assert "30 days (unlocked)" in checks["retention"][1]


def test_a_public_iam_binding_fails_the_public_access_check(
        gcs_client, gcs_bucket, gcs_destination) -> None:
    bucket = gcs_client.get_bucket(gcs_bucket)
    policy = bucket.get_iam_policy()
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {"allUsers"}})
    bucket.set_iam_policy(policy)
    checks = {c.name: c for c in gcs_destination.checks()}
    assert checks["public_access"].status == "fail"
    assert checks["public_access"].detail == (
        "the bucket IAM policy grants access to allUsers; the bucket holds personal data")
    assert checks["public_access"].hint.startswith(
        f"gcloud storage buckets remove-iam-policy-binding gs://{gcs_bucket} --member=allUsers")


def test_an_unreachable_bucket_fails_the_reachable_check_alone(gcs_emulator) -> None:
    destination = GCSDestination("gs://sm-no-such-bucket/archive/",
                                 DestinationOptions(allow_insecure_endpoint=True))
    checks = destination.checks()
    assert [(c.name, c.status) for c in checks] == [("reachable", "fail")]
    assert "HTTP 404" in checks[0].detail


def test_a_bucket_deleted_after_connect_waits_as_unreachable_until_replayed(
        cli, gcs_client, gcs_bucket, make_message) -> None:
    url = f"gs://{gcs_bucket}/archive/"
    assert cli("connect", url, "--project", "12345", "--allow-insecure-endpoint").exit_code == 0
    gcs_client.get_bucket(gcs_bucket).delete(force=True)
    assert cli("ingest", "-", input=jsonl(make_message())).exit_code == 0
    assert cli("run", "--once").exit_code == 1  # the pass ended unreachable (SPEC 8)
    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"]["retry_wait"] == 1
    assert status["counts"]["stored"] == 0
    assert status["destinations"][0]["health"] == "unreachable"
    # the operator restores it and replays instead of waiting 8 hours
    gcs_client.create_bucket(gcs_bucket)
    replayed = cli("replay")
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(cli("--json", "status").stdout)["counts"]["stored"] == 1


def test_connect_with_retention_on_a_bucket_without_a_policy_reports_a_failure(
        cli, gcs_bucket, gcs_client) -> None:
    result = cli("--json", "connect", f"gs://{gcs_bucket}/archive/", "--project", "7",
                 "--allow-insecure-endpoint", "--retention-days", "30")
    document = json.loads(result.stdout)
    retention = [c for c in document["checks"] if c["name"] == "retention"]
    assert retention[0]["status"] == "fail"
    assert "no retention policy" in retention[0]["detail"]
    # with retention the connect test object is kept, as deleting it would be refused
    kept = [b.name for b in gcs_client.list_blobs(gcs_bucket, prefix="archive/_sm/")]
    assert len(kept) == 1


def test_retention_rules_on_bucket_resources() -> None:
    """Pure rules over the bucket resource GCS returns (a locked policy cannot be made here)."""
    locked = {"retentionPeriod": str(30 * 86400), "isLocked": True}
    assert retention_check(locked, 30).status == "pass"
    assert retention_check(locked, 31).status == "fail"
    assert retention_check(None, None).status == "warn"
    assert retention_check(None, 7).status == "fail"
    resource = {"iamConfiguration": {"publicAccessPrevention": "inherited"}}
    assert _by_name(bucket_checks(resource, None, None))["public_access"][0] == "warn"
    assert _by_name(bucket_checks(resource, set(), None))["versioning"][0] == "warn"


def test_sha256_metadata_matches_the_payload_not_the_gzip(gcs_destination, gcs_client,
                                                          gcs_bucket) -> None:
    payload = payload_bytes({"message_id": "m-3"})
    key = "archive/sms/1/h/unassociated/m-3.json.gz"
    gcs_destination.put(key, gzip_body(payload), sha256_hex(payload))
    stored = gcs_client.bucket(gcs_bucket).get_blob(key)
    assert stored.metadata["sm-payload-sha256"] == hashlib.sha256(payload).hexdigest()
