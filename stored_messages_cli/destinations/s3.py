"""`s3://BUCKET/PREFIX`: AWS S3 and S3-compatible stores, through boto3.

Writes are create-only (`IfNoneMatch: *`) and carry `ChecksumSHA256` of the object bytes
and `sm-payload-sha256` metadata. The client (`s3_client`) adds the bucket-owner condition
(`ExpectedBucketOwner`) to every request that accepts it and, with a role, signs with STS
AssumeRole credentials that botocore refreshes. The PUT itself goes out through
`s3_put.LeanPut` (the same request, signed by botocore's signer and sent on its own urllib3
pool, without botocore's per-call machinery); the bucket's safety settings are checked in
`s3_checks`. boto3 is imported only when an S3 destination is opened.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import ConfigError, DestinationError, ObjectNotFound, SmError
from ..retry import classify, describe, error_facts
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
    existing_object,
    split_url,
    timestamp_of,
)
from .s3_checks import BucketChecks
from .s3_client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    RETRY_MAX_ATTEMPTS,
    error_code,
    make_s3_client,
    make_session,
    resolved_endpoint,
    standard_retry_policy,
    timeout_from_env,
    transport_settings,
)

_META_KEY = PAYLOAD_SHA_METADATA  # boto3 exposes user metadata without the x-amz-meta- prefix
_EXISTS_CODES = frozenset({"PreconditionFailed", "412"})
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_BUCKET_CODES = frozenset({"NoSuchBucket"})
# No object lock on the bucket, or no hold / retention on the object version.
_NO_LOCK_CODES = frozenset({"ObjectLockConfigurationNotFoundError",
                            "NoSuchObjectLockConfiguration", "InvalidRequest"})
_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled",
                           "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                           "InvalidToken"})
_CREDENTIAL_ERRORS = frozenset({"NoCredentialsError", "PartialCredentialsError",
                                "ProfileNotFound", "CredentialRetrievalError"})
ACCOUNT_ID_RE = re.compile(r"^\d{12}$")
EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
ROLE_ARN_RE = re.compile(r"^arn:aws[a-zA-Z-]*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}$")
RETENTION_MODES = ("governance", "compliance")


def role_account(role_arn: str | None) -> str | None:
    """The 12-digit account of an IAM role ARN, or None when it is not one."""
    match = ROLE_ARN_RE.match(role_arn or "")
    return match.group(1) if match else None


class S3Destination:
    """An S3 bucket and key prefix."""

    # Every object sm writes carries its own object-lock retain-until date (when retention is
    # set), so an object without one has lost it (`sm audit`: retention_short).
    retention_per_object = True

    def __init__(self, url: str, options: DestinationOptions | None = None) -> None:
        self.options = options or DestinationOptions()
        scheme, self.bucket, self.prefix = split_url(url)
        if scheme != "s3":
            raise ConfigError(f"{url} is not an s3:// URL")
        check_endpoint(self.options.endpoint_url, self.options.allow_insecure_endpoint)
        for name, default in (("SM_S3_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT),
                              ("SM_S3_READ_TIMEOUT", DEFAULT_READ_TIMEOUT)):
            timeout_from_env(name, default)  # a bad value is a config error now, not later
        self.url = f"s3://{self.bucket}/{self.prefix}"
        # The endpoint the SDK will use, from whichever source, checked now: an endpoint from
        # AWS_ENDPOINT_URL or a profile must not slip past the rule --endpoint-url obeys.
        self.endpoint_url: str | None = self.options.endpoint_url
        try:
            self.endpoint_url = resolved_endpoint(self.options)
        except SmError:
            raise
        except Exception:  # noqa: BLE001 - e.g. an unknown profile: reported on first use
            pass
        self._client: Any = None
        self._lean: Any = None  # s3_put.LeanPut, built with the client
        self._client_lock = threading.Lock()

    # ----------------------------------------------------------------------- client

    @property
    def client(self) -> Any:
        """The boto3 S3 client, built on first use."""
        client = self._client
        if client is None:
            with self._client_lock:  # upload threads start together: build one client
                if self._client is None:
                    self._connect()
                client = self._client
        return client

    def _connect(self) -> None:
        """Build the client and the lean PUT on it (with the session's own credentials
        object, the one the client signs with, refreshed by botocore, and the same CA
        bundle and keep-alive the client was given)."""
        from .s3_put import LeanPut  # loads botocore and urllib3: only once S3 is used

        session = make_session(self.options)
        transport = transport_settings(self.options)
        client = make_s3_client(self.options, session, transport)
        policy, _ = standard_retry_policy("s3", RETRY_MAX_ATTEMPTS)
        enabled = os.environ.get("SM_S3_LEAN_PUT", "").lower() not in ("0", "off", "false", "no")
        self._lean = LeanPut(client, session.get_credentials(), policy, RETRY_MAX_ATTEMPTS,
                             verify=transport.verify, tcp_keepalive=transport.tcp_keepalive,
                             enabled=enabled)
        self._client = client

    @property
    def lean_put(self) -> Any:
        """The `s3_put.LeanPut` of the current client (built with it)."""
        lean = self._lean
        if lean is None:
            with self._client_lock:
                if self._lean is None:
                    self._connect()
                lean = self._lean
        return lean

    def refresh_credentials(self) -> None:
        """Drop the client so the next call resolves credentials afresh (before a probe).

        A new client means a new session: rotated keys, a changed profile and a fresh
        AssumeRole are all picked up. In-flight calls keep the old client until they end.
        """
        with self._client_lock:  # the client and its lean PUT go together
            self._client = None
            self._lean = None

    # ----------------------------------------------------------------------- objects

    def put(self, key: str, body: bytes, payload_sha256: str) -> PutResult:
        """Create-only upload; an existing object with the same payload hash is success."""
        # boto3/botocore load on first S3 use, not at start-up
        from botocore.exceptions import ClientError

        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
        extra: dict[str, Any] = {}
        if self.options.retention_days:
            extra["ObjectLockMode"] = (self.options.retention_mode or "governance").upper()
            extra["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(
                days=self.options.retention_days)
        if self.options.expected_owner:  # the client adds it too (add_owner_condition)
            extra["ExpectedBucketOwner"] = self.options.expected_owner
        try:
            response = self.lean_put.put(dict(
                Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*",
                # the algorithm header too: object-lock buckets refuse writes without it
                ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum,
                ContentType="application/gzip",
                Metadata={_META_KEY: payload_sha256}, **extra,
            ))
        except ClientError as exc:
            if error_code(exc) in _EXISTS_CODES:
                return self._existing(key, body, payload_sha256)
            raise self._wrap(exc, f"upload of {key}") from exc
        except SmError:  # an endpoint refused on building the client stays a config error
            raise
        except Exception as exc:  # connection, timeout, TLS: all classified, none dropped
            raise self._wrap(exc, f"upload of {key}") from exc
        return PutResult(key=key, created=True, version_id=response.get("VersionId"))

    def _existing(self, key: str, body: bytes, payload_sha256: str) -> PutResult:
        return existing_object(self, key, body, payload_sha256, f"s3://{self.bucket}/{key}")

    def get(self, key: str) -> FetchedObject:
        """Download an object; S3 checks `ChecksumSHA256` on the way (ChecksumMode)."""
        # boto3/botocore load on first S3 use, not at start-up
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key,
                                              ChecksumMode="ENABLED")
            body = response["Body"].read()
        except ClientError as exc:
            if error_code(exc) in _MISSING_CODES:
                raise ObjectNotFound(f"s3://{self.bucket}/{key} does not exist") from None
            raise self._wrap(exc, f"download of {key}") from exc
        except SmError:
            raise
        except Exception as exc:
            raise self._wrap(exc, f"download of {key}") from exc
        return FetchedObject(_info(key, response, len(body)), body)

    def head(self, key: str) -> ObjectInfo | None:
        """Metadata of an object, or None when it does not exist."""
        # boto3/botocore load on first S3 use, not at start-up
        from botocore.exceptions import ClientError

        try:
            # ChecksumMode: S3 returns the SHA-256 it checked the bytes against on upload.
            response = self.client.head_object(Bucket=self.bucket, Key=key,
                                               ChecksumMode="ENABLED")
        except ClientError as exc:
            if error_code(exc) in _MISSING_CODES:
                return None
            raise self._wrap(exc, f"read of {key}") from exc
        except SmError:
            raise
        except Exception as exc:
            raise self._wrap(exc, f"read of {key}") from exc
        return _info(key, response, response.get("ContentLength"))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix`, in key order."""
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(key=item["Key"], size=item.get("Size"))
        except Exception as exc:
            raise self._wrap(exc, f"listing of {prefix or '/'}") from exc

    def delete(self, key: str) -> None:
        """Delete an object (the connect test object)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise self._wrap(exc, f"delete of {key}") from exc

    # ----------------------------------------------------------------------- holds

    def hold_support(self) -> str | None:
        """None when the bucket has object lock (legal holds need it); else why not."""
        try:
            response = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except Exception as exc:
            if error_code(exc) in _NO_LOCK_CODES:
                return (f"s3://{self.bucket} has no object lock, which S3 legal holds need"
                        " (enable it on the bucket, with versioning, or use a bucket created"
                        " with object lock)")
            raise self._wrap(exc, "read of the object lock configuration") from exc
        enabled = (response.get("ObjectLockConfiguration") or {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            return f"s3://{self.bucket} has no object lock, which S3 legal holds need"
        return None

    def _version(self, key: str, version_id: str | None) -> dict[str, Any]:
        found: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            found["VersionId"] = version_id
        return found

    def set_legal_hold(self, key: str, version_id: str | None, on: bool, case_id: str) -> None:
        """PutObjectLegalHold ON/OFF on the object's version (S3 keeps no case id: the
        spool's ledger does)."""
        try:
            self.client.put_object_legal_hold(**self._version(key, version_id),
                                              LegalHold={"Status": "ON" if on else "OFF"})
        except Exception as exc:
            # (S3-compatible stores answer a missing key in their own ways: a 500 from moto)
            if error_code(exc) in _MISSING_CODES or self._missing(key, exc):
                raise ObjectNotFound(f"s3://{self.bucket}/{key} does not exist") from None
            raise self._wrap(exc, f"legal hold of {key}") from exc

    def _missing(self, key: str, exc: Exception) -> bool:
        """True when a failed call's object does not exist (asked again with a HEAD)."""
        if error_code(exc) in _DENIED_CODES:
            return False
        try:
            return self.head(key) is None
        except SmError:
            return False

    def legal_hold(self, key: str, version_id: str | None) -> bool:
        """True when the version's legal hold is ON."""
        try:
            response = self.client.get_object_legal_hold(**self._version(key, version_id))
        except Exception as exc:
            code = error_code(exc)
            if code in _NO_LOCK_CODES:
                return False
            if code in _MISSING_CODES:
                raise ObjectNotFound(f"s3://{self.bucket}/{key} does not exist") from None
            raise self._wrap(exc, f"read of the legal hold of {key}") from exc
        return str((response.get("LegalHold") or {}).get("Status", "")).upper() == "ON"

    def retention_support(self) -> str | None:
        """Object retention needs object lock, as legal holds do."""
        return self.hold_support()

    def retention_until(self, key: str, version_id: str | None) -> float | None:
        """The version's object lock retain-until date, or None."""
        return self._retention(key, version_id)[1]

    def _retention(self, key: str, version_id: str | None) -> tuple[str | None, float | None]:
        """(mode, retain-until) of the version, as HeadObject reports them (with
        s3:GetObjectRetention); (None, None) when it has none."""
        try:
            response = self.client.head_object(**self._version(key, version_id))
        except Exception as exc:
            if error_code(exc) in _MISSING_CODES:
                raise ObjectNotFound(f"s3://{self.bucket}/{key} does not exist") from None
            raise self._wrap(exc, f"read of the retention of {key}") from exc
        return (response.get("ObjectLockMode"),
                timestamp_of(response.get("ObjectLockRetainUntilDate")))

    def extend_retention(self, key: str, version_id: str | None, until: float) -> None:
        """PutObjectRetention in the version's own mode (else the project's), to `until`."""
        mode, _ = self._retention(key, version_id)
        mode = mode or (self.options.retention_mode or "governance").upper()
        try:
            self.client.put_object_retention(
                **self._version(key, version_id),
                Retention={"Mode": mode, "RetainUntilDate": datetime.fromtimestamp(until, UTC)})
        except Exception as exc:
            raise self._wrap(exc, f"retention of {key}") from exc

    # ----------------------------------------------------------------------- checks

    def checks(self) -> builtins.list[Check]:
        """Reachability, then the bucket's safety settings, as `sm verify` lines.

        Reachability is a one-key listing under `{prefix}_sm/` (HeadBucket would need an
        unconditioned s3:ListBucket, which the least-privilege policy does not grant).
        """
        reachable = self.reachable_check()
        if reachable.status == CheckStatus.FAIL:
            return [reachable]
        return [reachable, *self.settings_checks()]

    def reachable_check(self) -> Check:
        """Can the bucket be listed under `{prefix}_sm/` with the owner condition?"""
        try:
            response = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=f"{self.prefix}{TEST_OBJECT_FOLDER}", MaxKeys=1)
        except Exception as exc:
            error = self._wrap(exc, "listing")
            return Check("reachable", CheckStatus.FAIL, f"cannot list s3://{self.bucket}: "
                         f"{describe(exc)}", hint=error.hint)
        region = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get(
            "x-amz-bucket-region")
        where = f" in {region}" if region else ""
        return Check("reachable", CheckStatus.PASS, f"bucket {self.bucket}{where} answers")

    def settings_checks(self) -> builtins.list[Check]:
        """Owner condition, public access block, default encryption, versioning, object
        lock (required when retention is configured) and the transport (`s3_checks`)."""
        return BucketChecks(self.client, self.bucket, self.url, self.options,
                            self.endpoint_url).all()

    def close(self) -> None:
        """Close the HTTP connection pools (the client's and the lean PUT's)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._lean is not None:
            self._lean.close()
            self._lean = None

    def _wrap(self, exc: Exception, action: str) -> DestinationError:
        return DestinationError(f"{action} in s3://{self.bucket} failed: {describe(exc)}",
                                retry_class=classify(exc), hint=self.hint_for(exc))

    def hint_for(self, exc: Exception) -> str | None:
        """The next step for a user who sees `exc` (what to fix, not how to retry)."""
        facts = error_facts(exc)
        code = facts.code or ""
        if type(exc).__name__ in _CREDENTIAL_ERRORS:
            return ("give sm AWS credentials: AWS_PROFILE (or --profile), SSO, an instance or"
                    " task role, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if code in _NO_BUCKET_CODES:
            return f"sm bucket create s3://{self.bucket}/"
        if code in _DENIED_CODES or facts.status == 403:
            owner = self.options.expected_owner
            also = (f"; and check that account {owner} (--expected-owner) owns the bucket"
                    if owner else "")
            extra = " --retention" if self.options.retention_days else ""
            return f"sm policy {self.url}{extra}   # grant it to the identity sm runs as{also}"
        if facts.status is None and facts.code is None:
            where = self.endpoint_url or "the AWS S3 endpoint"
            also = " and that STS is reachable to assume --role-arn" if self.options.role_arn \
                else ""
            return f"check the network, {where}{also}"
        return None


def _info(key: str, response: dict[str, Any], size: int | None) -> ObjectInfo:
    metadata = {k.lower(): v for k, v in (response.get("Metadata") or {}).items()}
    checksums: dict[str, str] = {}
    sha256 = response.get("ChecksumSHA256")
    # S3 checked this against the bytes when they were uploaded and no writer can change it
    # afterwards; a multipart (composite) checksum ("…-N") is of the parts, not of the bytes.
    if sha256 and "-" not in sha256 and response.get("ChecksumType", "FULL_OBJECT") == \
            "FULL_OBJECT":
        checksums["sha256"] = sha256
    return ObjectInfo(key=key, size=size, payload_sha256=metadata.get(_META_KEY),
                      version_id=response.get("VersionId"), metadata=metadata,
                      checksums=checksums,
                      retain_until=timestamp_of(response.get("ObjectLockRetainUntilDate")))
