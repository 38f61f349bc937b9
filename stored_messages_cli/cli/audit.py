"""`sm audit`: prove every project's archive complete, with evidence anyone can re-check."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from ..evidence.audit import audit as run_audit
from ..evidence.bundle import write_report
from .common import command, open_project_destination, state_of
from .options import ProjectOption, SinceOption, UntilOption, time_range


def audit(
    ctx: typer.Context,
    project: ProjectOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    deep: Annotated[bool, typer.Option(
        "--deep", help="Download and re-hash every stored object.")] = False,
    report: Annotated[Path | None, typer.Option(
        "--report", file_okay=False, help="Write an evidence bundle with verify.sh here.")
    ] = None,
) -> None:
    """Prove the archive complete: the manifest chain, the bucket and the spool agree.

    Checks every manifest segment is present and chained, every stored message's object is
    in the bucket (with --deep: unaltered), no object is outside the manifests, and no
    archived message of the spool is missing from them. Exit 1 on any finding.

    Example: sm --json audit --project 12345 --since 2026-11-01 --deep --report evidence/
    """
    if report is not None and str(report) == "-":
        raise typer.BadParameter("the evidence bundle is a folder of files, not a stream:"
                                 " name a folder", param_hint="'--report'")
    state = state_of(ctx)
    out = state.output
    state.require_spool()
    since_at, until_at = time_range(since, until, command="audit")
    chosen = state.connected_projects(
        project, none_yet="no project has a destination yet; nothing to audit")
    destinations = {pid: open_project_destination(state, pid) for pid in chosen}
    try:
        with state.open_spool() as spool, progress_for(out) as progress:
            result = run_audit(spool, destinations, since=since_at, until=until_at,
                               deep=deep, progress=progress)
    finally:
        for destination in destinations.values():
            destination.close()
    if report is not None:
        settings = state.settings()
        ca_file = settings.timestamp_ca_file
        write_report(result, report, trusted_keys=settings.trusted_keys,
                     tsa_ca_pem=Path(ca_file).expanduser().read_bytes() if ca_file else None,
                     prefixes={pid: d.prefix for pid, d in destinations.items()})
    document = result.as_dict()
    if out.json_mode:
        out.emit_json(document)
    else:
        _print(out, document, report)
    if not result.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add audit."""
    command(app, "audit")(audit)


def progress_for(out: Any) -> Any:
    """A progress bar on stderr for the audit's steps, only on a terminal (a context
    manager giving the `audit.Progress`, or None)."""
    return _AuditProgress(out) if out.interactive else nullcontext()


class _AuditProgress:
    """The current step (reading manifests, listing, downloading, reading retention) with a
    bar and a count when its size is known; transient, so only the result stays."""

    def __init__(self, out: Any) -> None:
        from rich.progress import (  # only on a terminal
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        # markup off: the text names projects, which come from users
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False),
                            BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=out.stderr, transient=True)
        self.task: Any = None

    def __enter__(self) -> _AuditProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def stage(self, text: str, total: int | None = None) -> None:
        """A new step replaces the previous one."""
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(text, total=total)

    def advance(self, count: int = 1) -> None:
        """`count` more items of the step done."""
        if self.task is not None:
            self.bar.advance(self.task, count)


def _print(out: Any, document: dict[str, Any], report: Path | None) -> None:
    rows = [[p["project_id"], p["manifests"], p["entries"], p["stored"], p["expired"],
             p["failed"], p["pending"], len(p["findings"])] for p in document["projects"]]
    out.table(None, ["project", "manifests", "entries", "stored", "expired", "failed",
                     "pending", "findings"], rows)
    for project in document["projects"]:
        for finding in project["findings"]:
            where = " ".join(f"{name} {finding[name]}" for name in ("seq", "message_id", "key")
                             if name in finding)
            out.print(Text.assemble((finding["type"], "red"), f" project {project['project_id']}"
                                    f" {where}: {finding['detail']}"))
    out.print("ok: no finding" if document["ok"] else "FAILED: see the findings above",
              highlight=False)
    if report is not None:
        out.info(f"evidence bundle in {report} (re-check it with: sh {report}/verify.sh)")
