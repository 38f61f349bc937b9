"""`sm connect`, `sm disconnect`, `sm destinations`: a project's one destination."""

from __future__ import annotations

from typing import Annotated, Any, cast

import typer
from rich.text import Text

from ..checks import as_documents, blocking_failure, failed, run_checks
from ..config import ProjectDestination
from ..destinations import open_destination
from ..destinations.base import Check, split_url
from ..destinations.names import check_destination_url
from ..destinations.s3 import ACCOUNT_ID_RE, EXTERNAL_ID_RE, RETENTION_MODES, role_account
from ..model import MEDIUMS, normalise_reference
from .common import Output, checked_value, command, fail, options_for, state_of

# Endpoint and credential options shared by `sm connect` and `sm bucket create`.
EndpointUrlOption = Annotated[str | None, typer.Option(help="S3-compatible endpoint (https).")]
ProfileOption = Annotated[str | None, typer.Option(help="AWS profile to use.")]
RoleArnOption = Annotated[str | None, typer.Option(help="IAM role to assume.")]
ExternalIdOption = Annotated[str | None, typer.Option(help="External id for --role-arn.")]
ExpectedOwnerOption = Annotated[str | None, typer.Option(
    help="Account that must own the bucket (default: the account in --role-arn).")]
AllowInsecureOption = Annotated[bool, typer.Option(
    "--allow-insecure-endpoint",
    help="Allow a plain-http endpoint on a loopback address (test servers).")]


CHECK_STYLE = {"pass": "green", "warn": "yellow", "fail": "red"}


def project_option(value: str) -> str:
    """Validate a --project value like the ingest rule does."""
    try:
        return normalise_reference("project_id", value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


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


def print_checks(out: Output, checks: list[Check], title: str) -> None:
    """Render pass/warn/fail lines as a table."""
    out.table(title, ["check", "status", "detail"],
              [[c.name, Text(c.status, style=CHECK_STYLE.get(c.status, "")), c.detail]
               for c in checks])


def register(app: typer.Typer) -> None:
    """Add connect, disconnect and destinations."""

    @command(app, "connect")
    def connect(
        ctx: typer.Context,
        url: Annotated[str, typer.Argument(
            callback=destination_url("sm connect", " --project ID"),
            help="s3://BUCKET/PREFIX, gs://…, az://… or file:///PATH/")],
        project: Annotated[str, typer.Option("--project", callback=project_option,
                                             help="Project id whose messages go there.")],
        medium: Annotated[list[str] | None, typer.Option(
            "--medium", metavar="|".join(MEDIUMS),
            help="Archive only this medium (repeatable; default all).")] = None,
        endpoint_url: EndpointUrlOption = None,
        region: Annotated[str | None, typer.Option(help="Bucket region.")] = None,
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
    ) -> None:
        """Verify a destination, then save it as the project's one destination.

        Writes, reads back and deletes (under object lock: keeps) a test object under
        PREFIX/_sm/, and checks the bucket's safety settings; nothing is saved unless the
        bucket can take the archive.

        Example: sm connect s3://acme-archive/messages/ --project 12345
        --expected-owner 111122223333
        """
        state = state_of(ctx)
        out = state.output
        mediums = list(dict.fromkeys(medium or MEDIUMS))
        for item in mediums:
            if item not in MEDIUMS:
                raise typer.BadParameter(f"{item!r}: use email, sms or push",
                                         param_hint="--medium")
        if retention_mode and not retention_days:
            raise typer.BadParameter("needs --retention-days", param_hint="--retention-mode")
        if retention_mode and retention_mode not in RETENTION_MODES:
            raise typer.BadParameter("use governance or compliance", param_hint="--retention-mode")
        expected_owner = check_identity_options(role_arn, external_id, expected_owner)
        scheme = split_url(url)[0]
        if scheme == "file":
            from ..destinations.file import ensure_folder

            ensure_folder(url)
        saved = ProjectDestination(
            url=url, mediums=mediums, endpoint_url=endpoint_url, region=region, profile=profile,
            role_arn=role_arn, external_id=external_id, expected_owner=expected_owner,
            retention_days=retention_days,
            retention_mode=(retention_mode or "governance") if retention_days else None,
            account_url=account_url, allow_insecure_endpoint=allow_insecure_endpoint,
        )
        destination = open_destination(url, options_for(saved))
        saved = saved.model_copy(update={"url": destination.url})
        try:
            out.info(f"Checking {destination.url} …")
            checks = run_checks(destination, keep_test_object=bool(retention_days))
        finally:
            destination.close()
        refusal = blocking_failure(checks)
        if out.json_mode:
            document = {"project_id": project, "url": destination.url, "mediums": mediums,
                        "saved": refusal is None, "checks": as_documents(checks)}
            out.emit_json(document)
        else:
            print_checks(out, checks, f"Checks for {destination.url}")
        if refusal is not None:
            fail(f"{destination.url} failed the {refusal.name} check: {refusal.detail};"
                 " nothing was saved",
                 hint=refusal.hint or (f"sm policy {destination.url}   # grant it, then"
                                       " connect again" if scheme == "s3" else None))
        state.save_project(project, saved)
        if failed(checks):
            out.warn("saved, but some safety checks failed; run `sm verify` after fixing them")
        out.info(f"Project {project} now archives {', '.join(mediums)} to {destination.url}")

    @command(app, "disconnect")
    def disconnect(
        ctx: typer.Context,
        project: Annotated[str, typer.Option("--project", callback=project_option,
                                             help="Project whose destination to remove.")],
    ) -> None:
        """Remove a project's destination; its messages stay in the spool.

        Example: sm disconnect --project 12345
        """
        state = state_of(ctx)
        known = project in state.settings().projects
        if known:
            state.save_project(project, None)
            with state.open_spool() as spool:
                spool.health.forget(project)
        if state.output.json_mode:
            state.output.emit_json({"project_id": project, "removed": known})
        elif known:
            state.output.info(f"Project {project} has no destination now; its messages wait"
                              " in the spool until you connect one.")
        else:
            state.output.info(f"Project {project} had no destination; nothing to do.")

    @command(app, "destinations")
    def destinations(ctx: typer.Context) -> None:
        """List projects, their destination and archived mediums.

        Example: sm destinations --json
        """
        state = state_of(ctx)
        projects = state.settings().projects
        rows = [{"project_id": pid, "url": d.url, "mediums": d.mediums,
                 "endpoint_url": d.endpoint_url, "retention_days": d.retention_days}
                for pid, d in sorted(projects.items())]
        if state.output.json_mode:
            state.output.emit_json(rows)
            return
        if not rows:
            state.output.info("No destinations yet. Try: sm connect URL --project ID")
            return
        state.output.table(None, ["project", "destination", "mediums"],
                           [[r["project_id"], r["url"], ", ".join(cast(list[str], r["mediums"]))]
                            for r in rows])
