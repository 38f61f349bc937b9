"""The one small interface every destination implements, and what they share."""

from __future__ import annotations

import base64
import builtins
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..config.keys import SavedDestinationOptions
from ..errors import ConfigError, DestinationError, IntegrityError, ObjectConflict, ObjectNotFound
from ..network import is_loopback
from ..states import CheckStatus

PAYLOAD_SHA_METADATA = "sm-payload-sha256"
TEST_OBJECT_FOLDER = "_sm/"


@dataclass(frozen=True)
class DestinationOptions(SavedDestinationOptions):
    """How to reach a destination (never a secret: credentials come from SDK chains).

    The options `sm connect` saves are declared once, in `SavedDestinationOptions`
    (config.toml's project keys derive from it); what a run chooses is added here.
    """

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
    # Checksums of the object's bytes that the store itself computed and a writer cannot set
    # (S3 `sha256` of a single-part upload, GCS `md5`), base64 of the digest. A checksum a
    # writer can choose (Azure's Content-MD5, any metadata) never goes here.
    checksums: dict[str, str] = field(default_factory=dict)
    # When the store's retention (S3 object lock, a GCS retention policy or object retention,
    # an Azure blob immutability policy) lets the object be deleted or replaced, as a POSIX
    # timestamp; None when the store says nothing (a folder never does).
    retain_until: float | None = None


@dataclass(frozen=True)
class FetchedObject:
    """An object's bytes and what the store says about them."""

    info: ObjectInfo
    body: bytes


@dataclass(frozen=True)
class Check:
    """One line of `sm verify`: name, pass/warn/fail, detail."""

    name: str
    status: str  # a CheckStatus (pass | warn | fail)
    detail: str
    hint: str | None = None  # the next step for a user, shown after a failure


class Destination(Protocol):
    """A bucket (or folder) with a key prefix. All keys passed in are full keys."""

    url: str
    prefix: str

    def put(self, key: str, body: bytes, payload_sha256: str) -> PutResult:
        """Create `key` with `body` unless it exists.

        An existing object with the same `sm-payload-sha256` *and the same bytes* is success
        (`created=False`); anything else raises ObjectConflict and is left untouched (see
        `existing_object`). Other failures raise DestinationError classified by
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

    def checks(self) -> builtins.list[Check]:
        """The bucket's safety checks for `sm verify` (public access, encryption, lock…)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    # Legal holds and retention (SPEC 9.4): `hold_support` is None where holds work.

    def hold_support(self) -> str | None:
        """None when the store can hold objects; else why it cannot (one line)."""
        ...

    def set_legal_hold(self, key: str, version_id: str | None, on: bool, case_id: str) -> None:
        """Place (`on`) or lift the store's own legal hold on an object's version."""
        ...

    def legal_hold(self, key: str, version_id: str | None) -> bool:
        """True when the store holds the object's version; raises ObjectNotFound."""
        ...

    def retention_support(self) -> str | None:
        """None when the store can retain objects until a date; else why it cannot."""
        ...

    def retention_until(self, key: str, version_id: str | None) -> float | None:
        """The object version's retain-until date (POSIX), or None when it has none."""
        ...

    def extend_retention(self, key: str, version_id: str | None, until: float) -> None:
        """Retain the object's version until `until` (callers never shorten it)."""
        ...


def split_url(url: str) -> tuple[str, str, str]:
    """`scheme://bucket/prefix` -> (scheme, bucket, prefix with a trailing `/` or empty)."""
    refuse_credentials(url, "destination URL")
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


def redact_url(url: str) -> str:
    """`url` without what may be secret: user info, query and fragment (for messages)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else "(unparsable URL)"


def refuse_credentials(url: str | None, what: str) -> None:
    """Refuse a URL that carries a credential (`user:secret@host`, a SAS `sig=` query).

    The message names the URL without the secret, so it can be printed and logged; and since
    the refusal comes before anything is saved, the secret never reaches config.toml.
    """
    if not url:
        return
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ConfigError(
            f"the {what} {redact_url(url)} has credentials in it (user:password@host);"
            " sm never takes a secret in a URL",
            hint="remove them from the URL and give them through the SDK's credential chain"
            " (AWS profile or AWS_* variables, gcloud ADC, az login or"
            " AZURE_STORAGE_CONNECTION_STRING)")
    query = parts.query.lower()
    if any(f"{name}=" in query for name in ("sig", "signature", "x-amz-signature",
                                             "x-goog-signature", "token", "password",
                                             "secret", "key")):
        raise ConfigError(
            f"the {what} {redact_url(url)} carries a signature or key in its query string;"
            " sm never takes a secret in a URL",
            hint="drop the query string; give the credential through the SDK's credential"
            " chain (a SAS token can go in AZURE_STORAGE_CONNECTION_STRING)")


def check_endpoint(endpoint_url: str | None, allow_insecure: bool, *,
                   source: str | None = None) -> None:
    """Refuse plain http unless allowed, and allow it only for loopback hosts (SPEC 7).

    `source` says where an endpoint came from when it was not --endpoint-url (for example
    `AWS_ENDPOINT_URL_S3`), so the message blames what the operator has to change. A URL
    with credentials in it is refused without repeating them.
    """
    if not endpoint_url:
        return
    refuse_credentials(endpoint_url, "endpoint")
    parts = urlsplit(endpoint_url)
    shown = redact_url(endpoint_url)
    where = f" (from {source})" if source else ""
    if parts.scheme == "https":
        return
    if parts.scheme != "http":
        raise ConfigError(f"endpoint {shown}{where} must be an https:// URL")
    if not allow_insecure:
        raise ConfigError(
            f"endpoint {shown}{where} is plain http; archives must travel over TLS",
            hint=(f"use an https:// endpoint in {source}, or unset it" if source else
                  "use an https:// endpoint") + (
                " (or --allow-insecure-endpoint for a loopback test server)"
                if is_loopback(parts.hostname or "") or not source else ""))
    if not is_loopback(parts.hostname or ""):
        raise ConfigError(
            f"--allow-insecure-endpoint is only accepted for loopback hosts, not"
            f" {parts.hostname}{where}",
            hint=f"use an https:// endpoint{f' in {source}' if source else ''}")


def endpoint_check(endpoint_url: str | None) -> Check:
    """The `sm verify` line for the transport, naming the endpoint the SDK really uses:
    pass on TLS, warn on allowed loopback http."""
    shown = redact_url(endpoint_url) if endpoint_url else "the default endpoint"
    if endpoint_url and endpoint_url.lower().startswith("http://"):
        return Check("tls", CheckStatus.WARN, f"plain http to loopback endpoint {shown}"
                     " (allowed by --allow-insecure-endpoint; for tests only)")
    return Check("tls", CheckStatus.PASS, f"HTTPS to {shown}")


def timestamp_of(moment: Any) -> float | None:
    """A datetime an SDK returned (naive means UTC) as a POSIX timestamp; None stays None."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return float(moment.timestamp())


def body_checksums(body: bytes) -> dict[str, str]:
    """The checksums `ObjectInfo.checksums` may hold, computed over `body`."""
    return {"sha256": base64.b64encode(hashlib.sha256(body).digest()).decode("ascii"),
            "md5": base64.b64encode(hashlib.md5(body).digest()).decode("ascii")}


def existing_object(destination: Destination, key: str, body: bytes, payload_sha256: str,
                    where: str) -> PutResult:
    """A create-only write found `key` taken: it counts as stored only if its bytes are ours.

    Metadata can be forged, so `sm-payload-sha256` alone proves nothing: the existing object
    must also have the same size and the same bytes, proven by a checksum the store computed
    itself (`ObjectInfo.checksums`) or, when the store offers none we can trust, by
    downloading it and comparing. Anything else raises ObjectConflict naming `where` (the
    object's full address); the object is left as it is.
    """
    info = destination.head(key)
    if info is None:  # gone between the refused write and this read: try again later
        raise DestinationError(f"{where} was taken, then vanished; the write will be retried")
    if info.payload_sha256 != payload_sha256:
        raise ObjectConflict(f"{where} already exists with other content")
    if info.size is not None and info.size != len(body):
        raise ObjectConflict(f"{where} already exists with other content (same"
                             f" {PAYLOAD_SHA_METADATA} metadata, other bytes)")
    ours = body_checksums(body)
    trusted = {name: value for name, value in info.checksums.items() if name in ours}
    if trusted:
        if all(ours[name] == value for name, value in trusted.items()):
            return PutResult(key=key, created=False, version_id=info.version_id)
    else:
        try:
            fetched = destination.get(key)
        except ObjectNotFound:
            raise DestinationError(f"{where} was taken, then vanished; the write will be"
                                   " retried") from None
        except IntegrityError:
            fetched = None  # the store's own checksum disowns the bytes: not ours
        if fetched is not None and fetched.body == body:
            return PutResult(key=key, created=False,
                             version_id=fetched.info.version_id or info.version_id)
    raise ObjectConflict(f"{where} already exists with other content (same"
                         f" {PAYLOAD_SHA_METADATA} metadata, other bytes)")
