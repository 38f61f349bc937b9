"""`az://CONTAINER/PREFIX`: Azure Blob Storage, through azure-storage-blob.

The account comes from `--account-url https://ACCOUNT.blob.core.windows.net` with the default
Azure credential chain (azure-identity), or from `AZURE_STORAGE_CONNECTION_STRING` in the
environment (never from config.toml). Writes are create-only (`overwrite=False`), carry a
Content-MD5 the service checks and stores, and `sm_payload_sha256` metadata (Azure metadata
names are C# identifiers, so no `-`). The SDK is imported only when an `az://` destination is used.

`put` sends the upload itself (`azure_put.AzureLeanPut`: the SDK's Put Blob, with the SDK's
credential, on its own keep-alive pool) and hands anything but a 201 or a `BlobAlreadyExists` to
the SDK, which sends the blob again and reports the outcome as it always did.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

# The SDK at the top: this module itself is loaded only for an az:// URL (`REGISTRY`).
import requests
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import (
    BlobServiceClient,
    ContentSettings,
    ExponentialRetry,
    ImmutabilityPolicy,
)
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import (
    ConfigError,
    DestinationError,
    IntegrityError,
    ObjectNotFound,
    SmError,
)
from ..retry import classify, describe, error_facts
from ..states import CheckStatus
from .azure_put import AccountCredential, AzureLeanPut, connection_credential
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
    refuse_credentials,
    split_url,
    timestamp_of,
)
from .lean_http import put_lean_first

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
AZURE_META_KEY = PAYLOAD_SHA_METADATA.replace("-", "_")
CONTENT_TYPE = "application/gzip"
LEAN_PUT_ENV = "SM_AZURE_LEAN_PUT"  # 0 sends every archive PUT through the SDK
# The SDK's own quick retries of 5xx and dropped connections; then the archiver's policy takes
# over. The SDK default (15 s, then 18 s, 24 s) would stall a worker for a minute.
SDK_RETRY_TOTAL = 2
SDK_RETRY_BACKOFF = 1
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 30


class AzureDestination:
    """An Azure Blob container and key prefix."""

    def __init__(self, url: str, options: DestinationOptions | None = None) -> None:
        self.options = options or DestinationOptions()
        scheme, self.container_name, self.prefix = split_url(url)
        if scheme != "az":
            raise ConfigError(f"{url} is not an az:// URL")
        self.url = f"az://{self.container_name}/{self.prefix}"
        self._service: Any = None
        self._lock = threading.Lock()
        self.account_source: str | None = None  # where the account URL came from
        self._connection_string: str | None = None  # the one the service client was made with
        self._token_credential: Any = None  # the DefaultAzureCredential it was made with
        self._lean: AzureLeanPut | None = None
        #: False sends every PUT through the SDK (as before the lean path): `SM_AZURE_LEAN_PUT=0`
        self.lean_enabled = os.environ.get(LEAN_PUT_ENV, "").strip().lower() not in (
            "0", "off", "false", "no")
        # The URL the SDK really sends to, whether from --account-url or a connection string
        # (whose DefaultEndpointsProtocol=http or BlobEndpoint=http://… obey the same rule).
        # A SAS connection string puts its token in the URL's query: never shown or checked.
        self.account_url = self._make_service().url.split("?", 1)[0].rstrip("/")
        check_endpoint(self.account_url, self.options.allow_insecure_endpoint,
                       source=self.account_source)

    # ----------------------------------------------------------------------- client

    @property
    def container(self) -> Any:
        """The container client (the service client is built on first use)."""
        return self._make_service().get_container_client(self.container_name)

    def refresh_credentials(self) -> None:
        """Drop the clients so the next call resolves credentials afresh (before a probe)."""
        self.close()

    def _make_service(self) -> Any:
        with self._lock:  # upload workers share one client
            if self._service is None:
                self._service = self._new_service()
            return self._service

    def _new_service(self) -> Any:
        # One pooled connection per upload worker (requests keeps 10 by default); retries are
        # the SDK's policy's job, not urllib3's.
        session = requests.Session()
        adapter = HTTPAdapter(pool_maxsize=max(10, self.options.max_connections),
                              max_retries=Retry(total=False, redirect=False,
                                                raise_on_status=False))
        for scheme in ("https://", "http://"):
            session.mount(scheme, adapter)
        settings: dict[str, Any] = {
            "retry_policy": ExponentialRetry(initial_backoff=SDK_RETRY_BACKOFF, increment_base=2,
                                             retry_total=SDK_RETRY_TOTAL, random_jitter_range=1),
            "transport": RequestsTransport(session=session, session_owner=True,
                                           connection_timeout=CONNECT_TIMEOUT,
                                           read_timeout=READ_TIMEOUT),
        }
        # A SAS token or user:password in --account-url would be saved to config.toml: refused.
        refuse_credentials(self.options.account_url, "account URL")
        account_url = (self.options.account_url or "").rstrip("/") or None
        connection_string = os.environ.get(CONNECTION_STRING_ENV, "").strip()
        service = None
        if connection_string:
            try:
                service = BlobServiceClient.from_connection_string(connection_string, **settings)
            except ValueError as exc:
                raise ConfigError(f"{CONNECTION_STRING_ENV} is not a valid connection string"
                                  f" ({exc})") from None
            if account_url and service.url.split("?", 1)[0].rstrip("/") != account_url:
                service = None  # it names another account: --account-url decides
            else:
                self.account_source = CONNECTION_STRING_ENV
                self._connection_string = connection_string
                self._token_credential = None
        if service is None:
            if not account_url:
                raise ConfigError(
                    f"{self.url} needs an account: --account-url or {CONNECTION_STRING_ENV}",
                    hint=f"sm connect {self.url} --account-url"
                    " https://ACCOUNT.blob.core.windows.net --project ID")
            # azure-identity (and msal) load only when no connection string spares them
            from azure.identity import DefaultAzureCredential

            check_endpoint(account_url, self.options.allow_insecure_endpoint)
            self.account_source = None
            self._connection_string = None
            self._token_credential = DefaultAzureCredential()
            service = BlobServiceClient(account_url, credential=self._token_credential,
                                        **settings)
        return service

    @property
    def lean_put(self) -> AzureLeanPut | None:
        """The lean upload path, once a PUT has built it (None after `close`)."""
        return self._lean

    def _lean_path(self) -> AzureLeanPut | None:
        """The lean upload path, built with the service client (its account URL, API
        version and connection string) on first use."""
        if self._lean is None and self.lean_enabled:
            service = self._make_service()
            with self._lock:
                if self._lean is None:
                    credential = (connection_credential(self._connection_string)
                                  if self._connection_string else None)
                    if self._token_credential is not None:
                        credential = AccountCredential(
                            "", token_credential=self._token_credential)
                    self._lean = AzureLeanPut(
                        str(service.url), self.container_name, credential,
                        api_version=str(service.api_version),
                        max_connections=self.options.max_connections,
                        timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), content_type=CONTENT_TYPE)
        return self._lean

    # ----------------------------------------------------------------------- objects

    def put(self, key: str, body: bytes, payload_sha256: str) -> PutResult:
        """Create-only upload; an existing blob with the same payload hash is success.

        The lean path sends it first; whatever it does not take (see `azure_put`) is sent
        again here through the SDK, which retries and classifies as it always did."""
        try:
            lean = self._lean_path()
        except SmError:
            raise
        except Exception as exc:  # building the SDK client failed
            raise self._wrap(exc, f"upload of {key}") from exc
        return put_lean_first(
            lean, key, body, {AZURE_META_KEY: payload_sha256},
            existing=lambda: self._existing(key, body, payload_sha256),
            sdk=lambda: self._sdk_put(key, body, payload_sha256))

    def _sdk_put(self, key: str, body: bytes, payload_sha256: str) -> PutResult:
        """The upload through azure-storage-blob."""
        md5 = hashlib.md5(body).digest()
        try:
            response = self.container.get_blob_client(key).upload_blob(
                body, length=len(body), overwrite=False,
                metadata={AZURE_META_KEY: payload_sha256},
                content_settings=ContentSettings(content_type=CONTENT_TYPE,
                                                 content_md5=bytearray(md5)),
                validate_content=True,  # Content-MD5 on the request: the service checks it
            )
        except ResourceExistsError as exc:
            if error_facts(exc).code == "BlobAlreadyExists":
                return self._existing(key, body, payload_sha256)
            raise self._wrap(exc, f"upload of {key}") from exc
        except SmError:  # a ConfigError from building the client stays as it is
            raise
        except Exception as exc:  # HTTP, connection, credentials: all classified, none dropped
            raise self._wrap(exc, f"upload of {key}") from exc
        return PutResult(key=key, created=True, version_id=response.get("version_id"))

    def _existing(self, key: str, body: bytes, payload_sha256: str) -> PutResult:
        # Azure's Content-MD5 is whatever the writer (or Set Blob Properties) said, so it
        # proves nothing here: existing_object downloads the blob and compares the bytes.
        return existing_object(self, key, body, payload_sha256,
                               f"az://{self.container_name}/{key}")

    def get(self, key: str) -> FetchedObject:
        """Download a blob; the bytes are checked against the Content-MD5 Azure stored."""
        try:
            downloader = self.container.get_blob_client(key).download_blob(
                validate_content=True)
            body = downloader.readall()
        except ResourceNotFoundError as exc:
            if error_facts(exc).code == "BlobNotFound":
                raise ObjectNotFound(f"az://{self.container_name}/{key} does not exist") from None
            raise self._wrap(exc, f"download of {key}") from exc
        except SmError:
            raise
        except Exception as exc:
            if "MD5 mismatch" in str(exc):  # the SDK's check of the stored or ranged MD5
                raise IntegrityError(f"az://{self.container_name}/{key} does not match its"
                                     " stored Content-MD5") from exc
            raise self._wrap(exc, f"download of {key}") from exc
        info = _info(key, downloader.properties)
        stored_md5 = downloader.properties.content_settings.content_md5
        if stored_md5 and bytes(stored_md5) != hashlib.md5(body).digest():
            raise IntegrityError(f"az://{self.container_name}/{key} does not match its stored"
                                 " Content-MD5")
        return FetchedObject(info, body)

    def head(self, key: str) -> ObjectInfo | None:
        """Metadata of a blob, or None when it does not exist (a missing container raises)."""
        try:
            properties = self.container.get_blob_client(key).get_blob_properties()
        except ResourceNotFoundError as exc:
            if error_facts(exc).code == "BlobNotFound":
                return None
            raise self._wrap(exc, f"read of {key}") from exc
        except SmError:
            raise
        except Exception as exc:
            raise self._wrap(exc, f"read of {key}") from exc
        return _info(key, properties)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every blob under `prefix`, in key order, with its `sm` metadata."""
        try:
            for item in self.container.list_blobs(name_starts_with=prefix or None,
                                                  include=["metadata"]):
                yield _info(item.name, item)
        except SmError:
            raise
        except Exception as exc:
            raise self._wrap(exc, f"listing of {prefix or '/'}") from exc

    def delete(self, key: str) -> None:
        """Delete a blob (the connect test object); a missing one is fine."""
        try:
            self.container.get_blob_client(key).delete_blob()
        except ResourceNotFoundError as exc:
            if error_facts(exc).code != "BlobNotFound":
                raise self._wrap(exc, f"delete of {key}") from exc
        except SmError:
            raise
        except Exception as exc:
            raise self._wrap(exc, f"delete of {key}") from exc

    # ----------------------------------------------------------------------- holds

    def hold_support(self) -> str | None:
        """None when the container has version-level immutability support (blob legal holds
        need it); else why not."""
        try:
            properties = self.container.get_container_properties()
        except SmError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "read of the container's properties") from exc
        if not getattr(properties, "immutable_storage_with_versioning_enabled", False):
            return (f"az://{self.container_name} has no version-level immutability support,"
                    " which Azure blob legal holds need (enable it on the container)")
        return None

    def _blob(self, key: str, version_id: str | None) -> Any:
        return self.container.get_blob_client(key, version_id=version_id or None)

    @contextmanager
    def _version_call(self, key: str, action: str) -> Iterator[None]:
        """A call on one blob version: a missing blob is ObjectNotFound, any other SDK error
        is wrapped for `action` (an SmError stays as it is)."""
        try:
            yield
        except ResourceNotFoundError as exc:
            if error_facts(exc).code == "BlobNotFound":
                raise ObjectNotFound(f"az://{self.container_name}/{key} does not exist") from None
            raise self._wrap(exc, action) from exc
        except SmError:
            raise
        except Exception as exc:
            raise self._wrap(exc, action) from exc

    def _properties(self, key: str, version_id: str | None) -> Any:
        with self._version_call(key, f"read of {key}"):
            return self._blob(key, version_id).get_blob_properties()

    def set_legal_hold(self, key: str, version_id: str | None, on: bool, case_id: str) -> None:
        """The blob version's legal hold (a flag: the spool's ledger names the cases)."""
        with self._version_call(key, f"legal hold of {key}"):
            self._blob(key, version_id).set_legal_hold(on)

    def legal_hold(self, key: str, version_id: str | None) -> bool:
        """True when the blob version has a legal hold."""
        return bool(getattr(self._properties(key, version_id), "has_legal_hold", False))

    def retention_support(self) -> str | None:
        """A version immutability policy needs version-level immutability, as holds do."""
        return self.hold_support()

    def retention_until(self, key: str, version_id: str | None) -> float | None:
        """The blob version's immutability policy expiry, or None."""
        policy = getattr(self._properties(key, version_id), "immutability_policy", None)
        return timestamp_of(getattr(policy, "expiry_time", None))

    def extend_retention(self, key: str, version_id: str | None, until: float) -> None:
        """The blob version's immutability policy, in its own mode (else Unlocked), to
        `until`."""
        policy = getattr(self._properties(key, version_id), "immutability_policy", None)
        mode = getattr(policy, "policy_mode", None) or "Unlocked"
        with self._version_call(key, f"retention of {key}"):
            self._blob(key, version_id).set_immutability_policy(ImmutabilityPolicy(
                expiry_time=datetime.fromtimestamp(until, UTC), policy_mode=mode))

    # ----------------------------------------------------------------------- checks

    def checks(self) -> builtins.list[Check]:
        """Reachability, then public access, encryption at rest, soft delete, immutability
        and the transport, as `sm verify` lines."""
        reachable = self.reachable_check()
        if reachable.status == CheckStatus.FAIL:
            return [reachable]
        try:
            properties = self.container.get_container_properties()
        except Exception as exc:
            return [reachable, Check(
                "settings", CheckStatus.WARN, f"cannot read the properties of container"
                f" {self.container_name} ({describe(exc)})",
                hint="grant Storage Blob Data Contributor on the container (or the account)"),
                endpoint_check(self.account_url)]
        try:
            service = self._make_service().get_service_properties()
            retention = service.get("delete_retention_policy")
            enabled = bool(retention and retention.enabled)
            soft_delete_days: int | None = (retention.days or 0) if enabled else 0
        except Exception:
            soft_delete_days = None  # reading account settings needs more than data access
        account = self._make_service().account_name or "ACCOUNT"
        settings = container_checks(properties, soft_delete_days, self.options.retention_days,
                                    account=account)
        return [reachable, *settings, endpoint_check(self.account_url)]

    def reachable_check(self) -> Check:
        """Can the container be listed under `{prefix}_sm/`?"""
        try:
            pages = self.container.list_blobs(
                name_starts_with=f"{self.prefix}{TEST_OBJECT_FOLDER}", results_per_page=1)
            next(iter(pages.by_page()), None)
        except Exception as exc:
            error = self._wrap(exc, "listing")
            return Check("reachable", CheckStatus.FAIL,
                         f"cannot list container {self.container_name}:"
                         f" {describe(exc)}", hint=error.hint)
        return Check("reachable", CheckStatus.PASS, f"container {self.container_name} at"
                     f" {self.account_url} answers")

    def close(self) -> None:
        """Close the HTTP pipeline and the lean path's pool (the connection string is read
        again on next use)."""
        with self._lock:
            if self._service is not None:
                self._service.close()
                self._service = None
            lean, self._lean = self._lean, None
        if lean is not None:
            lean.close()

    def _wrap(self, exc: Exception, action: str) -> DestinationError:
        hint = None
        if type(exc).__name__ in ("ClientAuthenticationError", "CredentialUnavailableError"):
            hint = ("az login, a managed identity, or AZURE_CLIENT_ID/AZURE_TENANT_ID/"
                    "AZURE_CLIENT_SECRET; the identity needs Storage Blob Data Contributor")
        return DestinationError(
            f"{action} in az://{self.container_name} failed: {describe(exc)}",
            retry_class=classify(exc), hint=hint)


def container_checks(properties: Any, soft_delete_days: int | None,
                     retention_days: int | None, *, account: str = "ACCOUNT") -> list[Check]:
    """`sm verify` lines from a container's properties (azure.storage.blob.ContainerProperties)
    and the account's blob soft-delete days (None when unreadable)."""
    name = properties.name or "CONTAINER"
    on = f"--account-name {account}"
    access = properties.public_access
    if access:
        public = Check("public_access", CheckStatus.FAIL,
                       f"the container allows anonymous {access}-level"
                       " read access; the container holds personal data",
                       hint=f"az storage container set-permission --name {name} --public-access"
                       f" off {on}")
    else:
        public = Check("public_access", CheckStatus.PASS, "the container is private")
    scope = getattr(getattr(properties, "encryption_scope", None), "default_encryption_scope",
                    None)
    if scope and not scope.startswith("$account"):
        encryption = Check("encryption", CheckStatus.PASS, f"default encryption scope {scope}")
    else:
        encryption = Check("encryption", CheckStatus.PASS,
                           "Azure Storage encryption at rest (always on)")
    enable = (f"az storage account blob-service-properties update --enable-delete-retention"
              f" true --delete-retention-days 14 {on}")
    if soft_delete_days is None:
        soft_delete = Check("soft_delete", CheckStatus.WARN,
                            "cannot read the account's blob soft-delete"
                            " setting (needs account-level read access)")
    elif soft_delete_days:
        soft_delete = Check("soft_delete", CheckStatus.PASS,
                            f"blob soft delete keeps deleted blobs for {soft_delete_days} days")
    else:
        soft_delete = Check("soft_delete", CheckStatus.WARN,
                            "blob soft delete is off for the account: a"
                            " deleted blob cannot be recovered", hint=enable)
    return [public, encryption, soft_delete,
            immutability_check(properties, retention_days, account=account)]


def immutability_check(properties: Any, retention_days: int | None, *,
                       account: str = "ACCOUNT") -> Check:
    """The container's immutability (WORM) settings against the retention configured."""
    policy = bool(getattr(properties, "has_immutability_policy", False))
    legal_hold = bool(getattr(properties, "has_legal_hold", False))
    versioned = bool(getattr(properties, "immutable_storage_with_versioning_enabled", False))
    found = [text for present, text in ((policy, "a time-based immutability policy"),
                                        (legal_hold, "a legal hold"),
                                        (versioned, "version-level immutability support"))
             if present]
    create = (f"az storage container immutability-policy create -g RESOURCE_GROUP"
              f" --container-name"
              f" {properties.name or 'CONTAINER'} --period {retention_days or 30}"
              f" --account-name {account}")
    if not found:
        if retention_days:
            return Check("immutability", CheckStatus.FAIL, f"retention of {retention_days} days is"
                         " configured but the container has no immutability policy",
                         hint=create)
        return Check("immutability", CheckStatus.WARN,
                     "no immutability policy: archived blobs can be"
                     " deleted by anyone allowed to delete blobs", hint=create)
    detail = "the container has " + " and ".join(found)
    if retention_days and policy:
        detail += f" (its period must be at least {retention_days} days)"
    return Check("immutability", CheckStatus.PASS, detail)


def _info(key: str, properties: Any) -> ObjectInfo:
    raw = properties.metadata or {}
    metadata = {(PAYLOAD_SHA_METADATA if k.lower() == AZURE_META_KEY else k.lower()): v
                for k, v in raw.items()}
    policy = getattr(properties, "immutability_policy", None)
    return ObjectInfo(key=key, size=properties.size,
                      payload_sha256=metadata.get(PAYLOAD_SHA_METADATA),
                      version_id=getattr(properties, "version_id", None), metadata=metadata,
                      retain_until=timestamp_of(getattr(policy, "expiry_time", None)))
