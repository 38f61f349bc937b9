"""Destination checks shared by `sm connect` and `sm verify`: the destination's own checks
(reachable, then its safety settings), and a real write, read-back, create-only proof and
cleanup of a test object under `{prefix}_sm/`."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..destinations.base import TEST_OBJECT_FOLDER, Check, Destination
from ..errors import ObjectConflict, SmError
from ..message import canonical_json, gzip_body, sha256_hex
from ..states import CheckStatus

if TYPE_CHECKING:
    from ..spool import Spool

# A failure of one of these means the destination cannot take or keep the archive: connect
# saves nothing, and no operator can accept it. Retention that cannot be kept blocks alike on
# every store (S3 object lock, the GCS retention policy, Azure immutability).
BLOCKING_CHECKS = ("object_lock", "retention", "immutability", "reachable", "list", "write",
                   "read", "create_only")


def test_object_key(destination: Destination, kind: str = "connect-test") -> str:
    """A fresh key for a test object under `{prefix}_sm/` (`kind` names who wrote it)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return (f"{destination.prefix}{TEST_OBJECT_FOLDER}{kind}-{stamp}-"
            f"{secrets.token_hex(4)}.json.gz")


def round_trip(destination: Destination, *, keep: bool = False) -> list[Check]:
    """Write a test object, read it back byte for byte, then delete it (unless `keep`)."""
    key = test_object_key(destination)
    payload = canonical_json({"sm": "connection test", "key": key})
    body = gzip_body(payload)
    try:
        destination.put(key, body, sha256_hex(payload))
    except SmError as exc:
        return [Check("write", CheckStatus.FAIL,
                      f"cannot write the test object: {exc}", hint=exc.hint)]
    results = [Check("write", CheckStatus.PASS, f"wrote {key}")]
    try:
        fetched = destination.get(key)
    except SmError as exc:
        return [*results, Check("read", CheckStatus.FAIL,
                                f"cannot read the test object back: {exc}",
                                 hint=exc.hint)]
    if fetched.body != body:
        return [*results, Check("read", CheckStatus.FAIL, f"{key} came back with different bytes")]
    results.append(Check("read", CheckStatus.PASS, "read back the same bytes"))
    results.append(create_only_check(destination, key, body))
    if keep:
        results.append(Check("cleanup", CheckStatus.PASS,
                             f"kept {key} (object lock forbids deleting it)"))
        return results
    try:
        destination.delete(key)
        results.append(Check("cleanup", CheckStatus.PASS, "deleted the test object"))
    except SmError as exc:
        results.append(Check("cleanup", CheckStatus.WARN,
                             f"could not delete {key}: {exc}", hint=exc.hint))
    return results


def create_only_check(destination: Destination, key: str, body: bytes, *,
                      unanswered: CheckStatus = CheckStatus.FAIL) -> Check:
    """Prove the store honours create-only writes: a second conditional write of other bytes
    to the test key must be refused, and the first bytes must still be there.

    A store that silently overwrites (an S3-compatible server that ignores `If-None-Match`,
    a proxy that drops it) would let a second writer replace an archived message. A request
    that fails proves nothing either way: its check has the status `unanswered`.
    """
    other = canonical_json({"sm": "create-only probe: this write must be refused", "key": key})
    refused = False
    try:
        destination.put(key, gzip_body(other), sha256_hex(other))
    except ObjectConflict:
        refused = True
    except SmError as exc:
        return Check("create_only", unanswered,
                     f"cannot prove that the store refuses to overwrite:"
                     f" the second conditional write failed ({exc})", hint=exc.hint)
    try:
        still = destination.get(key).body == body
    except SmError as exc:
        return Check("create_only", unanswered,
                     f"cannot read the test object after the second"
                     f" conditional write: {exc}", hint=exc.hint)
    if refused and still:
        return Check("create_only", CheckStatus.PASS,
                     "a second create-only write to the test key was"
                     " refused")
    return Check("create_only", CheckStatus.FAIL, "the store accepted a second create-only write to"
                 f" {key} and overwrote it: it ignores conditional writes (If-None-Match), so"
                 " an archived message could be replaced",
                 hint="use a store (or a proxy in front of it) that honours conditional"
                 " writes; sm never archives to one that does not")


def prove_create_only(destination: Destination, stored_key: str | None = None) -> Check:
    """Re-prove create-only writes on a connected store (`sm run`: at start, on reload, daily).

    `pass`: a conditional write was refused; `fail`: the store overwrote (it does not honour
    If-None-Match); `warn`: a request failed, so nothing is proven either way.

    With `stored_key` (an object sm stored there) its own bytes are written again under the
    condition: refused proves it, and a store that ignored the condition rewrote identical
    bytes, so nothing is left behind. Otherwise (or when that object cannot be read) a test
    object under `{prefix}_sm/` is written, overwritten under the condition, and deleted.
    """
    if stored_key is not None:
        try:
            fetched = destination.get(stored_key)
        except SmError:
            fetched = None  # gone, or stored before a reconnect: prove it with a test object
        if fetched is not None and fetched.info.payload_sha256 is not None:
            try:
                again = destination.put(stored_key, fetched.body, fetched.info.payload_sha256)
            except SmError as exc:
                return Check("create_only", CheckStatus.WARN, "cannot prove create-only writes:"
                             f" rewriting {stored_key} under the condition failed ({exc})",
                             hint=exc.hint)
            if again.created:
                return Check("create_only", CheckStatus.FAIL, "the store accepted a second"
                             f" create-only write to {stored_key}: it ignores conditional writes"
                             " (If-None-Match), so an archived message could be replaced",
                             hint=_NOT_HONOURED_HINT)
            return Check("create_only", CheckStatus.PASS,
                         f"a second create-only write to {stored_key} was refused")
    return _prove_with_test_object(destination)


_NOT_HONOURED_HINT = ("use a store (or a proxy in front of it) that honours conditional"
                      " writes; sm run sends it nothing until it does")


def _prove_with_test_object(destination: Destination) -> Check:
    """The create-only proof on a fresh test object, deleted afterwards."""
    key = test_object_key(destination, "create-only-proof")
    payload = canonical_json({"sm": "create-only proof", "key": key})
    body = gzip_body(payload)
    try:
        destination.put(key, body, sha256_hex(payload))
    except SmError as exc:
        return Check("create_only", CheckStatus.WARN,
                     f"cannot prove create-only writes: cannot write {key} ({exc})", hint=exc.hint)
    verdict = create_only_check(destination, key, body, unanswered=CheckStatus.WARN)
    if verdict.status == CheckStatus.FAIL:
        verdict = replace(verdict, hint=_NOT_HONOURED_HINT)
    try:
        destination.delete(key)
    except SmError:
        pass  # under object lock it stays, like a connection test object
    return verdict


def _own_checks(destination: Destination) -> tuple[list[Check], list[Check]]:
    """The destination's own checks, split into `reachable` and the settings ones."""
    try:
        own = list(destination.checks())
    except SmError as exc:
        own = [Check("settings", CheckStatus.WARN, f"cannot read the destination's settings: {exc}",
                     hint=exc.hint)]
    return ([c for c in own if c.name == "reachable"],
            [c for c in own if c.name != "reachable"])


def run_checks(destination: Destination, *, keep_test_object: bool = False) -> list[Check]:
    """Every check, in reading order: reachable, write, read, cleanup, then the settings.

    The destination's own checks run first, so an unreachable destination is not written to
    and a test object is kept (`keep_test_object`, under retention) only when object lock
    is really on; otherwise it is deleted.
    """
    reachable, settings = _own_checks(destination)
    if failed(reachable):
        return reachable
    lock_missing = any(c.name == "object_lock" and c.status == CheckStatus.FAIL for c in settings)
    trip = round_trip(destination, keep=keep_test_object and not lock_missing)
    return [*reachable, *trip, *settings]


def read_only_checks(destination: Destination) -> list[Check]:
    """The checks of an investigator's destination: reachable, list, read one stored object
    back, then the settings. Nothing is written: the identity may hold read permissions only."""
    reachable, settings = _own_checks(destination)
    if failed(reachable):
        return reachable
    try:
        first = next(iter(destination.list(destination.prefix)), None)
    except SmError as exc:
        return [*reachable, Check("list", CheckStatus.FAIL, f"cannot list the archive: {exc}",
                                  hint=exc.hint), *settings]
    listed = Check("list", CheckStatus.PASS, f"listed {destination.prefix or 'the archive'}")
    if first is None:
        read = Check("read", CheckStatus.WARN,
                     "nothing is stored yet, so reading is not proven; the first"
                     " sm find --remote or sm fetch will show it")
    else:
        try:
            destination.get(first.key)
            read = Check("read", CheckStatus.PASS, f"read {first.key}")
        except SmError as exc:
            read = Check("read", CheckStatus.FAIL, f"cannot read {first.key}: {exc}", hint=exc.hint)
    return [*reachable, listed, read, *settings]


RECENT_WRITE_WINDOW = 86400.0  # a real write this recent proves writing (`sm verify`)


@dataclass(frozen=True)
class RecentWrite:
    """An object `sm run` stored lately: the evidence of writing that leaves no litter."""

    key: str
    stored_at: float


def recent_write(spool: Spool, project_id: str, *, within: float = RECENT_WRITE_WINDOW
                 ) -> RecentWrite | None:
    """The newest message of `project_id` the daemon stored within `within` seconds."""
    found = spool.index.latest_stored(project_id, spool.clock.now() - within)
    return None if found is None else RecentWrite(*found)


def recent_write_checks(destination: Destination, recent: RecentWrite) -> list[Check]:
    """The checks of `sm verify` without a test object: a real recent write proves writing,
    reading it back proves reading, and a create-only write of *the same bytes* to its key
    must be refused (a store that ignored the condition rewrote identical bytes, no harm).

    In a compliance-locked bucket every test object is kept for the whole retention period,
    and in a versioned one a deleted test object stays as an old version: this leaves none.
    """
    reachable, settings = _own_checks(destination)
    if failed(reachable):
        return reachable
    when = datetime.fromtimestamp(recent.stored_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    results = [*reachable, Check("write", CheckStatus.PASS,
                                 f"sm run stored {recent.key} at {when}; no test"
                                 " object written (sm verify --write-test writes one)")]
    try:
        fetched = destination.get(recent.key)
    except SmError as exc:
        return [*results, Check("read", CheckStatus.FAIL,
                                f"cannot read {recent.key} back: {exc}", hint=exc.hint),
                *settings]
    results.append(Check("read", CheckStatus.PASS, f"read back {recent.key}"))
    if fetched.info.payload_sha256 is None:
        results.append(Check("create_only", CheckStatus.WARN,
                             f"{recent.key} has no payload hash metadata;"
                             " run sm verify --write-test to prove create-only writes"))
        return [*results, *settings]
    try:
        again = destination.put(recent.key, fetched.body, fetched.info.payload_sha256)
    except SmError as exc:
        results.append(Check("create_only", CheckStatus.FAIL,
                             "cannot prove that the store refuses to"
                             f" overwrite: a create-only write of the same bytes failed ({exc})",
                             hint=exc.hint))
        return [*results, *settings]
    if again.created:
        results.append(Check("create_only", CheckStatus.FAIL,
                             f"the store accepted a second create-only"
                             f" write to {recent.key}: it ignores conditional writes"
                             " (If-None-Match), so an archived message could be replaced",
                             hint="use a store (or a proxy in front of it) that honours"
                             " conditional writes"))
    else:
        results.append(Check("create_only", CheckStatus.PASS,
                             f"a second create-only write to {recent.key}"
                             " was refused"))
    return [*results, *settings]


def failed(checks: list[Check]) -> bool:
    """True when any check failed."""
    return any(c.status == CheckStatus.FAIL for c in checks)


def blocking_failure(checks: list[Check], accepted: Iterable[str] = ()) -> Check | None:
    """The failure that stops `sm connect` from saving (the most telling one), if any.

    Every failed check blocks (SPEC 6, 8) except a safety check the operator accepted by
    name (`--accept-failed-check NAME`); a failure of `BLOCKING_CHECKS` always blocks.
    """
    for name in BLOCKING_CHECKS:
        for check in checks:
            if check.name == name and check.status == CheckStatus.FAIL:
                return check
    waived = set(accepted)
    return next((c for c in checks if c.status == CheckStatus.FAIL and c.name not in waived), None)


def can_be_accepted(name: str) -> bool:
    """True for a safety check an operator may knowingly accept when it fails."""
    return name not in BLOCKING_CHECKS


def accept_failures(checks: list[Check], accepted: Iterable[str]) -> list[Check]:
    """`checks` with the failures of accepted checks shown as warnings that say so."""
    waived = {name for name in accepted if can_be_accepted(name)}
    return [replace(c, status=CheckStatus.WARN,
                    detail=f"accepted failure (--accept-failed-check {c.name},"
                    f" recorded in config.toml): {c.detail}")
            if c.status == CheckStatus.FAIL and c.name in waived else c for c in checks]


def as_documents(checks: list[Check]) -> list[dict[str, str]]:
    """Checks in the stable `--json` form: name, status, detail."""
    return [{"name": c.name, "status": c.status, "detail": c.detail} for c in checks]
