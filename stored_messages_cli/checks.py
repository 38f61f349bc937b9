"""Destination checks shared by `sm connect` and `sm verify`: the destination's own checks
(reachable, then its safety settings), and a real write, read-back, create-only proof and
cleanup of a test object under `{prefix}_sm/`."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from .destinations.base import TEST_OBJECT_FOLDER, Check, Destination
from .errors import ObjectConflict, SmError
from .model import canonical_json, gzip_body, sha256_hex

FAIL = "fail"
WARN = "warn"
PASS = "pass"

# A failure of one of these means the destination cannot take the archive: connect saves
# nothing. (Other failures, e.g. public access left open, are reported but not blocking.)
BLOCKING_CHECKS = ("object_lock", "reachable", "write", "read", "create_only")


def test_object_key(destination: Destination) -> str:
    """A fresh key for a connection test object."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return (f"{destination.prefix}{TEST_OBJECT_FOLDER}connect-test-{stamp}-"
            f"{secrets.token_hex(4)}.json.gz")


def round_trip(destination: Destination, *, keep: bool = False) -> list[Check]:
    """Write a test object, read it back byte for byte, then delete it (unless `keep`)."""
    key = test_object_key(destination)
    payload = canonical_json({"sm": "connection test", "key": key})
    body = gzip_body(payload)
    try:
        destination.put(key, body, sha256_hex(payload))
    except SmError as exc:
        return [Check("write", FAIL, f"cannot write the test object: {exc}", hint=exc.hint)]
    results = [Check("write", PASS, f"wrote {key}")]
    try:
        fetched = destination.get(key)
    except SmError as exc:
        return [*results, Check("read", FAIL, f"cannot read the test object back: {exc}",
                                 hint=exc.hint)]
    if fetched.body != body:
        return [*results, Check("read", FAIL, f"{key} came back with different bytes")]
    results.append(Check("read", PASS, "read back the same bytes"))
    results.append(create_only_check(destination, key, body))
    if keep:
        results.append(Check("cleanup", PASS, f"kept {key} (object lock forbids deleting it)"))
        return results
    try:
        destination.delete(key)
        results.append(Check("cleanup", PASS, "deleted the test object"))
    except SmError as exc:
        results.append(Check("cleanup", WARN, f"could not delete {key}: {exc}", hint=exc.hint))
    return results


def create_only_check(destination: Destination, key: str, body: bytes) -> Check:
    """Prove the store honours create-only writes: a second conditional write of other bytes
    to the test key must be refused, and the first bytes must still be there.

    A store that silently overwrites (an S3-compatible server that ignores `If-None-Match`,
    a proxy that drops it) would let a second writer replace an archived message.
    """
    other = canonical_json({"sm": "create-only probe: this write must be refused", "key": key})
    refused = False
    try:
        destination.put(key, gzip_body(other), sha256_hex(other))
    except ObjectConflict:
        refused = True
    except SmError as exc:
        return Check("create_only", FAIL, f"cannot prove that the store refuses to overwrite:"
                     f" the second conditional write failed ({exc})", hint=exc.hint)
    try:
        still = destination.get(key).body == body
    except SmError as exc:
        return Check("create_only", FAIL, f"cannot read the test object after the second"
                     f" conditional write: {exc}", hint=exc.hint)
    if refused and still:
        return Check("create_only", PASS, "a second create-only write to the test key was"
                     " refused")
    return Check("create_only", FAIL, "the store accepted a second create-only write to"
                 f" {key} and overwrote it: it ignores conditional writes (If-None-Match), so"
                 " an archived message could be replaced",
                 hint="use a store (or a proxy in front of it) that honours conditional"
                 " writes; sm never archives to one that does not")


def run_checks(destination: Destination, *, keep_test_object: bool = False) -> list[Check]:
    """Every check, in reading order: reachable, write, read, cleanup, then the settings.

    The destination's own checks run first, so an unreachable destination is not written to
    and a test object is kept (`keep_test_object`, under retention) only when object lock
    is really on; otherwise it is deleted.
    """
    try:
        own = list(destination.checks())
    except SmError as exc:
        own = [Check("settings", WARN, f"cannot read the destination's settings: {exc}",
                     hint=exc.hint)]
    reachable = [c for c in own if c.name == "reachable"]
    settings = [c for c in own if c.name != "reachable"]
    if failed(reachable):
        return reachable
    lock_missing = any(c.name == "object_lock" and c.status == FAIL for c in settings)
    trip = round_trip(destination, keep=keep_test_object and not lock_missing)
    return [*reachable, *trip, *settings]


def failed(checks: list[Check]) -> bool:
    """True when any check failed."""
    return any(c.status == FAIL for c in checks)


def blocking_failure(checks: list[Check]) -> Check | None:
    """The failure that stops `sm connect` from saving (the most telling one), if any."""
    for name in BLOCKING_CHECKS:
        for check in checks:
            if check.name == name and check.status == FAIL:
                return check
    return None


def as_documents(checks: list[Check]) -> list[dict[str, str]]:
    """Checks in the stable `--json` form: name, status, detail."""
    return [{"name": c.name, "status": c.status, "detail": c.detail} for c in checks]
