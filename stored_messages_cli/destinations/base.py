"""The one small interface every destination implements, and what they share."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from ..errors import ConfigError, ObjectConflict

PAYLOAD_SHA_METADATA = "sm-payload-sha256"
TEST_OBJECT_FOLDER = "_sm/"


@dataclass(frozen=True)
class DestinationOptions:
    """How to reach a destination (never a secret: credentials come from SDK chains)."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    expected_owner: str | None = None
    retention_days: int | None = None
    retention_mode: str | None = None
    account_url: str | None = None
    allow_insecure_endpoint: bool = False
    max_connections: int = 10


@dataclass(frozen=True)
class PutResult:
    """A create-only write's result: `created` is False when the same bytes were there."""

    key: str
    created: bool
    version_id: str | None = None


@dataclass(frozen=True)
class ObjectInfo:
    """An object's key, size and `sm` metadata, as listed or read."""

    key: str
    size: int | None = None
    payload_sha256: str | None = None
    version_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FetchedObject:
    """An object's bytes and what the store says about them."""

    info: ObjectInfo
    body: bytes


@dataclass(frozen=True)
class Check:
    """One line of `sm verify`: name, pass/warn/fail, detail."""

    name: str
    status: str  # pass | warn | fail
    detail: str
    hint: str | None = None  # the next step for a user, shown after a failure


class Destination(Protocol):
    """A bucket (or folder) with a key prefix. All keys passed in are full keys."""

    url: str
    prefix: str

    def put(self, key: str, body: bytes, payload_sha256: str) -> PutResult:
        """Create `key` with `body` unless it exists.

        An existing object with the same `sm-payload-sha256` is success (`created=False`); one
        with another raises ObjectConflict. Other failures raise DestinationError classified by
        `stored_messages_cli.retry.classify`.
        """
        ...

    def get(self, key: str) -> FetchedObject:
        """Read an object and its metadata; raises ObjectNotFound."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """An object's metadata, or None when there is none."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix` (a full key prefix)."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object (only the connect test object is ever deleted)."""
        ...

    def checks(self) -> list[Check]:
        """The bucket's safety checks for `sm verify` (public access, encryption, lock…)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def split_url(url: str) -> tuple[str, str, str]:
    """`scheme://bucket/prefix` -> (scheme, bucket, prefix with a trailing `/` or empty)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return scheme, "", parts.path
    if not parts.netloc:
        raise ConfigError(f"{url} has no bucket name",
                          hint=f"sm connect {scheme or 's3'}://BUCKET/PREFIX --project ID")
    prefix = parts.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return scheme, parts.netloc, prefix


def check_endpoint(endpoint_url: str | None, allow_insecure: bool) -> None:
    """Refuse plain http unless allowed, and allow it only for loopback hosts (SPEC 7)."""
    if not endpoint_url:
        return
    parts = urlsplit(endpoint_url)
    if parts.scheme == "https":
        return
    if parts.scheme != "http":
        raise ConfigError(f"endpoint {endpoint_url} must be an https:// URL")
    if not allow_insecure:
        raise ConfigError(
            f"endpoint {endpoint_url} is plain http; archives must travel over TLS",
            hint="use an https:// endpoint (or --allow-insecure-endpoint for a loopback test"
            " server)")
    if not is_loopback(parts.hostname or ""):
        raise ConfigError(
            f"--allow-insecure-endpoint is only accepted for loopback hosts, not {parts.hostname}",
            hint="use an https:// endpoint")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def endpoint_check(endpoint_url: str | None) -> Check:
    """The `sm verify` line for the transport: pass on TLS, warn on allowed loopback http."""
    if endpoint_url and endpoint_url.startswith("http://"):
        return Check("tls", "warn", f"plain http to loopback endpoint {endpoint_url}"
                     " (allowed by --allow-insecure-endpoint; for tests only)")
    return Check("tls", "pass", f"HTTPS to {endpoint_url or 'the default endpoint'}")


def existing_object(destination: Destination, key: str, payload_sha256: str, where: str
                    ) -> PutResult:
    """A create-only write found `key` taken: the same payload hash counts as stored.

    Another hash raises ObjectConflict naming `where` (the object's full address).
    """
    info = destination.head(key)
    if info is not None and info.payload_sha256 == payload_sha256:
        return PutResult(key=key, created=False, version_id=info.version_id)
    raise ObjectConflict(f"{where} already exists with other content")
