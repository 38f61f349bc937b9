"""`gs://BUCKET/PREFIX`: Google Cloud Storage, through google-cloud-storage.

Writes are create-only (`if_generation_match=0`) and carry a CRC32C the service checks, plus
`sm-payload-sha256` metadata. Objects are `application/gzip` with no `Content-Encoding`, so
GCS never transcodes them and reads return the stored bytes. Credentials come from Application
Default Credentials; `STORAGE_EMULATOR_HOST` points the client at an emulator (anonymous).
The SDK is imported only when a `gs://` destination is used.

`put` sends the upload itself (`gcs_put.GCSLeanPut`: the SDK's request, byte for byte, on its
own keep-alive pool) and hands anything but a 200 or a 412 to the SDK, which sends the
object again and reports the outcome as it always did.
"""

from __future__ import annotations

import builtins
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

# The SDK at the top: this module itself is loaded only for a gs:// URL (`REGISTRY`).
from google.api_core.exceptions import NotFound, PreconditionFailed
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY
from google.resumable_media import DataCorruption

from ..errors import ConfigError, DestinationError, IntegrityError, ObjectNotFound, SmError
from ..retry import classify, describe
from ..states import CheckStatus
from .base import (
    PAYLOAD_SHA_METADATA,
    TEST_OBJECT_FOLDER,
    Check,
    DestinationOptions,
    FetchedObject,
    ObjectInfo,
    PutResult,
    check_endpoint,
    endpoint_check,
    existing_object,
    split_url,
    timestamp_of,
)
from .gcs_put import GCSLeanPut
from .lean_http import put_lean_first

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
# The SDK's other endpoint override (google-cloud-storage reads it when the client is made).
ENDPOINT_OVERRIDE_ENV = "API_ENDPOINT_OVERRIDE"
CONTENT_TYPE = "application/gzip"
LEAN_PUT_ENV = "SM_GCS_LEAN_PUT"  # 0 sends every archive PUT through the SDK
# The SDK's own quick retries (429/5xx/connection) stop after this long; then the archiver's
# policy takes over. The SDK default (120 s) would stall a worker for two minutes.
SDK_RETRY_SECONDS = 10.0
TIMEOUT = (5.0, 30.0)  # (connect, read) seconds
_PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})


def emulator_endpoint() -> str | None:
    """The `STORAGE_EMULATOR_HOST` URL (a bare host:port means http), or None."""
    host = os.environ.get(EMULATOR_ENV, "").strip()
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


class GCSDestination:
    """A Cloud Storage bucket and key prefix."""

    # A bucket retention policy shows on every object (retentionExpirationTime), so an object
    # without a date is not retained (`sm audit`: retention_short).
    retention_per_object = True

    def __init__(self, url: str, options: DestinationOptions | None = None) -> None:
        self.options = options or DestinationOptions()
        scheme, self.bucket_name, self.prefix = split_url(url)
        if scheme != "gs":
            raise ConfigError(f"{url} is not a gs:// URL")
        self.emulator = emulator_endpoint()
        self.endpoint_url, source = self._endpoint_and_source()
        check_endpoint(self.endpoint_url, self.options.allow_insecure_endpoint, source=source)
        self.url = f"gs://{self.bucket_name}/{self.prefix}"
        self._clients: list[Any] = []  # every thread's client, closed together
        self._generation = 0  # a thread's client from before the last close is not used
        self._local = threading.local()
        self._lock = threading.Lock()
        self._lean: GCSLeanPut | None = None
        #: False sends every PUT through the SDK (as before the lean path): `SM_GCS_LEAN_PUT=0`
        self.lean_enabled = os.environ.get(LEAN_PUT_ENV, "").strip().lower() not in (
            "0", "off", "false", "no")

    # ----------------------------------------------------------------------- client

    @property
    def client(self) -> Any:
        """This thread's storage client, built on first use (credentials resolve there).

        One client per thread: each has its own HTTP session, whose pool (10 connections)
        always has room for its thread's one request at a time, so every upload worker
        keeps its connection open however many run. (The SDK offers no public way to size
        the pool of one shared client.)
        """
        local = self._local
        client = getattr(local, "client", None)
        if client is None or local.generation != self._generation:
            client = self._make_client()
            with self._lock:
                self._clients.append(client)
                local.client, local.generation = client, self._generation
        return client

    def refresh_credentials(self) -> None:
        """Drop the client so the next call resolves credentials afresh (before a probe)."""
        self.close()

    def _endpoint_and_source(self) -> tuple[str | None, str | None]:
        """The endpoint the SDK will use and where it comes from (None: --endpoint-url or
        the default), so that every source obeys the HTTPS / loopback rule."""
        if self.emulator:
            return self.emulator, EMULATOR_ENV
        if self.options.endpoint_url:
            return self.options.endpoint_url, None
        override = os.environ.get(ENDPOINT_OVERRIDE_ENV, "").strip()
        if override:
            return override, ENDPOINT_OVERRIDE_ENV
        return None, None

    def _make_client(self) -> Any:
        endpoint, source = self._endpoint_and_source()
        check_endpoint(endpoint, self.options.allow_insecure_endpoint, source=source)
        client_options = {"api_endpoint": endpoint} if endpoint else None
        # project=None: object calls need no project, so ADC without a project id is enough.
        client = storage.Client(project=None, client_options=client_options)
        # What the SDK really sends requests to (uploads and downloads use the same base;
        # the only other base, Google's mTLS endpoint, is HTTPS and always allowed).
        used = str(client.api_endpoint)
        if used != endpoint:
            check_endpoint(used, self.options.allow_insecure_endpoint,
                           source=source or "the google-cloud-storage defaults")
        self.endpoint_url = used
        return client

    @property
    def lean_put(self) -> GCSLeanPut | None:
        """The lean upload path, once a PUT has built it (None after `close`)."""
        return self._lean

    def _lean_path(self) -> GCSLeanPut | None:
        """The lean upload path, built with this thread's client (its endpoint) on first use."""
        lean = self._lean
        if lean is None and self.lean_enabled:
            endpoint = str(self.client.api_endpoint)  # the SDK's own, checked on the way
            with self._lock:
                lean = self._lean
                if lean is None:
                    lean = self._lean = GCSLeanPut(
                        endpoint, self.bucket_name, emulator=emulator_endpoint() is not None,
                        max_connections=self.options.max_connections, timeout=TIMEOUT,
                        content_type=CONTENT_TYPE)
        return lean

    @property
    def _retry(self) -> Any:
        return DEFAULT_RETRY.with_timeout(SDK_RETRY_SECONDS)

    def _bucket(self) -> Any:
        return self.client.bucket(self.bucket_name)

    # ----------------------------------------------------------------------- objects

    def put(self, key: str, body: bytes, payload_sha256: str) -> PutResult:
        """Create-only upload; an existing object with the same payload hash is success.

        The lean path sends it first; whatever it does not take (see `gcs_put`) is sent
        again here through the SDK, which retries and classifies as it always did."""
        try:
            lean = self._lean_path()
        except SmError:
            raise
        except Exception as exc:  # building the SDK client failed: credentials, config
            raise self._wrap(exc, f"upload of {key}") from exc
        return put_lean_first(
            lean, key, body, {PAYLOAD_SHA_METADATA: payload_sha256},
            existing=lambda: self._existing(key, body, payload_sha256),
            sdk=lambda: self._sdk_put(key, body, payload_sha256))

    def _sdk_put(self, key: str, body: bytes, payload_sha256: str) -> PutResult:
        """The upload through google-cloud-storage."""
        try:
            blob = self._bucket().blob(key)
            blob.metadata = {PAYLOAD_SHA_METADATA: payload_sha256}
            blob.upload_from_string(
                body, content_type=CONTENT_TYPE, if_generation_match=0, checksum="crc32c",
                retry=self._retry, timeout=TIMEOUT,
            )
        except PreconditionFailed:
            return self._existing(key, body, payload_sha256)
        except SmError:  # an endpoint refused on building the client stays a config error
            raise
        except Exception as exc:  # HTTP, connection, credentials: all classified, none dropped
            raise self._wrap(exc, f"upload of {key}") from exc
        return PutResult(key=key, created=True, version_id=_generation(blob))

    def _existing(self, key: str, body: bytes, payload_sha256: str) -> PutResult:
        return existing_object(self, key, body, payload_sha256,
                               f"gs://{self.bucket_name}/{key}")

    def get(self, key: str) -> FetchedObject:
        """Download the stored bytes as-is; the SDK checks them against the CRC32C GCS holds."""
        try:
            blob = self._bucket().blob(key)
            blob.reload(retry=self._retry, timeout=TIMEOUT)
            info = _info(blob)
            # The generation pins the bytes to the metadata just read.
            body = blob.download_as_bytes(
                raw_download=True, checksum="crc32c", if_generation_match=blob.generation,
                retry=self._retry, timeout=TIMEOUT,
            )
        except DataCorruption as exc:
            raise IntegrityError(f"gs://{self.bucket_name}/{key} failed its CRC32C check on"
                                 " download") from exc
        except NotFound as exc:
            if _bucket_missing(exc):
                raise self._wrap(exc, f"download of {key}") from exc
            raise ObjectNotFound(f"gs://{self.bucket_name}/{key} does not exist") from None
        except Exception as exc:
            raise self._wrap(exc, f"download of {key}") from exc
        return FetchedObject(info, body)

    def head(self, key: str) -> ObjectInfo | None:
        """Metadata of an object, or None when it does not exist (a missing bucket raises)."""
        try:
            blob = self._bucket().blob(key)
            blob.reload(retry=self._retry, timeout=TIMEOUT)
        except NotFound as exc:
            if _bucket_missing(exc):
                raise self._wrap(exc, f"read of {key}") from exc
            return None
        except Exception as exc:
            raise self._wrap(exc, f"read of {key}") from exc
        return _info(blob)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix`, in key order, with its `sm` metadata."""
        try:
            for blob in self.client.list_blobs(self.bucket_name, prefix=prefix,
                                               retry=self._retry, timeout=TIMEOUT):
                yield _info(blob)
        except Exception as exc:
            raise self._wrap(exc, f"listing of {prefix or '/'}") from exc

    def delete(self, key: str) -> None:
        """Delete an object (the connect test object); a missing one is fine."""
        try:
            self._bucket().blob(key).delete(retry=self._retry, timeout=TIMEOUT)
        except NotFound as exc:
            if _bucket_missing(exc):
                raise self._wrap(exc, f"delete of {key}") from exc
        except Exception as exc:
            raise self._wrap(exc, f"delete of {key}") from exc

    # ----------------------------------------------------------------------- holds

    def hold_support(self) -> str | None:
        """GCS places a temporary hold on any object: no bucket setting is needed."""
        return None

    def _loaded(self, key: str, version_id: str | None) -> Any:
        """The object's generation (`version_id`, else the live one), its metadata read."""
        generation = int(version_id) if version_id and version_id.isdigit() else None
        blob = self._bucket().blob(key, generation=generation)
        try:
            blob.reload(retry=self._retry, timeout=TIMEOUT)
        except NotFound as exc:
            if _bucket_missing(exc):
                raise self._wrap(exc, f"read of {key}") from exc
            raise ObjectNotFound(f"gs://{self.bucket_name}/{key} does not exist") from None
        except Exception as exc:
            raise self._wrap(exc, f"read of {key}") from exc
        return blob

    def set_legal_hold(self, key: str, version_id: str | None, on: bool, case_id: str) -> None:
        """The object's temporary hold (not an event-based one: releasing that would start
        the bucket's retention period again)."""
        blob = self._loaded(key, version_id)
        blob.temporary_hold = on
        try:
            blob.patch(retry=self._retry, timeout=TIMEOUT)
        except Exception as exc:
            raise self._wrap(exc, f"temporary hold of {key}") from exc

    def legal_hold(self, key: str, version_id: str | None) -> bool:
        """True when the object carries a temporary hold."""
        return bool(self._loaded(key, version_id).temporary_hold)

    def retention_support(self) -> str | None:
        """GCS sets an object's own retention on any bucket that allows object retention
        (a bucket that does not refuses each call, which is reported per object)."""
        return None

    def retention_until(self, key: str, version_id: str | None) -> float | None:
        """The later of the bucket policy's expiration and the object's own retention."""
        return _retain_until(self._loaded(key, version_id))

    def extend_retention(self, key: str, version_id: str | None, until: float) -> None:
        """The object's own retention (Unlocked unless it is Locked already), to `until`."""
        blob = self._loaded(key, version_id)
        retention = blob.retention
        if not retention.mode:
            retention.mode = "Unlocked"
        retention.retain_until_time = datetime.fromtimestamp(until, UTC)
        try:
            blob.patch(retry=self._retry, timeout=TIMEOUT)
        except Exception as exc:
            raise self._wrap(exc, f"retention of {key}") from exc

    # ----------------------------------------------------------------------- checks

    def checks(self) -> builtins.list[Check]:
        """Reachability, then public access, encryption at rest, versioning, the retention
        policy and the transport, as `sm verify` lines."""
        reachable = self.reachable_check()
        if reachable.status == CheckStatus.FAIL:
            return [reachable]
        try:
            bucket = self.client.get_bucket(self.bucket_name, retry=self._retry,
                                            timeout=TIMEOUT)
        except Exception as exc:
            return [reachable, Check(
                "settings", CheckStatus.WARN, f"cannot read the settings of gs://{self.bucket_name}"
                f" ({describe(exc)})", hint="grant storage.buckets.get and"
                " storage.buckets.getIamPolicy (roles/storage.legacyBucketReader) to check them"),
                endpoint_check(self.endpoint_url)]
        settings = bucket_checks(bucket_resource(bucket), self._public_members(bucket),
                                 self.options.retention_days)
        return [reachable, *settings, endpoint_check(self.endpoint_url)]

    def reachable_check(self) -> Check:
        """Can the bucket be listed under `{prefix}_sm/`?"""
        try:
            blobs = self.client.list_blobs(self.bucket_name, max_results=1,
                                           prefix=f"{self.prefix}{TEST_OBJECT_FOLDER}",
                                           retry=self._retry, timeout=TIMEOUT)
            list(blobs)
        except Exception as exc:
            error = self._wrap(exc, "listing")
            return Check("reachable", CheckStatus.FAIL, f"cannot list gs://{self.bucket_name}:"
                         f" {describe(exc)}", hint=error.hint)
        return Check("reachable", CheckStatus.PASS, f"bucket {self.bucket_name} answers")

    def _public_members(self, bucket: Any) -> set[str] | None:
        """Members of allUsers/allAuthenticatedUsers in the bucket IAM policy (None: unknown)."""
        try:
            policy = bucket.get_iam_policy(retry=self._retry, timeout=TIMEOUT)
        except Exception:
            return None
        members: set[str] = set()
        for binding in policy.bindings:
            members |= set(binding.get("members", ())) & _PUBLIC_MEMBERS
        return members

    def close(self) -> None:
        """Close every thread's HTTP session and the lean path's pool (its credentials are
        resolved again); the next call builds a client again."""
        with self._lock:
            clients, self._clients = self._clients, []
            self._generation += 1
            lean, self._lean = self._lean, None
        for client in clients:
            client.close()
        if lean is not None:
            lean.close()

    def _wrap(self, exc: Exception, action: str) -> DestinationError:
        hint = None
        if type(exc).__name__ == "DefaultCredentialsError":
            hint = "gcloud auth application-default login  (or set GOOGLE_APPLICATION_CREDENTIALS)"
        return DestinationError(f"{action} in gs://{self.bucket_name} failed: {describe(exc)}",
                                retry_class=classify(exc), hint=hint)


def bucket_resource(bucket: Any) -> dict[str, Any]:
    """The parts of a bucket's JSON resource (`storage#bucket`) the checks read, from the
    client library's public properties."""
    soft_delete = bucket.soft_delete_policy
    return {
        "name": bucket.name,
        "iamConfiguration": {
            "publicAccessPrevention": bucket.iam_configuration.public_access_prevention},
        "encryption": {"defaultKmsKeyName": bucket.default_kms_key_name},
        "versioning": {"enabled": bool(bucket.versioning_enabled)},
        "softDeletePolicy": {"retentionDurationSeconds": (
            soft_delete.retention_duration_seconds if soft_delete is not None else None)},
        "retentionPolicy": ({"retentionPeriod": bucket.retention_period,
                             "isLocked": bool(bucket.retention_policy_locked)}
                            if bucket.retention_period else None),
    }


def bucket_checks(resource: dict[str, Any], public_members: set[str] | None,
                  retention_days: int | None) -> list[Check]:
    """`sm verify` lines from a bucket resource (the JSON API's `storage#bucket`)."""
    name = resource.get("name", "BUCKET")
    return [public_access_check(name, resource, public_members),
            encryption_check(resource), versioning_check(name, resource),
            retention_check(resource.get("retentionPolicy"), retention_days, name)]


def public_access_check(name: str, resource: dict[str, Any],
                        public_members: set[str] | None) -> Check:
    """Fail on public IAM members; pass when public access prevention is enforced."""
    prevention = (resource.get("iamConfiguration") or {}).get("publicAccessPrevention")
    enforce = f"gcloud storage buckets update gs://{name} --public-access-prevention"
    if public_members:
        return Check("public_access", CheckStatus.FAIL, "the bucket IAM policy grants access to "
                     + ", ".join(sorted(public_members)) + "; the bucket holds personal data",
                     hint=f"gcloud storage buckets remove-iam-policy-binding gs://{name}"
                     f" --member={sorted(public_members)[0]} --role=ROLE, then {enforce}")
    if prevention == "enforced":
        return Check("public_access", CheckStatus.PASS, "public access prevention is enforced")
    if public_members is None:
        return Check("public_access", CheckStatus.WARN,
                     "public access prevention is not enforced on"
                     " the bucket and its IAM policy is unreadable", hint=enforce)
    return Check("public_access", CheckStatus.WARN,
                 "not public, but public access prevention is not"
                 " enforced on the bucket (an organisation policy may enforce it)", hint=enforce)


def encryption_check(resource: dict[str, Any]) -> Check:
    """GCS always encrypts at rest; report the default customer-managed key when set."""
    kms_key = (resource.get("encryption") or {}).get("defaultKmsKeyName")
    if kms_key:
        return Check("encryption", CheckStatus.PASS, f"default customer-managed key {kms_key}")
    return Check("encryption", CheckStatus.PASS, "Google-managed encryption at rest (always on)")


def versioning_check(name: str, resource: dict[str, Any]) -> Check:
    """Object versioning, or soft delete, keeps a deleted object recoverable."""
    if (resource.get("versioning") or {}).get("enabled"):
        return Check("versioning", CheckStatus.PASS, "object versioning is enabled")
    soft_delete = int((resource.get("softDeletePolicy") or {}).get("retentionDurationSeconds")
                      or 0)
    if soft_delete:
        return Check("versioning", CheckStatus.PASS, f"soft delete keeps deleted objects for"
                     f" {soft_delete / 86400:g} days")
    return Check("versioning", CheckStatus.WARN,
                 "neither object versioning nor soft delete is on: a"
                 " deleted object cannot be recovered",
                 hint=f"gcloud storage buckets update gs://{name} --versioning")


def retention_check(policy: dict[str, Any] | None, retention_days: int | None,
                    name: str = "BUCKET") -> Check:
    """The bucket retention policy against the retention the project asked for."""
    seconds = int((policy or {}).get("retentionPeriod") or 0)
    locked = bool((policy or {}).get("isLocked"))
    wanted = retention_days or 30
    set_policy = f"gcloud storage buckets update gs://{name} --retention-period={wanted}d"
    if not seconds:
        if retention_days:
            return Check("retention", CheckStatus.FAIL, f"retention of {retention_days} days is"
                         " configured but the bucket has no retention policy", hint=set_policy)
        return Check("retention", CheckStatus.WARN,
                     "no bucket retention policy: archived objects can be"
                     " deleted by anyone allowed to delete objects", hint=set_policy)
    described = (f"bucket retention policy of {seconds / 86400:g} days"
                 f" ({'locked' if locked else 'unlocked'})")
    if retention_days and seconds < retention_days * 86400:
        return Check("retention", CheckStatus.FAIL,
                     f"{described} is shorter than the {retention_days} days configured",
                     hint=set_policy)
    if not locked:
        return Check("retention", CheckStatus.WARN,
                     f"{described}: a bucket owner can still remove it",
                     hint=f"gcloud storage buckets update gs://{name} --lock-retention-period")
    return Check("retention", CheckStatus.PASS, described)


def _info(blob: Any) -> ObjectInfo:
    metadata = {k.lower(): v for k, v in (blob.metadata or {}).items()}
    # GCS computes md5Hash from the bytes it received (a writer cannot set it afterwards);
    # composite objects have none. CRC32C is not used: anyone can forge a CRC.
    checksums = {"md5": blob.md5_hash} if blob.md5_hash else {}
    return ObjectInfo(key=blob.name, size=blob.size, payload_sha256=metadata.get(
        PAYLOAD_SHA_METADATA), version_id=_generation(blob), metadata=metadata,
        checksums=checksums, retain_until=_retain_until(blob))


def _retain_until(blob: Any) -> float | None:
    """The later of the bucket policy's expiration and the object's own retention."""
    retention = getattr(blob, "retention", None)
    dates = [timestamp_of(getattr(blob, "retention_expiration_time", None)),
             timestamp_of(getattr(retention, "retain_until_time", None))]
    known = [d for d in dates if d is not None]
    return max(known) if known else None


def _generation(blob: Any) -> str | None:
    return str(blob.generation) if blob.generation is not None else None


def _bucket_missing(exc: Exception) -> bool:
    """GCS says "The specified bucket does not exist." for a missing bucket."""
    return "bucket does not exist" in str(exc).lower()
