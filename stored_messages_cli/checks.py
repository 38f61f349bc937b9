"""Destination checks shared by `sm connect` and `sm verify`: a real write, read-back and
cleanup under `{prefix}_sm/`, then the bucket's own safety checks."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from .destinations.base import TEST_OBJECT_FOLDER, Check, Destination
from .errors import DestinationError, SmError
from .model import canonical_json, gzip_body, sha256_hex

FAIL = "fail"
WARN = "warn"
PASS = "pass"


def test_object_key(destination: Destination) -> str:
    """A fresh key for a connection test object."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{destination.prefix}{TEST_OBJECT_FOLDER}connect-test-{stamp}-{secrets.token_hex(4)}.json.gz"


def round_trip(destination: Destination, *, keep: bool = False) -> list[Check]:
    """Write a test object, read it back byte for byte, then delete it (unless `keep`)."""
    key = test_object_key(destination)
    payload = canonical_json({"sm": "connection test", "key": key})
    body = gzip_body(payload)
    try:
        destination.put(key, body, sha256_hex(payload))
    except SmError as exc:
        return [Check("write", FAIL, f"cannot write {key}: {exc}")]
    results = [Check("write", PASS, f"wrote {key}")]
    try:
        fetched = destination.get(key)
    except SmError as exc:
        return [*results, Check("read", FAIL, f"cannot read back {key}: {exc}")]
    if fetched.body != body:
        return [*results, Check("read", FAIL, f"{key} came back with different bytes")]
    results.append(Check("read", PASS, "read back the same bytes"))
    if keep:
        results.append(Check("cleanup", PASS, f"kept {key} (retention forbids deleting it)"))
        return results
    try:
        destination.delete(key)
        results.append(Check("cleanup", PASS, "deleted the test object"))
    except DestinationError as exc:
        results.append(Check("cleanup", WARN, f"could not delete {key}: {exc}"))
    return results


def run_checks(destination: Destination, *, keep_test_object: bool = False) -> list[Check]:
    """The round trip, then the destination's safety checks (when the round trip worked)."""
    results = round_trip(destination, keep=keep_test_object)
    if any(c.status == FAIL for c in results):
        return results
    try:
        results.extend(destination.checks())
    except SmError as exc:
        results.append(Check("settings", WARN, f"cannot read bucket settings: {exc}"))
    return results


def failed(checks: list[Check]) -> bool:
    """True when any check failed."""
    return any(c.status == FAIL for c in checks)
