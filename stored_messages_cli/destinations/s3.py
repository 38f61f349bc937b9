"""`s3://BUCKET/PREFIX`: AWS S3 and S3-compatible stores, through boto3.

Writes are create-only (`IfNoneMatch: *`) and carry `ChecksumSHA256` of the object bytes
and `sm-payload-sha256` metadata. boto3 is imported only when an S3 destination is opened.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import ConfigError, DestinationError, ObjectConflict, ObjectNotFound
from ..retry import classify, describe
from .base import (
    PAYLOAD_SHA_METADATA,
    Check,
    DestinationOptions,
    FetchedObject,
    ObjectInfo,
    PutResult,
    check_endpoint,
    endpoint_check,
    split_url,
)

_META_KEY = PAYLOAD_SHA_METADATA  # boto3 exposes user metadata without the x-amz-meta- prefix
_EXISTS_CODES = frozenset({"PreconditionFailed", "412"})
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def _error_code(exc: Any) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Destination:
    """An S3 bucket and key prefix."""

    def __init__(self, url: str, options: DestinationOptions | None = None) -> None:
        self.options = options or DestinationOptions()
        scheme, self.bucket, self.prefix = split_url(url)
        if scheme != "s3":
            raise ConfigError(f"{url} is not an s3:// URL")
        check_endpoint(self.options.endpoint_url, self.options.allow_insecure_endpoint)
        self.url = f"s3://{self.bucket}/{self.prefix}"
        self._client: Any = None

    # ----------------------------------------------------------------------- client

    @property
    def client(self) -> Any:
        """The boto3 S3 client, built on first use."""
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def refresh_credentials(self) -> None:
        """Drop the client so the next call resolves credentials afresh (before a probe)."""
        self._client = None

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        opts = self.options
        session = boto3.session.Session(profile_name=opts.profile, region_name=opts.region)
        config = Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=max(10, opts.max_connections),
            s3={"addressing_style": "path"} if opts.endpoint_url else None,
        )
        return session.client("s3", endpoint_url=opts.endpoint_url, config=config)

    def _owner(self) -> dict[str, str]:
        owner = self.options.expected_owner
        return {"ExpectedBucketOwner": owner} if owner else {}

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
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*",
                ChecksumSHA256=checksum, ContentType="application/gzip",
                Metadata={_META_KEY: payload_sha256}, **self._owner(), **extra,
            )
        except ClientError as exc:
            if _error_code(exc) in _EXISTS_CODES:
                return self._existing(key, payload_sha256)
            raise self._wrap(exc, f"upload of {key}") from exc
        except Exception as exc:  # connection, timeout, TLS: all classified, none dropped
            raise self._wrap(exc, f"upload of {key}") from exc
        return PutResult(key=key, created=True, version_id=response.get("VersionId"))

    def _existing(self, key: str, payload_sha256: str) -> PutResult:
        info = self.head(key)
        if info is not None and info.payload_sha256 == payload_sha256:
            return PutResult(key=key, created=False, version_id=info.version_id)
        raise ObjectConflict(f"s3://{self.bucket}/{key} already exists with other content")

    def get(self, key: str) -> FetchedObject:
        """Download an object; S3 checks `ChecksumSHA256` on the way (ChecksumMode)."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key,
                                              ChecksumMode="ENABLED", **self._owner())
            body = response["Body"].read()
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise ObjectNotFound(f"s3://{self.bucket}/{key} does not exist") from None
            raise self._wrap(exc, f"download of {key}") from exc
        except Exception as exc:
            raise self._wrap(exc, f"download of {key}") from exc
        return FetchedObject(_info(key, response, len(body)), body)

    def head(self, key: str) -> ObjectInfo | None:
        """Metadata of an object, or None when it does not exist."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.head_object(Bucket=self.bucket, Key=key, **self._owner())
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                return None
            raise self._wrap(exc, f"read of {key}") from exc
        except Exception as exc:
            raise self._wrap(exc, f"read of {key}") from exc
        return _info(key, response, response.get("ContentLength"))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix`, in key order."""
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, **self._owner()):
                for item in page.get("Contents", []):
                    yield ObjectInfo(key=item["Key"], size=item.get("Size"))
        except Exception as exc:
            raise self._wrap(exc, f"listing of {prefix or '/'}") from exc

    def delete(self, key: str) -> None:
        """Delete an object (the connect test object)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key, **self._owner())
        except Exception as exc:
            raise self._wrap(exc, f"delete of {key}") from exc

    def checks(self) -> list[Check]:
        """Bucket safety checks (extended by the verify command's checks)."""
        return [endpoint_check(self.options.endpoint_url)]

    def close(self) -> None:
        """Close the HTTP connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _wrap(self, exc: Exception, action: str) -> DestinationError:
        return DestinationError(f"{action} in s3://{self.bucket} failed: {describe(exc)}",
                                retry_class=classify(exc))


def _info(key: str, response: dict[str, Any], size: int | None) -> ObjectInfo:
    metadata = {k.lower(): v for k, v in (response.get("Metadata") or {}).items()}
    return ObjectInfo(key=key, size=size, payload_sha256=metadata.get(_META_KEY),
                      version_id=response.get("VersionId"), metadata=metadata)
