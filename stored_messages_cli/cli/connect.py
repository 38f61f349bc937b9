"""`sm connect`, `sm disconnect`, `sm destinations`: a project's one destination."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import typer
from rich.text import Text

from ..config.privacy import privacy_note
from ..config.projects import ProjectDestination
from ..destinations import open_destination
from ..destinations.base import Check, split_url
from ..destinations.file import ensure_folder
from ..destinations.names import check_destination_url
from ..destinations.s3 import ACCOUNT_ID_RE, EXTERNAL_ID_RE, RETENTION_MODES, role_account
from ..errors import SmError
from ..evidence.manifest import latest_sealer
from ..evidence.signing import key_home, load_or_create_signing_key, signing_key_path
from ..message import MEDIUMS
from ..setup.checks import (
    accept_failures,
    as_documents,
    blocking_failure,
    can_be_accepted,
    read_only_checks,
    run_checks,
)
from ..spool.daemons import Daemons
from ..states import CheckStatus
from .common import AppState, Output, checked_value, command, fail, options_for, state_of
from .options import (
    AllowInsecureOption,
    EndpointUrlOption,
    ExpectedOwnerOption,
    ExternalIdOption,
    ProfileOption,
    ProjectIdOption,
    RegionOption,
    RoleArnOption,
)

CHECK_STYLE: dict[str, str] = {
    CheckStatus.PASS: "green", CheckStatus.WARN: "yellow", CheckStatus.FAIL: "red"}


def destination_url(command: str, then: str = "", **rules: Any) -> Any:
    """A callback refusing, as a usage error, a URL the provider would refuse (its scheme,
    a relative file URL or bare path, a bucket or container name), before any request."""

    def callback(value: str | None) -> str | None:
        if value is None:
            return None
        return checked_value(check_destination_url, value, "'URL'", command=command,
                             then=then, **rules)

    return callback


def check_identity_options(role_arn: str | None, external_id: str | None,
                           expected_owner: str | None) -> str | None:
    """Validate --role-arn/--external-id/--expected-owner; the owner defaults to the role's
    account (SPEC 7)."""
    if external_id and not role_arn:
        raise typer.BadParameter("needs --role-arn", param_hint="--external-id")
    if external_id and not EXTERNAL_ID_RE.match(external_id):
        raise typer.BadParameter("2 to 1224 characters of letters, digits and +=,.@:/-",
                                 param_hint="--external-id")
    if role_arn and role_account(role_arn) is None:
        raise typer.BadParameter("expected arn:aws:iam::ACCOUNT_ID:role/NAME",
                                 param_hint="--role-arn")
    if expected_owner is not None and not ACCOUNT_ID_RE.match(expected_owner):
        raise typer.BadParameter("expected a 12-digit AWS account id",
                                 param_hint="--expected-owner")
    return expected_owner or role_account(role_arn)


def _refusal_hint(refusal: Check, url: str, scheme: str) -> str | None:
    """What to do about the check that stopped `sm connect`."""
    if can_be_accepted(refusal.name):
        fix = f"{refusal.hint}; or, knowingly, " if refusal.hint else ""
        return f"{fix}sm connect {url} … --accept-failed-check {refusal.name}"
    return refusal.hint or (f"sm policy {url}   # grant it, then connect again"
                            if scheme == "s3" else None)


def print_checks(out: Output, checks: list[Check], title: str) -> None:
    """Render pass/warn/fail lines as a table."""
    out.table(title, ["check", "status", "detail"],
              [[c.name, Text(c.status, style=CHECK_STYLE.get(c.status, "")), c.detail]
               for c in checks])


def connect(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(
        callback=destination_url("sm connect", " --project ID"),
        help="s3://BUCKET/PREFIX, gs://…, az://… or file:///PATH/")],
    project: ProjectIdOption,
    medium: Annotated[list[str] | None, typer.Option(
        "--medium", metavar="|".join(MEDIUMS),
        help="Archive only this medium (repeatable; default all).")] = None,
    endpoint_url: EndpointUrlOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    role_arn: RoleArnOption = None,
    external_id: ExternalIdOption = None,
    expected_owner: ExpectedOwnerOption = None,
    retention_days: Annotated[int | None, typer.Option(
        min=1, help="Object-lock retention for every object, in days.")] = None,
    retention_mode: Annotated[str | None, typer.Option(
        metavar="|".join(RETENTION_MODES),
        help="Object-lock mode (with --retention-days; default governance).")] = None,
    account_url: Annotated[str | None, typer.Option(
        help="Azure account URL, https://ACCOUNT.blob.core.windows.net.")] = None,
    allow_insecure_endpoint: AllowInsecureOption = False,
    read_only: Annotated[bool, typer.Option(
        "--read-only", help="For investigators: check list and read only (no test"
        " write) and save the destination read-only; sm run refuses it.")] = False,
    accept_failed_check: Annotated[list[str] | None, typer.Option(
        "--accept-failed-check", help="Save even though this safety check failed (e.g."
        " public_access); recorded in config.toml and shown by destinations and verify."
        " Repeatable.")] = None,
) -> None:
    """Verify a destination, then save it as the project's one destination.

    Writes, reads back and deletes (under object lock: keeps) a test object under
    PREFIX/_sm/, and checks the bucket's safety settings; nothing is saved unless the
    bucket can take the archive and every safety check passes (or is accepted by name
    with --accept-failed-check). With --read-only nothing is written: sm lists and reads.

    Example: sm connect s3://acme-archive/messages/ --project 12345
    --expected-owner 111122223333
    """
    state = state_of(ctx)
    out = state.output
    mediums, expected_owner, accepted = _checked_choices(
        medium, retention_days=retention_days, retention_mode=retention_mode,
        role_arn=role_arn, external_id=external_id, expected_owner=expected_owner,
        accept_failed_check=accept_failed_check, read_only=read_only)
    scheme = split_url(url)[0]
    if scheme == "file":
        ensure_folder(url)
    saved = ProjectDestination(
        url=url, mediums=mediums, endpoint_url=endpoint_url, region=region, profile=profile,
        role_arn=role_arn, external_id=external_id, expected_owner=expected_owner,
        retention_days=retention_days,
        retention_mode=(retention_mode or "governance") if retention_days else None,
        account_url=account_url, allow_insecure_endpoint=allow_insecure_endpoint,
        read_only=read_only,
    )
    saved, checks, newest_sealer = _checked_destination(out, saved, project)
    refusal = blocking_failure(checks, accepted)
    waived = [c.name for c in checks if c.status == CheckStatus.FAIL and c.name in accepted]
    shown = accept_failures(checks, accepted)
    log_notes = signed_log_notes(state, newest_sealer) if refusal is None and not read_only \
        else {}
    if out.json_mode:
        document = {"project_id": project, "url": saved.url, "mediums": mediums,
                    "saved": refusal is None, "read_only": read_only,
                    "accepted_failed_checks": waived if refusal is None else [],
                    "checks": as_documents(shown)}
        document.update({k: v for k, v in log_notes.items() if k == "verifier_key"})
        out.emit_json(document)
    else:
        print_checks(out, shown, f"Checks for {saved.url}")
    if refusal is not None:
        fail(f"{saved.url} failed the {refusal.name} check: {refusal.detail};"
             " nothing was saved", hint=_refusal_hint(refusal, saved.url, scheme))
    _save(state, project, saved.model_copy(update={"accepted_failed_checks": waived}))
    print_signed_log_notes(out, project, log_notes, privacy_note(state.settings(), project)
                           if not (out.json_mode or read_only) else None)


def signed_log_notes(state: AppState, other: str | None) -> dict[str, Any]:
    """What `sm connect` says of the project's signed log (SPEC 9.1): the verifier key of
    the log's signing key (created when missing), and the sealer of the destination's newest
    segment of this log (`other`, read by the checks) when it is another spool's."""
    notes: dict[str, Any] = {}
    path = signing_key_path(key_home(state.paths), state.settings().log_key_file)
    try:
        signer, notes["key_created"] = load_or_create_signing_key(path)
        notes["verifier_key"], notes["key_file"] = signer.verifier_key(), str(path)
    except (SmError, OSError, ValueError) as exc:
        notes["key_error"] = f"the log's signing key {path} cannot be read ({exc})"
    if other is not None:
        with state.open_spool(create=True) as spool:
            own = spool.evidence.sealer_id(secrets.token_hex(8))
        if other != own:
            notes["other_sealer"] = "".join(c for c in other[:40] if c.isprintable())
    return notes


def print_signed_log_notes(out: Output, project: str, notes: dict[str, Any],
                           privacy: str | None = None) -> None:
    """The verifier key (to keep with the auditor) and a warning when another spool seals
    the project's log at this destination; then `privacy`, what the project's recipient
    hash means (SPEC 9.5), when given."""
    if privacy:
        out.info(privacy)
    if "key_error" in notes:
        out.warn(notes["key_error"] + "; sm run cannot sign manifests until it can: sm key"
                 " show")
    if "other_sealer" in notes:
        out.warn(f"the newest manifest of project {project} at this destination was sealed by"
                 f" another spool (sealer {notes['other_sealer']}): if that spool still runs,"
                 " two spools would seal one log; a fleet shares one PostgreSQL spool"
                 " (docs/fleet.md)")
    if "verifier_key" not in notes or out.json_mode:
        return
    if notes["key_created"]:
        out.info(f"Created the manifest log's signing key {notes['key_file']} (keep it"
                 " private, and out of the bucket).")
    out.info("The verifier key of this spool's manifest log; keep it with your auditor"
             " (sm audit --trust VKEY):")
    out.print(notes["verifier_key"], highlight=False)


def _checked_destination(out: Output, saved: ProjectDestination, project: str
                         ) -> tuple[ProjectDestination, list[Check], str | None]:
    """`saved` with the URL as the destination spells it, the checks run on it, and the
    sealer of the newest segment of the project's log there (None when none, or read-only),
    all on one opened destination (one set of credentials, one role assumed)."""
    destination = open_destination(saved.url, options_for(saved))
    try:
        out.info(f"Checking {destination.url} …" + (" (read-only)" if saved.read_only else ""))
        checks = read_only_checks(destination) if saved.read_only else \
            run_checks(destination, keep_test_object=bool(saved.retention_days))
        newest_sealer = None
        if not saved.read_only:
            try:
                newest_sealer = latest_sealer(destination, project)
            except SmError:
                pass  # a listing that fails here fails again, louder, in sm run
        return saved.model_copy(update={"url": destination.url}), checks, newest_sealer
    finally:
        destination.close()


def _checked_choices(medium: list[str] | None, *, retention_days: int | None,
                     retention_mode: str | None, role_arn: str | None,
                     external_id: str | None, expected_owner: str | None,
                     accept_failed_check: list[str] | None, read_only: bool
                     ) -> tuple[list[str], str | None, list[str]]:
    """The mediums, the expected owner and the accepted failed checks `sm connect` saves,
    after refusing, as usage errors, the choices that cannot go together."""
    mediums = list(dict.fromkeys(medium or MEDIUMS))
    for item in mediums:
        if item not in MEDIUMS:
            raise typer.BadParameter(f"{item!r}: use email, sms or push",
                                     param_hint="--medium")
    if retention_mode and not retention_days:
        raise typer.BadParameter("needs --retention-days", param_hint="--retention-mode")
    if retention_mode and retention_mode not in RETENTION_MODES:
        raise typer.BadParameter("use governance or compliance", param_hint="--retention-mode")
    owner = check_identity_options(role_arn, external_id, expected_owner)
    accepted = list(dict.fromkeys(accept_failed_check or []))
    for name in accepted:
        if not can_be_accepted(name):
            raise typer.BadParameter(f"{name!r} cannot be accepted: without it the archive"
                                     " cannot be written, read or kept",
                                     param_hint="--accept-failed-check")
    if read_only and retention_days:
        raise typer.BadParameter("a read-only destination writes nothing to retain",
                                 param_hint="--retention-days")
    return mediums, owner, accepted


def _save(state: AppState, project: str, saved: ProjectDestination) -> None:
    """Save the checked destination and say what changed (and what stays where it was)."""
    out = state.output
    previous = state.settings().projects.get(project)
    state.save_project(project, saved)
    for name in saved.accepted_failed_checks:
        out.warn(f"saved although the {name} check failed (accepted with"
                 f" --accept-failed-check {name}; recorded in config.toml, shown by sm"
                 " destinations and sm verify)")
    verb = ("reads (read-only)" if saved.read_only
            else "archives " + ", ".join(saved.mediums) + " to")
    out.info(f"Project {project} now {verb} {saved.url}")
    if previous is not None and previous.url != saved.url:
        out.warn(f"objects archived before stay in {previous.url}; the local index still"
                 " lists them (sm find). To read them, connect that URL read-only under"
                 " another home: sm --home DIR connect"
                 f" {previous.url} --project {project} --read-only")
    out.info(_daemon_pickup(state))


def disconnect(
    ctx: typer.Context,
    project: ProjectIdOption,
) -> None:
    """Remove a project's destination; its messages stay in the spool.

    Example: sm disconnect --project 12345
    """
    state = state_of(ctx)
    known = project in state.settings().projects
    if known:
        state.save_project(project, None)
        with state.open_spool(create=True) as spool:
            spool.health.forget(project)
    if state.output.json_mode:
        state.output.emit_json({"project_id": project, "removed": known})
    elif known:
        state.output.info(f"Project {project} has no destination now; its messages wait"
                          " in the spool until you connect one.")
        state.output.info(_daemon_pickup(state))
    else:
        state.output.info(f"Project {project} had no destination; nothing to do.")

def _daemon_pickup(state: AppState) -> str:
    """Whether a running `sm run` will pick a config change up (it reloads on its own)."""
    with state.open_spool(create=True) as spool:
        alive = [d for d in Daemons(spool).listed() if d.alive]
    if not alive:
        return "No sm run is running on this spool: start one with `sm run`."
    who = ", ".join(f"pid {d.pid} on {d.host}" for d in alive)
    return f"The running sm run ({who}) picks this up within a few seconds."

def destinations(ctx: typer.Context) -> None:
    """List projects, their destination and archived mediums.

    Example: sm destinations --json
    """
    state = state_of(ctx)
    projects = state.settings().projects
    rows: list[dict[str, Any]] = [{"project_id": pid, "url": d.url, "mediums": d.mediums,
             "endpoint_url": d.endpoint_url, "retention_days": d.retention_days,
             "read_only": d.read_only,
             "accepted_failed_checks": list(d.accepted_failed_checks)}
            for pid, d in sorted(projects.items())]
    if state.output.json_mode:
        state.output.emit_json(rows)
        return
    if not rows:
        state.output.info("No destinations yet. Try: sm connect URL --project ID")
        return
    state.output.table(None, ["project", "destination", "mediums", "warnings"],
                       [[r["project_id"], r["url"],
                         "read-only" if r["read_only"] else ", ".join(r["mediums"]),
                         _warnings(r["accepted_failed_checks"])] for r in rows])
    for r in rows:
        for name in r["accepted_failed_checks"]:
            state.output.warn(f"project {r['project_id']}: the {name} check failed and"
                              " was accepted on connect; fix it, then run sm verify")


def register(app: typer.Typer) -> None:
    """Add connect, disconnect and destinations."""
    command(app, "connect")(connect)
    command(app, "disconnect")(disconnect)
    command(app, "destinations")(destinations)


def _warnings(accepted: list[str]) -> Text | str:
    if not accepted:
        return ""
    return Text("accepted failed check: " + ", ".join(accepted), style="yellow")
