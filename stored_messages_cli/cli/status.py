"""`sm status`: what the spool holds and how each destination is doing."""

# No `from __future__ import annotations`: typer would have to eval every annotation.

from typing import Annotated, Any

import typer

from ..clock import to_rfc3339
from ..config import project_urls
from ..config.last_good import last_good_path
from ..errors import ConfigError
from ..spool.anchors import BEHIND_AFTER, FAILING_WRITE_ATTEMPTS
from ..spool.daemons import Daemons, discarded_by_reason, lease_owner_alive
from ..spool.sealing import keys_backup_problems, keys_backup_status
from ..states import HEALTH_REASONS, STATES, HealthState
from .common import command, duration_option, state_of


def _projects(config_file: Any) -> tuple[str | None, dict[str, str]]:
    """config.toml's problem (None when it is valid) and each project's destination URL;
    while config.toml is not valid, those of its last good copy (what senders use)."""
    try:
        return None, project_urls(config_file)
    except ConfigError as exc:
        problem = str(exc)
    try:
        return problem, project_urls(last_good_path(config_file))
    except ConfigError:
        return problem, {}


def status_document(state: Any) -> dict[str, Any]:
    """The `sm status --json` document (SPEC 6)."""
    config_problem, projects = _projects(state.paths.config_file)
    with state.open_spool() as spool:
        summary = spool.report.status()
        health = spool.health.all()
        recent = spool.report.rejected_lines(limit=20)
        waiting = spool.queue.projects_with_work()
        final_reasons = spool.report.final_reasons()
        daemons = Daemons(spool)
        running = daemons.listed()
        held = daemons.in_flight_by_owner()
        discarded = discarded_by_reason(spool)
        evidence = evidence_document(spool)
        open_cases, holds_pending, holds_failing = spool.store.hold_figures()
        keys = keys_backup_status(spool.store, spool.clock.now(), postgres=spool.is_postgres)
        provider_events = spool.deliveries.counts()  # SPEC 9.3: matched, orphan, archived
    destinations = []
    for project_id, url in sorted(projects.items()):
        known = health.get(project_id)
        current = known is not None and known.url == url
        health_state = known.health if known and current else HealthState.UNKNOWN
        reason = HEALTH_REASONS.get(health_state)
        destinations.append({
            "project_id": project_id,
            "url": url,
            "health": health_state,
            "reason": reason,
            "since": to_rfc3339(known.since) if known and current else None,
            "next_probe_at": to_rfc3339(known.next_probe_at) if known and current else None,
            "last_error": known.last_error if known and current else None,
        })
    age = summary["oldest_unarchived_age_seconds"]
    held_by_dead = sum(count for owner, count in held.items()
                       if owner and not lease_owner_alive(owner, running))
    return {
        "config": {"valid": config_problem is None, "problem": config_problem},
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
        "discarded_by_reason": discarded,
        "daemons": [{
            "host": d.host, "pid": d.pid, "version": d.version,
            "started_at": to_rfc3339(d.started_at),
            "last_heartbeat": to_rfc3339(d.last_heartbeat),
            "alive": d.alive,
            "in_flight": held.get(d.lease_owner or "", 0),
        } for d in running],
        "in_flight_held_by_dead_daemon": held_by_dead,
        **evidence,
        "holds": {"open_cases": open_cases, "pending": holds_pending,
                  "failing": holds_failing},
        "recipient_keys": keys,  # SPEC 9.5: losing them loses the archive (docs/privacy.md)
        "provider_events": provider_events,
    }


def problems(doc: dict[str, Any], max_age: float | None) -> list[tuple[str, str]]:
    """What `sm status --check` reports: (kind, one line) for each problem, none when healthy."""
    found: list[tuple[str, str]] = []
    if not doc["config"]["valid"]:
        found.append(("config_invalid", f"{doc['config']['problem']}; senders record with the"
                      " last good configuration and sm run keeps its running one until it is"
                      " fixed"))
    if not any(d["alive"] for d in doc["daemons"]):
        dead = [d for d in doc["daemons"] if not d["alive"]]
        held = doc["in_flight_held_by_dead_daemon"]
        found.append(("no_live_daemon", "no live sm run" + (
            f" ({len(dead)} dead, last heartbeat {dead[-1]['last_heartbeat']})" if dead
            else " has registered") + (
            f"; {held} in-flight message(s) held by a dead daemon" if held else "")))
    for d in doc["destinations"]:
        if d["health"] == HealthState.UNREACHABLE:
            found.append(("destination_unreachable",
                          f"project {d['project_id']}: {d['url']} unreachable since {d['since']}"
                          f", next probe {d['next_probe_at'] or '-'}"))
        elif d["health"] == HealthState.UNSAFE:
            found.append(("destination_unsafe",
                          f"project {d['project_id']}: {d['url']} unsafe since {d['since']}"
                          f" ({d['reason']}: it overwrote an object a create-only write must"
                          f" leave alone; nothing is sent to it), next proof"
                          f" {d['next_probe_at'] or '-'}"))
    for project_id in doc["projects_without_destination"]:
        found.append(("project_without_destination",
                      f"project {project_id}: messages wait for a destination; sm connect URL"
                      f" --project {project_id}"))
    for final_state in ("expired", "failed"):
        count = doc["counts"].get(final_state, 0)
        if count:
            why = ", ".join(f"{k} {v}" for k, v in sorted(
                doc["final_reasons"].get(final_state, {}).items()))
            found.append((f"messages_{final_state}",
                          f"{count} message(s) {final_state} ({why}); see sm replay --"
                          f"{final_state}"))
    age = doc["oldest_unarchived_age_seconds"]
    if max_age is not None and age is not None and age > max_age:
        found.append(("oldest_unarchived_too_old",
                      f"oldest unarchived message is {_age(age)} old (max {_age(max_age)})"))
    found += evidence_problems(doc)
    found += keys_backup_problems(doc)
    return found


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


DEFAULT_MAX_AGE = 3600.0


def _check(out: Any, doc: dict[str, Any], max_age: float) -> None:
    """`--check`: one line per problem on stdout (or JSON), exit 1 when there is any."""
    found = problems(doc, max_age)
    if out.json_mode:
        out.emit_json({"ok": not found,
                       "problems": [{"kind": k, "detail": d} for k, d in found]})
    elif found:
        for kind, detail in found:
            out.print(f"{kind}: {detail}", highlight=False, markup=False)
    else:
        alive = sum(1 for d in doc["daemons"] if d["alive"])
        out.print(f"ok: {alive} live daemon(s), oldest unarchived "
                  f"{_age(doc['oldest_unarchived_age_seconds'])}", highlight=False)
    if found:
        raise typer.Exit(1)


def status(
    ctx: typer.Context,
    rejections: Annotated[int, typer.Option(
        min=0, help="How many recent rejected lines to list.")] = 5,
    check: Annotated[bool, typer.Option(
        "--check", help="Exit 1 and list the problems (config.toml not valid, no live sm"
        " run, a destination unreachable or unsafe, expired or failed messages, a too old"
        " backlog); 0 when healthy."
    )] = False,
    max_age: Annotated[float, typer.Option(
        "--max-age", parser=duration_option, metavar="DURATION",
        help="With --check: the oldest unarchived message may be this old (e.g. 30m)."
    )] = DEFAULT_MAX_AGE,
) -> None:
    """Show counts per state, the oldest unarchived age, destination health and rejections.

    Example: sm --json status; sm status --check --max-age 30m (for cron or probes)
    """
    state = state_of(ctx)
    out = state.output
    doc = status_document(state)
    if check:
        _check(out, doc, max_age)
        return
    if out.json_mode:
        out.emit_json(doc)
        return
    if not doc["config"]["valid"]:
        out.warn(f"config.toml is not valid: {doc['config']['problem']} (senders record with"
                 " the last good configuration; sm run keeps its running one)")
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
                  [[d["project_id"], d["url"],
                    d["health"] + (f" ({d['reason']})" if d["reason"] else ""),
                    d["next_probe_at"] or "-",
                    d["last_error"] or ""] for d in doc["destinations"]])
    else:
        out.print("No destinations yet. Try: sm connect URL --project ID")
    if doc["projects_without_destination"]:
        out.print("Waiting for a destination: project(s) "
                  + ", ".join(doc["projects_without_destination"]), highlight=False)
    if doc["discarded_by_reason"]:
        out.print("Discarded: " + ", ".join(
            f"{k} {v}" for k, v in sorted(doc["discarded_by_reason"].items())),
            highlight=False, markup=False)
    unconfirmed = doc["discarded_by_reason"].get("never_confirmed", 0)
    if unconfirmed:
        # A broken confirmation path in the sender must not mean a silent, empty archive.
        out.warn(f"{unconfirmed} message(s) were discarded because no send confirmation"
                 " arrived within confirm_timeout: check that your sender records `sent`"
                 " events (a late one within confirm_grace still revives the message)")
    if doc["daemons"]:
        out.table("Daemons", ["host", "pid", "version", "started", "last heartbeat",
                              "alive", "in flight"],
                  [[d["host"], d["pid"], d["version"] or "-", d["started_at"],
                    d["last_heartbeat"], "yes" if d["alive"] else "NO (dead)",
                    d["in_flight"]] for d in doc["daemons"]])
    else:
        out.print("No sm run is registered. Try: sm run", highlight=False)
    if doc["in_flight_held_by_dead_daemon"]:
        out.print(f"In flight {doc['in_flight_held_by_dead_daemon']}: held by a dead daemon"
                  " (returned to the queue when sm run starts again)", highlight=False)
    if doc["rejected_lines"]:
        out.print(f"Rejected lines: {doc['rejected_lines']} (most recent first)",
                  highlight=False)
        for r in doc["recent_rejections"][:rejections]:
            out.print(f"  {r['source']}:{r['line']}: {r['reason']}", highlight=False,
                      markup=False)
    print_evidence(out, doc)


# --------------------------------------------------------------------------- the signed log


def evidence_document(spool: Any) -> dict[str, Any]:
    """The `anchors` and `manifests` parts of `sm status --json`: anchors owed to checkpoints
    and not made (SPEC 9.1), manifest writes not done and those failing again and again."""
    now = spool.clock.now()
    behind = spool.evidence.anchors_behind(now)
    targets: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in behind:  # oldest first: the first row of a target is its oldest
        group = targets.setdefault((row.project_id, row.kind, row.target), {
            "project_id": row.project_id, "kind": row.kind, "target": row.target,
            "checkpoints": 0, "oldest_tree_size": row.tree_size,
            "oldest_age_seconds": round(row.age(now), 3), "attempts": row.attempts,
            "last_error": row.last_error})
        group["checkpoints"] += 1
        group["last_error"] = group["last_error"] or row.last_error
    errors = [row.last_error for row in behind if row.last_error]
    unwritten = spool.evidence.segments(unwritten_only=True)
    failing = spool.evidence.failing_manifest_writes(FAILING_WRITE_ATTEMPTS)
    return {
        "anchors": {
            "behind": len(behind),
            "oldest_age_seconds": round(behind[0].age(now), 3) if behind else None,
            "last_error": errors[-1] if errors else None,
            "targets": list(targets.values()),
        },
        "manifests": {
            "unwritten": len(unwritten),
            "failing": [{"project_id": f["project_id"], "seq": f["log_seq"],
                         "attempts": f["attempts"], "last_error": f["last_error"],
                         "next_attempt_at": to_rfc3339(f["next_attempt_at"])}
                        for f in failing],
        },
    }


def evidence_problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """`--check`'s problems of the signed log: an anchor not made for over an hour (one line
    per project and anchor), a manifest write failing again and again (one per segment)."""
    found: list[tuple[str, str]] = []
    for group in doc.get("anchors", {}).get("targets", []):
        if group["oldest_age_seconds"] <= BEHIND_AFTER:
            continue
        what = "time-stamped by" if group["kind"] == "timestamp" else "copied to"
        found.append(("anchor_behind",
                      f"project {group['project_id']}: {group['checkpoints']} checkpoint(s)"
                      f" not {what} {group['target']} for {_age(group['oldest_age_seconds'])}"
                      f" (last error: {group['last_error'] or '-'}); fix that location or"
                      " remove it from the settings (docs/operations.md, anchors)"))
    failing_holds = doc.get("holds", {}).get("failing", 0)
    if failing_holds:
        found.append(("hold_failing",
                      f"{failing_holds} legal hold(s) not applied (or released) after"
                      " 3 attempts; sm hold show CASE_ID, then check the destination with"
                      " sm verify (docs/holds.md)"))
    for failing in doc.get("manifests", {}).get("failing", []):
        found.append(("manifest_write_failing",
                      f"project {failing['project_id']}: manifest {failing['seq']} not written"
                      f" after {failing['attempts']} attempts ({failing['last_error'] or '-'});"
                      " check the destination with sm verify (docs/operations.md)"))
    return found


def print_evidence(out: Any, doc: dict[str, Any]) -> None:
    """The human view of the anchors behind and the manifest writes failing."""
    anchors, manifests = doc["anchors"], doc["manifests"]
    for _, detail in keys_backup_problems(doc):  # losing the keys loses the archive
        out.warn(detail)
    if anchors["behind"]:
        out.print(f"Anchors behind: {anchors['behind']} (oldest"
                  f" {_age(anchors['oldest_age_seconds'])})", highlight=False)
        for group in anchors["targets"]:
            out.print(f"  project {group['project_id']} {group['kind']} {group['target']}:"
                      f" {group['checkpoints']} checkpoint(s),"
                      f" {group['last_error'] or 'not tried yet'}", highlight=False,
                      markup=False)
    if manifests["unwritten"]:
        out.print(f"Manifests not yet written: {manifests['unwritten']}", highlight=False)
    holds = doc["holds"]
    if holds["open_cases"] or holds["pending"]:
        out.print(f"Legal holds: {holds['open_cases']} open case(s), {holds['pending']}"
                  " object(s) pending", highlight=False)
    for failing in manifests["failing"]:
        out.print(f"  project {failing['project_id']} manifest {failing['seq']}:"
                  f" {failing['attempts']} attempts, {failing['last_error'] or '-'}",
                  highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add status."""
    command(app, "status")(status)
