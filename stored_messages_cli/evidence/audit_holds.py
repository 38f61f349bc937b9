"""`sm audit`, the legal holds: every object the ledger says an open case holds carries the
store's own hold (`hold_missing` otherwise; SPEC 9.4, 9.6).

Read only when the spool has held objects of the project, one read per object on the audit's
threads (S3 GetObjectLegalHold, a GCS or Azure metadata read, a folder's mode).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ..destinations.base import Destination
from ..errors import ObjectNotFound, SmError
from ..spool import Spool
from .findings import Finding, Progress, ProjectAudit

HOLD_WORKERS = 8


def check_holds(spool: Spool, project_id: str, destination: Destination,
                result: ProjectAudit, progress: Progress) -> None:
    """A `hold_missing` finding for each object an open case holds by the ledger whose
    store reports no hold (or that is gone)."""
    held: dict[tuple[str, str | None], tuple[str, list[str]]] = {}
    for message_id, key, version_id, case_id in spool.store.applied_holds(project_id):
        held.setdefault((key, version_id), (message_id, []))[1].append(case_id)
    if not held:
        return
    progress.stage(f"project {project_id}: reading the legal holds of {len(held)} object(s)",
                   len(held))

    def read(place: tuple[str, str | None]) -> str | None:
        try:
            return None if destination.legal_hold(*place) else "the store reports no hold"
        except ObjectNotFound:
            return "the object is not in the bucket"
        except SmError as exc:
            return f"its hold cannot be read ({exc})"

    with ThreadPoolExecutor(max_workers=HOLD_WORKERS, thread_name_prefix="sm-audit") as pool:
        for (key, _version), problem in zip(held, pool.map(read, held), strict=True):
            progress.advance()
            if problem is None:
                continue
            message_id, cases = held[(key, _version)]
            result.findings.append(Finding(
                "hold_missing", f"held for case {', '.join(sorted(cases))} by the ledger;"
                f" {problem}", message_id=message_id, key=key))
