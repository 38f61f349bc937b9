"""`sm status`: what the spool holds and how each destination is doing."""

# No `from __future__ import annotations`: typer would have to eval every annotation.

from typing import Annotated, Any

import typer

from ..clock import to_rfc3339
from ..config import project_urls
from ..states import STATES, HealthState
from .common import command, state_of


def status_document(state: Any) -> dict[str, Any]:
    """The `sm status --json` document (SPEC 6)."""
    projects = project_urls(state.paths.config_file)
    with state.open_spool() as spool:
        summary = spool.report.status()
        health = spool.health.all()
        recent = spool.report.rejected_lines(limit=20)
        waiting = spool.queue.projects_with_work()
        final_reasons = spool.report.final_reasons()
    destinations = []
    for project_id, url in sorted(projects.items()):
        known = health.get(project_id)
        current = known is not None and known.url == url
        destinations.append({
            "project_id": project_id,
            "url": url,
            "health": known.health if known and current else HealthState.UNKNOWN,
            "since": to_rfc3339(known.since) if known and current else None,
            "next_probe_at": to_rfc3339(known.next_probe_at) if known and current else None,
            "last_error": known.last_error if known and current else None,
        })
    age = summary["oldest_unarchived_age_seconds"]
    return {
        "counts": summary["counts"],
        "retry_reasons": summary["retry_reasons"],
        "final_reasons": final_reasons,
        "oldest_unarchived_age_seconds": None if age is None else round(age, 3),
        "next_retry_at": to_rfc3339(summary["next_retry_at"]),
        "rejected_lines": summary["rejected_lines"],
        "recent_rejections": [
            {"source": r["source"], "line": r["line"], "reason": r["reason"],
             "rejected_at": to_rfc3339(r["rejected_at"])} for r in recent],
        "destinations": destinations,
        "projects_without_destination": sorted(set(waiting) - set(projects)),
    }


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def register(app: typer.Typer) -> None:
    """Add status."""

    @command(app, "status")
    def status(
        ctx: typer.Context,
        rejections: Annotated[int, typer.Option(
            min=0, help="How many recent rejected lines to list.")] = 5,
    ) -> None:
        """Show counts per state, the oldest unarchived age, destination health and rejections.

        Example: sm --json status
        """
        state = state_of(ctx)
        out = state.output
        doc = status_document(state)
        if out.json_mode:
            out.emit_json(doc)
            return
        counts = doc["counts"]
        out.table("Messages", ["state", "count"], [[s, counts[s]] for s in STATES])
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(doc["retry_reasons"].items()) if k)
        out.print(f"Oldest unarchived: {_age(doc['oldest_unarchived_age_seconds'])}"
                  f"   Next retry: {doc['next_retry_at'] or '-'}"
                  + (f"   Waiting: {reasons}" if reasons else ""), highlight=False)
        for final_state, why in sorted(doc["final_reasons"].items()):
            for reason, count in sorted(why.items()):
                out.print(f"{final_state.capitalize()} {count}: {reason}", highlight=False,
                          markup=False)
        if doc["destinations"]:
            out.table("Destinations", ["project", "destination", "health", "next probe",
                                       "last error"],
                      [[d["project_id"], d["url"], d["health"], d["next_probe_at"] or "-",
                        d["last_error"] or ""] for d in doc["destinations"]])
        else:
            out.print("No destinations yet. Try: sm connect URL --project ID")
        if doc["projects_without_destination"]:
            out.print("Waiting for a destination: project(s) "
                      + ", ".join(doc["projects_without_destination"]), highlight=False)
        if doc["rejected_lines"]:
            out.print(f"Rejected lines: {doc['rejected_lines']} (most recent first)",
                      highlight=False)
            for r in doc["recent_rejections"][:rejections]:
                out.print(f"  {r['source']}:{r['line']}: {r['reason']}", highlight=False,
                          markup=False)
