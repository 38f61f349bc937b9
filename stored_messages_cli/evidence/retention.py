"""`sm retention extend`: a later retain-until date for stored objects, never an earlier one
(SPEC 9.4, docs/holds.md).

The objects are the local archive index's (`sm find`'s filters). Every object's date is read
first; when the date asked for is earlier than any object's, nothing changes and the request
is refused (`RetentionShorter`, a usage error). Then each object's date is set: S3
PutObjectRetention in the version's own mode, GCS object retention, an Azure version
immutability policy; a folder keeps no retention.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..clock import to_rfc3339
from ..destinations.base import Destination
from ..errors import SmError
from ..spool import Spool
from ..spool.index_filter import IndexFilter

WORKERS = 8


class RetentionUnsupported(SmError):
    """The project's store keeps no retention (a folder, an S3 bucket without object lock)."""


class RetentionShorter(SmError):
    """The date asked for is earlier than an object's (retention only ever grows)."""


@dataclass
class RetentionReport:
    """What an extension did: objects extended, already retained until then or later, and
    failures (key, why)."""

    extended: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def extend_retention(spool: Spool, destination: Destination, wanted: IndexFilter,
                     until: float, *, workers: int = WORKERS,
                     progress: Callable[[int], None] | None = None) -> RetentionReport:
    """Retain every indexed object matching `wanted` until `until`; raises RetentionShorter,
    changing nothing, when an object is retained longer already or `until` is past."""
    why_not = destination.retention_support()
    if why_not:
        raise RetentionUnsupported(f"retention cannot be extended: {why_not}",
                                   hint="docs/holds.md says what each store needs")
    now = spool.clock.now()
    if until <= now:
        raise RetentionShorter(f"{to_rfc3339(until)} is not in the future",
                               hint="--until a later date (retention only ever grows)")
    places = [(str(row[7]), row[9]) for row in spool.store.find_entries(wanted, None)]
    report = RetentionReport()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sm-ret") as pool:
        current = list(pool.map(lambda place: _current(destination, *place), places))
        later = [(key, float(date)) for (key, _v), date in zip(places, current, strict=True)
                 if isinstance(date, float) and date > until]
        if later:
            key, date = later[0]
            raise RetentionShorter(
                f"{len(later)} object(s) are retained past {to_rfc3339(until)} already (first:"
                f" {key} until {to_rfc3339(date)}); retention is never shortened, nothing was"
                " changed", hint=f"--until {to_rfc3339(max(d for _k, d in later))} or later")
        todo = []
        for place, found in zip(places, current, strict=True):
            if isinstance(found, str):
                report.failed.append((place[0], found))
            elif found is not None and found >= until:
                report.unchanged += 1
            else:
                todo.append(place)
        if progress is not None and len(todo) < len(places):
            progress(len(places) - len(todo))
        for place, error in zip(todo, pool.map(
                lambda place: _extend(destination, place, until), todo), strict=True):
            if error is None:
                report.extended += 1
            else:
                report.failed.append((place[0], error))
            if progress is not None:
                progress(1)
    return report


def _current(destination: Destination, key: str, version_id: str | None) -> float | str | None:
    """The object's retain-until date, or why it cannot be read (a string)."""
    try:
        return destination.retention_until(key, version_id)
    except SmError as exc:
        return str(exc)


def _extend(destination: Destination, place: tuple[str, str | None], until: float
            ) -> str | None:
    try:
        destination.extend_retention(place[0], place[1], until)
    except SmError as exc:
        return str(exc)
    return None
