"""`s3://BUCKET/PREFIX`: AWS S3 and S3-compatible stores, through boto3.

Writes are create-only (`IfNoneMatch: *`) and carry `ChecksumSHA256` of the object bytes
and `sm-payload-sha256` metadata. Every request that accepts it carries the bucket-owner
condition (`ExpectedBucketOwner`), and with a role the credentials come from STS AssumeRole,
refreshed by botocore before they expire. The PUT itself goes out through `s3_put.LeanPut`
(the same request, signed and sent with the client's own parts, without botocore's per-call
machinery). boto3 is imported only when an S3 destination is opened.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import os
import re
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, DestinationError, ObjectNotFound, SmError
from ..retry import classify, describe, error_facts
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

_META_KEY = PAYLOAD_SHA_METADATA  # boto3 exposes user metadata without the x-amz-meta- prefix
_EXISTS_CODES = frozenset({"PreconditionFailed", "412"})
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_BUCKET_CODES = frozenset({"NoSuchBucket"})
_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled",
                           "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                           "InvalidToken"})
_CREDENTIAL_ERRORS = frozenset({"NoCredentialsError", "PartialCredentialsError",
                                "ProfileNotFound", "CredentialRetrievalError"})
RETRY_MAX_ATTEMPTS = 3
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
ACCOUNT_ID_RE = re.compile(r"^\d{12}$")
EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
ROLE_ARN_RE = re.compile(r"^arn:aws[a-zA-Z-]*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}$")
RETENTION_MODES = ("governance", "compliance")
# ACL grantee groups (http://acs.amazonaws.com/groups/global/…) that make a bucket public.
PUBLIC_GRANTEES = {"AllUsers": "everyone", "AuthenticatedUsers": "every AWS account"}
PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                       "RestrictPublicBuckets")


def error_code(exc: Any) -> str:
    """The S3 error code of a botocore ClientError ('' for other exceptions)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def role_account(role_arn: str | None) -> str | None:
    """The 12-digit account of an IAM role ARN, or None when it is not one."""
    match = ROLE_ARN_RE.match(role_arn or "")
    return match.group(1) if match else None


def timeout_from_env(name: str, default: float) -> float:
    """Seconds from an environment variable (e.g. SM_S3_READ_TIMEOUT), else `default`."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{name} must be more than 0 seconds")
    return value


def make_session(options: DestinationOptions) -> Any:
    """A boto3 session for `options`: the standard credential chain (with --profile), or,
    with --role-arn, refreshable credentials from STS AssumeRole made with that chain.

    The role's credentials are botocore's own `DeferredRefreshableCredentials`: fetched on
    first use and fetched again by botocore shortly before they expire.
    """
    import boto3
    import botocore.session
    from botocore.credentials import (
        AssumeRoleCredentialFetcher,
        CredentialProvider,
        CredentialResolver,
        DeferredRefreshableCredentials,
    )

    if not options.role_arn:
        return boto3.session.Session(profile_name=options.profile, region_name=options.region)
    source = botocore.session.Session(profile=options.profile)
    if options.region:
        source.set_config_variable("region", options.region)
    # The role's credentials come back from STS: its endpoint obeys the same rule as S3's.
    sts = source.create_client("sts", region_name=options.region)
    try:
        check_endpoint(sts.meta.endpoint_url, options.allow_insecure_endpoint,
                       source=configured_endpoint_source("sts", options.profile))
    finally:
        sts.close()
    source_credentials = source.get_credentials()
    if source_credentials is None:
        raise ConfigError("no AWS credentials found to assume the role with",
                          hint="set AWS_PROFILE (or --profile) or AWS_ACCESS_KEY_ID/"
                          "AWS_SECRET_ACCESS_KEY, then try again")
    extra_args = {"RoleSessionName": f"sm-{secrets.token_hex(6)}"}
    if options.external_id:
        extra_args["ExternalId"] = options.external_id
    fetcher = AssumeRoleCredentialFetcher(
        client_creator=source.create_client, source_credentials=source_credentials,
        role_arn=options.role_arn, extra_args=extra_args)
    credentials = DeferredRefreshableCredentials(
        refresh_using=fetcher.fetch_credentials, method="assume-role")

    class AssumedRoleProvider(CredentialProvider):
        METHOD = "assume-role"

        def load(self) -> Any:
            """The role's refreshable credentials."""
            return credentials

    target = botocore.session.Session(profile=options.profile)
    if options.region:
        target.set_config_variable("region", options.region)
    target.register_component("credential_provider",
                              CredentialResolver(providers=[AssumedRoleProvider()]))
    return boto3.session.Session(botocore_session=target, region_name=options.region)


def configured_endpoint_source(service: str, profile: str | None) -> str:
    """Where botocore found an endpoint that no --endpoint-url gave: the environment variable
    or the profile's `endpoint_url` (for messages that blame what the operator must change)."""
    for name in (f"AWS_ENDPOINT_URL_{service.upper()}", "AWS_ENDPOINT_URL"):
        if os.environ.get(name):
            return name
    name = profile or os.environ.get("AWS_PROFILE") or "default"
    return f"the endpoint_url of AWS profile {name} (AWS config file)"


def _is_aws_endpoint(endpoint_url: str) -> bool:
    host = (urlsplit(endpoint_url).hostname or "").lower()
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


def resolved_endpoint(options: DestinationOptions, session: Any = None) -> str:
    """The S3 endpoint the SDK will really use for `options`, checked against the HTTPS /
    loopback rule (SPEC 7).

    Besides --endpoint-url, botocore reads `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL` and a
    profile's `endpoint_url` (services or top level) from its configuration; whichever wins
    is what `client.meta.endpoint_url` says, so that is what is checked, never the option.
    """
    import boto3

    session = session or boto3.session.Session(profile_name=options.profile,
                                               region_name=options.region)
    probe = session.client("s3", endpoint_url=options.endpoint_url)
    try:
        endpoint = str(probe.meta.endpoint_url)
    finally:
        probe.close()
    source = None if options.endpoint_url else configured_endpoint_source("s3",
                                                                          options.profile)
    check_endpoint(endpoint, options.allow_insecure_endpoint, source=source)
    return endpoint


def make_s3_client(options: DestinationOptions, session: Any = None) -> Any:
    """An S3 client with standard-mode retries (no retry quota) and the owner condition.

    Raises ConfigError when the endpoint it resolves to (from any source) is not allowed.
    """
    from botocore.config import Config

    session = session or make_session(options)
    endpoint = resolved_endpoint(options, session)
    custom = options.endpoint_url or not _is_aws_endpoint(endpoint)
    config = Config(
        retries={"mode": "standard", "max_attempts": RETRY_MAX_ATTEMPTS},
        connect_timeout=timeout_from_env("SM_S3_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT),
        read_timeout=timeout_from_env("SM_S3_READ_TIMEOUT", DEFAULT_READ_TIMEOUT),
        max_pool_connections=max(10, options.max_connections),
        s3={"addressing_style": "path"} if custom else None,
    )
    client = session.client("s3", endpoint_url=options.endpoint_url, config=config)
    if client.meta.endpoint_url != endpoint:  # never expected; never trust an unchecked one
        check_endpoint(client.meta.endpoint_url, options.allow_insecure_endpoint,
                       source=configured_endpoint_source("s3", options.profile))
    disable_retry_quota(client, RETRY_MAX_ATTEMPTS)
    skip_expect_continue(client)
    if options.expected_owner:
        add_owner_condition(client, options.expected_owner)
    return client


def skip_expect_continue(client: Any) -> None:
    """Send PUT bodies at once instead of asking first (`Expect: 100-continue`).

    botocore adds the header to every S3 PUT with a body; each archived object, manifest or
    access record is a few kilobytes, so waiting for the go-ahead costs a whole round trip per
    message on real S3 and saves nothing. Every other guarantee of the request (conditions,
    checksums, signing) stays.
    """
    from botocore.handlers import add_expect_header

    client.meta.events.unregister("before-call.s3", add_expect_header)


class _UnlimitedRetryQuota:
    """A retry quota that never runs dry (see `disable_retry_quota`)."""

    def acquire(self, capacity_amount: int) -> bool:
        """Always grant the retry."""
        return True

    def release(self, capacity_amount: int) -> None:
        """Nothing to give back."""


def standard_retry_policy(service: str, max_attempts: int) -> tuple[Any, Any]:
    """botocore's standard-mode retry policy for `service` (its retry conditions and its
    exponential backoff) and the throttling detector it uses."""
    from botocore.retries import standard

    throttling = standard.ThrottlingErrorDetector(standard.RetryEventAdapter())
    policy = standard.RetryPolicy(
        retry_checker=standard.StandardRetryConditions(max_attempts=max_attempts),
        retry_backoff=standard.ExponentialBackoff(service_name=service,
                                                  throttling_detector=throttling),
    )
    return policy, throttling


def disable_retry_quota(client: Any, max_attempts: int) -> None:
    """Keep botocore's standard retry mode but without its client-wide retry quota.

    After a long outage the quota is spent and every later call fails at once without its
    quick retries; the archiver has its own slow schedule for outages, so the quota only
    hurts. This swaps the `needs-retry` handler that
    `botocore.retries.standard.register_retry_handler` installed for one built from the same
    botocore parts, with a quota that never runs dry.
    """
    from botocore.retries import standard

    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.unregister(f"needs-retry.{service}", unique_id=f"retry-config-{service}")
    policy, throttling = standard_retry_policy(service, max_attempts)
    handler = standard.RetryHandler(
        retry_policy=policy,
        retry_event_adapter=standard.RetryEventAdapter(),
        retry_quota=standard.RetryQuotaChecker(_UnlimitedRetryQuota(), throttling),
        service_name=service,
    )
    client.meta.events.register(f"needs-retry.{service}", handler.needs_retry,
                                unique_id=f"retry-config-{service}")


def add_owner_condition(client: Any, account: str) -> None:
    """Send `ExpectedBucketOwner=account` on every S3 operation that accepts it."""

    def add_owner(params: dict[str, Any], model: Any, **_: Any) -> None:
        if "ExpectedBucketOwner" in model.input_shape.members:
            params.setdefault("ExpectedBucketOwner", account)

    client.meta.events.register("before-parameter-build.s3", add_owner,
                                unique_id="sm-expected-bucket-owner")


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
        object, the one the client signs with, refreshed by botocore)."""
        from .s3_put import LeanPut

        session = make_session(self.options)
        client = make_s3_client(self.options, session)
        policy, _ = standard_retry_policy("s3", RETRY_MAX_ATTEMPTS)
        enabled = os.environ.get("SM_S3_LEAN_PUT", "").lower() not in ("0", "off", "false", "no")
        self._lean = LeanPut(client, session.get_credentials(), policy, RETRY_MAX_ATTEMPTS,
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

    # ----------------------------------------------------------------------- checks

    def checks(self) -> builtins.list[Check]:
        """Reachability, then the bucket's safety settings, as `sm verify` lines.

        Reachability is a one-key listing under `{prefix}_sm/` (HeadBucket would need an
        unconditioned s3:ListBucket, which the least-privilege policy does not grant).
        """
        reachable = self.reachable_check()
        if reachable.status == "fail":
            return [reachable]
        return [reachable, *self.settings_checks()]

    def reachable_check(self) -> Check:
        """Can the bucket be listed under `{prefix}_sm/` with the owner condition?"""
        try:
            response = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=f"{self.prefix}{TEST_OBJECT_FOLDER}", MaxKeys=1)
        except Exception as exc:
            error = self._wrap(exc, "listing")
            return Check("reachable", "fail", f"cannot list s3://{self.bucket}: "
                         f"{describe(exc)}", hint=error.hint)
        region = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get(
            "x-amz-bucket-region")
        where = f" in {region}" if region else ""
        return Check("reachable", "pass", f"bucket {self.bucket}{where} answers")

    def settings_checks(self) -> builtins.list[Check]:
        """Owner condition, public access block, default encryption, versioning, object
        lock (required when retention is configured) and the transport."""
        return [
            self._owner_check(),
            self._public_access_check(),
            self._encryption_check(),
            self._versioning_check(),
            *self._object_lock_checks(),
            endpoint_check(self.endpoint_url),
        ]

    def _owner_check(self) -> Check:
        owner = self.options.expected_owner
        if owner:
            return Check("owner_condition", "pass",
                         f"every request requires the bucket to be owned by {owner}")
        return Check("owner_condition", "warn",
                     "no expected owner: a same-named bucket in another account would be"
                     " used too", hint=f"sm connect {self.url} --expected-owner ACCOUNT_ID …")

    def _read_setting(self, call: str, missing_codes: set[str]) -> tuple[str, Any]:
        """('ok', response) | ('missing', None) | ('unreadable', reason)."""
        try:
            return "ok", getattr(self.client, call)(Bucket=self.bucket)
        except Exception as exc:
            code = error_code(exc)
            if code in missing_codes:
                return "missing", None
            return "unreadable", describe(exc)

    def _public_access_check(self) -> Check:
        """Fail when the bucket is public (its policy status or an ACL grant says so) or when
        the public access block is not fully on (it could become public)."""
        state, value = self._read_setting("get_public_access_block",
                                          {"NoSuchPublicAccessBlockConfiguration"})
        fix = (f"aws s3api put-public-access-block --bucket {self.bucket}"
               " --public-access-block-configuration BlockPublicAcls=true,"
               "IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true")
        exposures = self._public_exposures()
        if exposures:
            return Check("public_access", "fail", "the bucket is public: " + "; ".join(exposures)
                         + "; the bucket holds personal data", hint=fix)
        if state == "unreadable":
            return Check("public_access", "warn", f"cannot read the public access block"
                         f" ({value})", hint=f"sm policy {self.url}")
        config = (value or {}).get("PublicAccessBlockConfiguration", {})
        open_flags = [flag for flag in PUBLIC_ACCESS_FLAGS if not config.get(flag)]
        if not open_flags:
            return Check("public_access", "pass", "all four public access blocks are on")
        if state == "missing":
            detail = "no public access block: the bucket can be made public"
        else:
            detail = f"public access not fully blocked ({', '.join(open_flags)} off)"
        return Check("public_access", "fail",
                     detail + "; the bucket holds personal data", hint=fix)

    def _public_exposures(self) -> builtins.list[str]:
        """What makes the bucket public now: S3's own policy status, and ACL grants to
        everyone or to every AWS account. Settings that cannot be read add nothing."""
        exposures: builtins.list[str] = []
        state, value = self._read_setting("get_bucket_policy_status", {"NoSuchBucketPolicy"})
        if state == "ok" and ((value or {}).get("PolicyStatus") or {}).get("IsPublic"):
            exposures.append("S3 reports its bucket policy as public")
        state, value = self._read_setting("get_bucket_acl", set())
        for grant in (value or {}).get("Grants", []) if state == "ok" else []:
            grantee = str((grant.get("Grantee") or {}).get("URI") or "")
            whom = PUBLIC_GRANTEES.get(grantee.rsplit("/", 1)[-1]) if grantee else None
            if whom:
                exposures.append(f"its ACL grants {grant.get('Permission', 'access')} to {whom}")
        return exposures

    def _encryption_check(self) -> Check:
        state, value = self._read_setting("get_bucket_encryption",
                                          {"ServerSideEncryptionConfigurationNotFoundError"})
        if state == "unreadable":
            return Check("encryption", "warn", f"cannot read default encryption ({value})",
                         hint=f"sm policy {self.url}")
        rules = (value or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        for rule in rules:
            default = rule.get("ApplyServerSideEncryptionByDefault") or {}
            algorithm = default.get("SSEAlgorithm")
            if algorithm == "AES256":
                return Check("encryption", "pass", "default encryption SSE-S3 (AES256)")
            if algorithm and algorithm.startswith("aws:kms"):
                key = default.get("KMSMasterKeyID") or "the AWS managed key"
                return Check("encryption", "pass", f"default encryption SSE-KMS ({key})")
        return Check("encryption", "warn", "no default encryption configured",
                     hint=f"aws s3api put-bucket-encryption --bucket {self.bucket}"
                     " --server-side-encryption-configuration"
                     " '{\"Rules\":[{\"ApplyServerSideEncryptionByDefault\":"
                     "{\"SSEAlgorithm\":\"AES256\"}}]}'")

    def _versioning_check(self) -> Check:
        required = bool(self.options.retention_days)
        state, value = self._read_setting("get_bucket_versioning", set())
        if state == "unreadable":
            return Check("versioning", "fail" if required else "warn",
                         f"cannot read versioning ({value})", hint=f"sm policy {self.url}")
        status = (value or {}).get("Status") or "never enabled"
        if status == "Enabled":
            return Check("versioning", "pass", "versioning is enabled")
        return Check("versioning", "fail" if required else "warn",
                     f"versioning is {status.lower()}: a deleted or replaced object cannot be"
                     " recovered",
                     hint=f"aws s3api put-bucket-versioning --bucket {self.bucket}"
                     " --versioning-configuration Status=Enabled")

    def _object_lock_checks(self) -> builtins.list[Check]:
        required = bool(self.options.retention_days)
        state, value = self._read_setting("get_object_lock_configuration",
                                          {"ObjectLockConfigurationNotFoundError"})
        config = (value or {}).get("ObjectLockConfiguration", {})
        enabled = config.get("ObjectLockEnabled") == "Enabled"
        if not required:
            if enabled:
                return [Check("object_lock", "pass", f"object lock is on{_default_rule(config)}")]
            return []
        if state == "unreadable":
            return [Check("object_lock", "fail", f"cannot read the object lock configuration"
                          f" ({value}); retention is configured", hint=f"sm policy {self.url}")]
        if not enabled:
            return [Check("object_lock", "fail",
                          f"retention of {self.options.retention_days} days is configured but"
                          f" the bucket has no object lock",
                          hint=f"sm bucket create s3://NEW-BUCKET/ --object-lock --retention-days"
                          f" {self.options.retention_days}")]
        mode = (self.options.retention_mode or "governance").lower()
        return [Check("object_lock", "pass",
                      f"object lock is on{_default_rule(config)}; every object is kept"
                      f" {self.options.retention_days} days in {mode} mode")]

    def close(self) -> None:
        """Close the HTTP connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None
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


def _default_rule(config: dict[str, Any]) -> str:
    rule = (config.get("Rule") or {}).get("DefaultRetention") or {}
    if not rule:
        return ""
    length = f"{rule['Days']} days" if rule.get("Days") else f"{rule.get('Years')} years"
    return f" (default retention {rule.get('Mode', '').lower()} {length})"


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
