"""`sm audit`: prove every project's archive complete, with evidence anyone can re-check."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from ..destinations.base import Destination
from ..evidence.audit import audit as run_audit
from ..evidence.audit_log import Anchor, Trust
from ..evidence.bundle import write_report
from ..evidence.note import NoteError, NoteVerifier, parse_verifier_keys
from ..evidence.segments import MAX_CHECKPOINT_BYTES
from .common import (
    AppState,
    command,
    open_project_destination,
    options_for,
    state_of,
    usage_error,
)
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
    trust: Annotated[list[str] | None, typer.Option(
        "--trust", metavar="VKEY", help="A verifier key the log's checkpoints must be signed"
        " by (repeatable; default: setting trusted_keys).")] = None,
    anchor: Annotated[list[str] | None, typer.Option(
        "--anchor", metavar="FILE|URL", help="A checkpoint saved earlier, or a checkpoint-copy"
        " location (a destination URL); the bucket's log must extend it (repeatable).")
    ] = None,
    tsa_ca: Annotated[Path | None, typer.Option(
        "--tsa-ca", metavar="FILE", dir_okay=False, help="PEM roots the time-stamp tokens"
        " must chain to (default: setting timestamp_ca_file).")] = None,
    destination_url: Annotated[str | None, typer.Option(
        "--destination", metavar="URL", help="Audit the project's log at an earlier"
        " destination (read only) instead of its current one.")] = None,
) -> None:
    """Prove the archive complete: the signed log, the bucket and the spool agree.

    Checks every manifest segment is present and chained, the log's tree and signed
    checkpoints (against --trust keys and --anchor checkpoints), every stored message's
    object is in the bucket (with --deep: unaltered), no object is outside the manifests,
    and no archived message of the spool is missing from them. Exit 1 on any finding.

    Example: sm --json audit --project 12345 --deep --trust "$(sm key show)" --report evidence/
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
    if destination_url is not None and len(chosen) != 1:
        raise usage_error("--destination audits one project's earlier log",
                    param_hint="'--destination'", hint="add --project ID")
    trusted = _trust(state, trust, anchor, tsa_ca, chosen[0])
    destinations = {pid: _open_audited(state, pid, destination_url) for pid in chosen}
    try:
        with state.open_spool() as spool:
            if report is not None and destination_url is None:
                _seal_first(state, spool, destinations)
            with progress_for(out) as progress:
                result = run_audit(spool, destinations, since=since_at, until=until_at,
                                   deep=deep, progress=progress, trust=trusted,
                                   own_key=_own_key(state),
                                   max_payload_bytes=state.settings().max_payload_bytes)
    finally:
        for opened in [*destinations.values(), *(a.destination for a in trusted.anchors)]:
            if opened is not None:
                opened.close()
    if report is not None:
        # The keys the audit trusted (this host's own when none was given) and its TSA roots:
        # an auditor re-checking the bundle passes their own with `sh verify.sh --trust`.
        own = _own_key(state)
        keys = [v.verifier_key for v in trusted.verifiers] or \
            ([own.verifier_key] if own is not None else [])
        write_report(result, report, trusted_keys=keys, tsa_ca_pem=trusted.tsa_ca,
                     prefixes={pid: d.prefix for pid, d in destinations.items()})
    document = result.as_dict()
    if out.json_mode:
        out.emit_json(document)
    else:
        for warning in result.warnings:
            out.warn(warning)
        _print(out, document, report)
    if not result.ok:
        raise typer.Exit(1)


def _open_audited(state: AppState, project_id: str, url: str | None) -> Destination:
    """The destination whose log is audited: the project's own, or (`--destination`) an
    earlier one, opened with the project's saved options and only read."""
    if url is None:
        return open_project_destination(state, project_id)
    return _open_url(state, project_id, url)


def _open_url(state: AppState, project_id: str, url: str) -> Destination:
    """A destination URL opened for reading: with the project's saved connection options
    when it is the same kind of store (endpoint, profile), else with the defaults."""
    from ..destinations import open_destination  # start-up: only when auditing

    saved = state.project(project_id)
    same_kind = url.split("://", 1)[0] == saved.url.split("://", 1)[0]
    return open_destination(url, options_for(saved) if same_kind else None)


def _trust(state: AppState, keys: list[str] | None, anchors: list[str] | None,
           tsa_ca: Path | None, project_id: str) -> Trust:
    """The keys (`--trust`, else `trusted_keys`), anchors and TSA roots the audit trusts;
    a bad value is a usage error naming it."""
    settings = state.settings()
    try:
        verifiers = parse_verifier_keys(keys or list(settings.trusted_keys))
    except NoteError as exc:
        raise usage_error(str(exc), param_hint="'--trust'",
                          hint="pass the line sm key show prints on the sealing host") from None
    ca_file = tsa_ca or (Path(settings.timestamp_ca_file) if settings.timestamp_ca_file
                         else None)
    ca_pem = None
    if ca_file is not None:
        try:
            ca_pem = ca_file.read_bytes()
        except OSError as exc:
            raise usage_error(f"cannot read {ca_file}: {exc.strerror}",
                              param_hint="'--tsa-ca'") from None
    made: list[Anchor] = []
    for value in anchors or []:
        if "://" in value:
            made.append(Anchor(value, destination=_open_url(state, project_id, value)))
            continue
        try:
            with open(value, "rb") as handle:
                body = handle.read(MAX_CHECKPOINT_BYTES + 1)
            if len(body) > MAX_CHECKPOINT_BYTES:
                raise usage_error(f"{value} is over {MAX_CHECKPOINT_BYTES} bytes: not a"
                                  " checkpoint", param_hint="'--anchor'")
            made.append(Anchor(value, text=body.decode("utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise usage_error(f"cannot read the checkpoint {value}: {exc}",
                              param_hint="'--anchor'", hint="name a checkpoint file saved"
                              " earlier, or a destination URL") from None
    return Trust(verifiers, tuple(made), ca_pem)


def _own_key(state: AppState) -> NoteVerifier | None:
    """The verifier of this host's signing key, when it has one (trusted by the audit only
    for logs whose checkpoints it signed)."""
    from ..evidence.signing import key_home, load_signing_key, signing_key_path

    path = signing_key_path(key_home(state.paths), state.settings().log_key_file)
    if not path.exists():
        return None
    try:
        return load_signing_key(path).verifier()
    except Exception:  # noqa: BLE001 - an unreadable key only means no default trust
        return None


def _seal_first(state: AppState, spool: Any, destinations: dict[str, Destination]) -> None:
    """`--report` seals the open segments first, so the bundle proves what is stored now
    (projects connected read-only are not written to)."""
    from ..evidence.log import LogOptions
    from ..evidence.manifest import Manifests, limits_from

    settings = state.settings()
    writable = {pid: d for pid, d in destinations.items() if not state.project(pid).read_only}
    if not writable:
        return
    max_entries, _ = limits_from(settings)
    Manifests(spool, writable, max_entries,
              log_options=LogOptions.from_settings(settings, state.home)).close()


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
             p["failed"], p["pending"], p["unsealed"], "yes" if p["anchored"] else "no",
             len(p["findings"])] for p in document["projects"]]
    out.table(None, ["project", "manifests", "entries", "stored", "expired", "failed",
                     "pending", "unsealed", "anchored", "findings"], rows)
    for project in document["projects"]:
        if project["unsealed"]:
            out.print(f"project {project['project_id']}: {project['unsealed']} stored"
                      " message(s) not yet in a sealed segment (sm manifest seal)",
                      highlight=False, markup=False)
        for finding in project["findings"]:
            where = " ".join(f"{name} {finding[name]}" for name in ("seq", "message_id", "key")
                             if name in finding)
            out.print(Text.assemble((finding["type"], "red"), f" project {project['project_id']}"
                                    f" {where}: {finding['detail']}"))
    out.print("ok: no finding" if document["ok"] else "FAILED: see the findings above",
              highlight=False)
    if report is not None:
        out.info(f"evidence bundle in {report} (re-check it with: sh {report}/verify.sh)")
