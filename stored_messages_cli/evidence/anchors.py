"""The anchors of the signed log: each checkpoint copied and time-stamped outside the bucket
(SPEC 9.1, docs/manifests.md, docs/timestamps.md).

Sealing a segment records one row per anchor its checkpoint is owed (`log_anchors`); `Anchors`
makes them once the checkpoint is written to its destination (so a copy never names a tree the
bucket lacks), after the manifests (`Manifests.tick`, once more at `close`), a few per tick and
within a time budget, so a slow or failed anchor never holds up archiving:

- `timestamp`: the checkpoint's SHA-256 is sent to the authority (`request_timestamp`, a short
  timeout) and the token checked (`check_timestamp`): against `timestamp_ca_file` when set
  (the signer must chain to it); without it a token whose imprint is the checkpoint's hash is
  kept, and a warning says the signer was not checked. The token is kept on its row first,
  then written create-only as `{tree_size:012d}.tsr` (the first configured authority; the
  n-th, counted from 1, `{tree_size:012d}.{n}.tsr`) beside the checkpoint at the project's
  destination and at every copy location. A failed write is retried with the kept token.
- `copy`: the checkpoint's exact text is written create-only as `{tree_size:012d}.txt` under
  the copy location's `_sm/checkpoints/{project_id}/`, with the tokens obtained so far.

The same bytes already there are success. Other bytes there are never overwritten: that is a
fork of the log or a second sealer, logged as an error and kept as the row's last error (so
`sm status` shows it) while the row is retried. A failure is retried 1, 2, 4, … minutes later,
at most `ANCHOR_RETRY_CAP` apart (a rate limit on the policy's short backoff); a row not made
within `BEHIND_AFTER` (an hour) is a problem for `sm status --check`; `sm_anchors_behind`
counts every anchor not made.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping

from ..clock import Clock
from ..destinations import open_destination
from ..destinations.base import Destination
from ..errors import ObjectConflict, SmError
from ..message import sha256_hex
from ..retry import RATE_LIMITED, RetryPolicy, describe, error_class
from ..spool import Spool
from ..spool.anchors import BEHIND_AFTER
from ..spool.evidence_queries import AnchorRow
from .log import COPY, TIMESTAMP, LogOptions
from .segments import checkpoint_key, copy_checkpoint_key, log_origin
from .timestamp import TimestampError, check_timestamp, request_timestamp

log = logging.getLogger("sm.anchors")

__all__ = ["BEHIND_AFTER", "AnchorError", "Anchors", "anchor_delay", "create_only",
           "holds_exactly", "timestamp_key"]

ANCHORS_PER_TICK = 4  # anchors attempted per tick, at most
FETCH_FACTOR = 25  # due anchors read per attempt allowed (those of a resting target are skipped)
TICK_BUDGET = 5.0  # seconds: no anchor is started after this much of a tick
REQUEST_TIMEOUT = 5.0  # seconds a time-stamp authority may take to answer
ANCHOR_RETRY_CAP = 3600.0  # seconds between two attempts of one anchor, at most


class AnchorError(SmError):
    """An anchor could not be made this time (its row keeps why; it is retried)."""


def timestamp_key(project_id: str, tree_size: int, position: int) -> str:
    """The key of the token of the `position`-th (from 1) configured authority, relative to a
    destination's prefix: `{tree_size:012d}.tsr` for the first, `.{position}.tsr` after."""
    return checkpoint_key(project_id, tree_size, _token_suffix(position))


def _token_suffix(position: int) -> str:
    """The name's end of the `position`-th authority's token: `.tsr`, then `.{n}.tsr`."""
    return ".tsr" if position == 1 else f".{position}.tsr"


def anchor_delay(exc: BaseException, attempts: int, policy: RetryPolicy) -> float:
    """Seconds until an anchor that failed `attempts` times (this one included) is tried
    again: the policy's backoff when rate limited, else 2^(attempts-1) minutes, capped."""
    cap = min(ANCHOR_RETRY_CAP, policy.retry_interval)
    if error_class(exc) == RATE_LIMITED:
        return min(cap, policy.rate_limited_delay(attempts))
    return min(cap, 60.0 * 2.0 ** min(max(0, attempts - 1), 16))


def holds_exactly(destination: Destination, key: str, body: bytes) -> bool:
    """`key` holds exactly `body` (read back, at most its size: the bucket's bytes are
    hostile). A folder knows no metadata for bytes that are not gzip, so a create-only write
    of the same small text there is refused; this read settles it."""
    info = destination.head(key)
    if info is None or (info.size is not None and info.size != len(body)):
        return False
    return destination.get(key).body == body


def create_only(destination: Destination, key: str, body: bytes) -> bool:
    """Write `body` at `key` unless it is there; True when written, False when the same bytes
    were there. Other bytes there raise AnchorError naming them (never overwritten)."""
    try:
        return destination.put(key, body, sha256_hex(body)).created
    except ObjectConflict:
        if holds_exactly(destination, key, body):
            return False
        raise AnchorError(
            f"{destination.url}{key} already holds other bytes: the log forked or a second"
            " spool seals it; nothing was overwritten (sm audit --anchor to compare)"
        ) from None


class Anchors:
    """Makes the anchors owed to checkpoints: copies and time-stamps, retried until made."""

    def __init__(self, spool: Spool, destinations: Mapping[str, Destination],
                 options: LogOptions, *, clock: Clock | None = None,
                 policy: RetryPolicy | None = None, per_tick: int = ANCHORS_PER_TICK,
                 budget: float = TICK_BUDGET, request_timeout: float = REQUEST_TIMEOUT,
                 open_copy: Callable[[str], Destination] = open_destination,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.spool = spool
        self.destinations = destinations
        self.options = options
        self.clock = clock or spool.clock
        self.policy = policy or RetryPolicy()
        self.per_tick = per_tick
        self.budget = budget
        self.request_timeout = request_timeout
        self.open_copy = open_copy
        self.monotonic = monotonic
        self._copies: dict[str, Destination] = {}
        self._warned_untrusted = False
        self._resting_until: dict[str, float] = {}  # target -> its failed anchor's next try

    def make_due(self, *, budget: float | None = None) -> int:
        """Try the anchors due now, at most `per_tick` and none started after `budget`
        seconds; returns how many were made. A location or authority that failed is left
        alone until its failed anchor's next attempt, whatever else it owes. Never raises
        for an anchor's failure."""
        started = self.monotonic()
        limit = self.budget if budget is None else budget
        now = self.clock.now()
        made = tried = 0
        latest = now + ANCHOR_RETRY_CAP  # a next attempt beyond it: the clock was set back
        for anchor in self.spool.evidence.pending_anchors(now, self.per_tick * FETCH_FACTOR,
                                                          latest):
            if tried >= self.per_tick or self.monotonic() - started > limit:
                break
            if now < self._resting_until.get(anchor.target, now) <= latest:
                continue
            tried += 1
            made += self._make(anchor)
        return made

    def close(self) -> None:
        """Close the copy locations opened."""
        for destination in self._copies.values():
            destination.close()
        self._copies.clear()

    # ----------------------------------------------------------------------- one anchor

    def _make(self, anchor: AnchorRow) -> bool:
        """Make one anchor; a failure is recorded on its row and retried later."""
        try:
            if anchor.checkpoint is None:
                raise AnchorError(f"the checkpoint of {anchor.origin} at tree size"
                                  f" {anchor.tree_size} is not in the spool")
            token = self._timestamp(anchor) if anchor.kind == TIMESTAMP else None
            if anchor.kind == COPY:
                self._copy(anchor)
            elif anchor.kind != TIMESTAMP:
                raise AnchorError(f"unknown anchor kind {anchor.kind!r}")
        except Exception as exc:  # noqa: BLE001 - an anchor's failure never stops the daemon
            attempts = anchor.attempts + 1
            delay = anchor_delay(exc, attempts, self.policy)
            text = str(exc) if isinstance(exc, SmError) else describe(exc)
            level = logging.ERROR if isinstance(exc, AnchorError) else logging.WARNING
            log.log(level, "%s anchor %s of %s at tree size %d not made (%s); retrying in %ds",
                    anchor.kind, anchor.target, anchor.origin, anchor.tree_size, text,
                    int(delay))
            next_attempt_at = self.clock.now() + delay
            self._resting_until[anchor.target] = next_attempt_at
            self.spool.evidence.mark_anchor_failed(anchor, text, next_attempt_at)
            return False
        self.spool.evidence.mark_anchor_done(anchor, token, self.clock.now())
        log.info("%s anchor %s of %s at tree size %d made", anchor.kind, anchor.target,
                 anchor.origin, anchor.tree_size)
        return True

    def _timestamp(self, anchor: AnchorRow) -> bytes:
        """Obtain (or reuse) the checkpoint's token and write it beside every copy."""
        assert anchor.checkpoint is not None
        position = self._position(anchor.target)
        token = anchor.token
        if token is None:
            digest = hashlib.sha256(anchor.checkpoint.encode("utf-8")).digest()
            token = request_timestamp(anchor.target, digest, timeout=self.request_timeout)
            self._check(anchor.target, token, digest)
            self.spool.evidence.keep_anchor_token(anchor, token)
        for destination, key in self._places(anchor, timestamp_key(
                anchor.project_id, anchor.tree_size, position), _token_suffix(position)):
            create_only(destination, destination.prefix + key, token)
        return token

    def _check(self, url: str, token: bytes, digest: bytes) -> None:
        """Keep a token only when it checks: against the configured roots when there are
        some; without them its imprint (checked on the request) is all that is checked."""
        ca_file = self.options.timestamp_ca_file
        if ca_file is None:
            check = check_timestamp(token, digest)
            if not self._warned_untrusted:
                self._warned_untrusted = True
                log.warning("timestamp_ca_file is not set: time-stamp tokens from %s are kept"
                            " with their imprint checked but not their signer (%s); set"
                            " timestamp_ca_file (docs/timestamps.md)", url, check.detail)
            return
        try:
            roots = ca_file.read_bytes()
        except OSError as exc:
            raise AnchorError(f"timestamp_ca_file {ca_file} cannot be read ({exc.strerror});"
                              " fix the setting") from None
        check = check_timestamp(token, digest, ca_pem=roots)
        if not check.ok:
            raise TimestampError(f"{url} sent a time-stamp that does not check against"
                                 f" timestamp_ca_file: {check.detail}")

    def _copy(self, anchor: AnchorRow) -> None:
        """Write the checkpoint, and the tokens obtained so far, at the copy location."""
        assert anchor.checkpoint is not None
        copy = self._copy_destination(anchor.target)
        text = anchor.checkpoint.encode("utf-8")
        create_only(copy, copy.prefix + copy_checkpoint_key(
            anchor.project_id, anchor.origin, anchor.tree_size), text)
        for url, token in self.spool.evidence.anchor_tokens(anchor.project_id, anchor.origin,
                                                            anchor.tree_size):
            if url in self.options.timestamp_authorities:
                suffix = _token_suffix(self._position(url))
                create_only(copy, copy.prefix + copy_checkpoint_key(
                    anchor.project_id, anchor.origin, anchor.tree_size, suffix), token)

    # ----------------------------------------------------------------------- where

    def _position(self, url: str) -> int:
        """The authority's place (from 1) in `timestamp_authorities`: its token's name."""
        try:
            return self.options.timestamp_authorities.index(url) + 1
        except ValueError:
            raise AnchorError(f"time-stamp authority {url} is no longer in"
                              " timestamp_authorities; put it back to make this"
                              " time-stamp") from None

    def _places(self, anchor: AnchorRow, key: str, suffix: str
                ) -> list[tuple[Destination, str]]:
        """Where the checkpoint's token goes, and under which key: beside the checkpoint at
        the destination of its log (not the one a reconnected project archives to now, `key`),
        and in the log's own folder at every copy location."""
        destination = self.destinations.get(anchor.project_id)
        places = [(destination, key)] if destination is not None and log_origin(
            destination.url, anchor.project_id) == anchor.origin else []
        return places + [(self._copy_destination(url), copy_checkpoint_key(
            anchor.project_id, anchor.origin, anchor.tree_size, suffix))
            for url in self.options.copies]

    def _copy_destination(self, url: str) -> Destination:
        """A copy location, opened on first use with the default credentials and kept."""
        if url not in self._copies:
            try:
                self._copies[url] = self.open_copy(url)
            except Exception as exc:  # noqa: BLE001 - the row fails; the daemon goes on
                raise AnchorError(f"checkpoint copy location {url} cannot be opened:"
                                  f" {exc}") from None
        return self._copies[url]
