"""`sm verify` (re-check a project's destination and its bucket's safety) and `sm policy`
(the least-privilege IAM documents to grant)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Annotated

import typer

from ..destinations.base import Check
from ..destinations.names import check_kms_key_arn
from ..setup.aws import identity_policy, trust_policy
from ..setup.checks import (
    accept_failures,
    as_documents,
    failed,
    read_only_checks,
    recent_write,
    recent_write_checks,
    run_checks,
)
from ..states import CheckStatus
from .common import checked_value, command, fail, open_project_destination, state_of
from .connect import destination_url, print_checks
from .options import ProjectOption


def verify(
    ctx: typer.Context,
    project: ProjectOption = None,
    write_test: Annotated[bool, typer.Option(
        "--write-test", help="Write a test object even when sm run stored a message"
        " within a day (under retention it is kept for the whole period).")] = False,
) -> None:
    """Re-run the destination checks and the bucket's safety checks.

    Proves writing by the daemon's own recent writes (a message stored within a day),
    reading it back, and a refused create-only rewrite of its key; only without one, or
    with --write-test, it writes a test object (kept under object lock). Then checks that
    the bucket is not public and all public access is blocked, default encryption,
    versioning and retention (when set) and the endpoint's TLS. Exit 1 on any fail.

    Example: sm --json verify --project 12345
    """
    state = state_of(ctx)
    out = state.output
    projects = state.settings().projects
    chosen = state.connected_projects(project, none_yet="no project has a destination yet")
    every: list[Check] = []
    for project_id in chosen:
        saved = projects[project_id]
        recent = None
        if not (saved.read_only or write_test):
            with state.open_spool() as spool:
                recent = recent_write(spool, project_id)
        destination = open_project_destination(state, project_id)
        try:
            if saved.read_only:
                checks = read_only_checks(destination)
            elif recent is not None:
                checks = recent_write_checks(destination, recent)
            else:
                checks = run_checks(destination,
                                    keep_test_object=bool(saved.retention_days))
        finally:
            destination.close()
        checks = accept_failures(checks, saved.accepted_failed_checks)
        if len(chosen) > 1:  # one flat list for --json: say whose each line is
            checks = [replace(c, detail=f"[project {project_id}] {c.detail}")
                      for c in checks]
        every.extend(checks)
        if not out.json_mode:
            print_checks(out, checks, f"Project {project_id}: {destination.url}")
        for name in saved.accepted_failed_checks:
            out.warn(f"project {project_id}: the {name} check was accepted as failed on"
                     " connect (config.toml: accepted_failed_checks); fix it, then"
                     " connect again without --accept-failed-check")
    ok = not failed(every)
    if out.json_mode:
        out.emit_json({"ok": ok, "checks": as_documents(every)})
    if not ok:
        first = next(c for c in every if c.status == CheckStatus.FAIL)
        count = sum(1 for c in every if c.status == CheckStatus.FAIL)
        fail(f"{count} check(s) failed; first: {first.name}: {first.detail}",
             hint=first.hint)
    warned = sum(1 for c in every if c.status == CheckStatus.WARN)
    out.info("All checks passed" + (f" ({warned} warning(s))" if warned else "") + ".")

def policy(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(
        callback=destination_url("sm policy", schemes=("s3",)),
        help="s3://BUCKET/PREFIX the archiver writes to.")],
    kms_key_arn: Annotated[str | None, typer.Option(
        callback=lambda v: v and checked_value(check_kms_key_arn, v, "'--kms-key-arn'"),
        help="KMS key the bucket encrypts with (grants GenerateDataKey and Decrypt).")
    ] = None,
    retention: Annotated[bool, typer.Option(
        "--retention", help="Grant s3:PutObjectRetention (connect --retention-days).")
    ] = False,
    region: Annotated[str | None, typer.Option(
        help="Bucket region (only to pick the aws-cn / aws-us-gov partition).")] = None,
    holds: Annotated[bool, typer.Option(
        "--holds", help="Grant legal holds and retention extension (sm hold, sm retention;"
        " docs/holds.md).")] = False,
    read_only: Annotated[bool, typer.Option(
        "--read-only", help="The policy of an investigator (sm connect --read-only):"
        " list and read only.")] = False,
    trust: Annotated[bool, typer.Option(
        "--trust", help="Print the role trust policy instead (needs --external-id and"
        " --principal).")] = False,
    external_id: Annotated[str | None, typer.Option(
        help="External id the trust policy requires.")] = None,
    principal: Annotated[str | None, typer.Option(
        help="ARN allowed to assume the role (with --trust).")] = None,
) -> None:
    """Print the least-privilege IAM policy JSON the archiver needs.

    Attach it to the identity (user or role) `sm` runs as. With --trust, print the trust
    policy of a role that `sm connect --role-arn … --external-id …` assumes.

    Example: sm policy s3://acme-archive/messages/ --kms-key-arn arn:aws:kms:…:key/…
    """
    if trust:
        if not external_id:
            raise typer.BadParameter("--trust needs --external-id",
                                     param_hint="--external-id")
        if not principal:
            raise typer.BadParameter("--trust needs --principal", param_hint="--principal")
        document = trust_policy(principal, external_id)
    else:
        if external_id or principal:
            raise typer.BadParameter("only with --trust",
                                     param_hint="--external-id/--principal")
        if read_only and retention:
            raise typer.BadParameter("a read-only identity writes nothing to retain",
                                     param_hint="--retention")
        if read_only and holds:
            raise typer.BadParameter("a read-only identity places no holds",
                                     param_hint="--holds")
        document = identity_policy(url, kms_key_arn=kms_key_arn, retention=retention,
                                   region=region, read_only=read_only, holds=holds)
    typer.echo(json.dumps(document, indent=None if state_of(ctx).output.json_mode else 2))


def register(app: typer.Typer) -> None:
    """Add verify and policy."""
    command(app, "verify")(verify)
    command(app, "policy")(policy)
