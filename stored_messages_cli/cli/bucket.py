"""`sm bucket create`: an S3 bucket with safe defaults for the archive."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from ..destinations.base import DestinationOptions
from ..destinations.names import check_kms_key_id
from ..destinations.s3 import RETENTION_MODES
from ..setup.aws import BucketRequest, create_bucket
from ..setup.checks import as_documents, failed
from ..states import CheckStatus
from .command_classes import group
from .common import checked_value, command, fail, state_of
from .connect import check_identity_options, destination_url, print_checks
from .options import (
    AllowInsecureOption,
    EndpointUrlOption,
    ExpectedOwnerOption,
    ExternalIdOption,
    ProfileOption,
    RegionOption,
    RoleArnOption,
)


def create(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(
        callback=destination_url("sm bucket create", new_bucket=True, schemes=("s3",)),
        help="s3://BUCKET/ (a prefix is ignored here).")],
    region: RegionOption = None,
    object_lock: Annotated[bool, typer.Option(
        "--object-lock", help="Create the bucket with object lock (cannot be undone).")
    ] = False,
    retention_days: Annotated[int | None, typer.Option(
        min=1, help="Default object-lock retention in days (with --object-lock).")] = None,
    retention_mode: Annotated[str, typer.Option(
        metavar="|".join(RETENTION_MODES),
        help="Default object-lock mode (with --retention-days).")] = "governance",
    kms_key_id: Annotated[str | None, typer.Option(
        callback=lambda v: v and checked_value(check_kms_key_id, v, "'--kms-key-id'"),
        help="Encrypt with this KMS key (SSE-KMS) instead of SSE-S3.")] = None,
    endpoint_url: EndpointUrlOption = None,
    profile: ProfileOption = None,
    role_arn: RoleArnOption = None,
    external_id: ExternalIdOption = None,
    expected_owner: ExpectedOwnerOption = None,
    allow_insecure_endpoint: AllowInsecureOption = False,
) -> None:
    """Create an S3 bucket: public access blocked, encrypted, versioned (locked if asked).

    A bucket of yours that exists is reported; only its missing safe settings are filled in.

    Example: sm bucket create s3://acme-archive/ --region eu-west-1
    """
    state = state_of(ctx)
    out = state.output
    if retention_mode not in RETENTION_MODES:
        raise typer.BadParameter("use governance or compliance", param_hint="--retention-mode")
    if retention_days and not object_lock:
        raise typer.BadParameter("needs --object-lock", param_hint="--retention-days")
    expected_owner = check_identity_options(role_arn, external_id, expected_owner)
    options = DestinationOptions(
        endpoint_url=endpoint_url, region=region, profile=profile, role_arn=role_arn,
        external_id=external_id, expected_owner=expected_owner,
        allow_insecure_endpoint=allow_insecure_endpoint)
    request = BucketRequest(object_lock=object_lock, retention_days=retention_days,
                            retention_mode=retention_mode, kms_key_id=kms_key_id)
    report = create_bucket(url, options, request)
    url_out = f"s3://{report.bucket}/"
    if out.json_mode:
        out.emit_json({"bucket": report.bucket, "url": url_out, "region": report.region,
                       "created": report.created, "applied": report.applied,
                       "notes": report.notes, "checks": as_documents(report.checks)})
    else:
        verb = "Created" if report.created else "Found"
        out.info(f"{verb} bucket {url_out} in {report.region}")
        for line in report.applied:
            out.info(f"  + {line}")
        for line in report.notes:
            out.info(f"  {line}")
        print_checks(out, report.checks, f"Settings of {url_out}")
    bad = [c for c in report.checks if c.status == CheckStatus.FAIL]
    if failed(report.checks):
        fail(f"{url_out} is not safe yet: {bad[0].name}: {bad[0].detail}", hint=bad[0].hint)
    # the connect hint reaches the same bucket the same way: copied as shown, it must not
    # address AWS itself when the bucket is on another endpoint
    flags = "".join(f" {flag} {shlex.quote(value)}" for flag, value in (
        ("--endpoint-url", endpoint_url), ("--region", region), ("--profile", profile),
        ("--role-arn", role_arn), ("--external-id", external_id),
        ("--expected-owner", expected_owner)) if value)
    flags += " --allow-insecure-endpoint" if allow_insecure_endpoint else ""
    out.info(f"Next: sm policy {url_out}   then   sm connect {url_out} --project ID{flags}")


def register(app: typer.Typer) -> None:
    """Add the `bucket` command group (create)."""
    bucket_app = group(
        "bucket", "Create an S3 bucket for the archive with safe defaults (sm bucket create).\n\n"
        "Example: sm bucket create s3://acme-archive/ --region eu-west-1 --object-lock")
    command(bucket_app, "create")(create)
    app.add_typer(bucket_app, name="bucket")
