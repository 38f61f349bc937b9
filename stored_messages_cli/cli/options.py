"""The options several commands share, declared once: an `Annotated` alias per option, with
one help text and one check, so `sm find`, `sm export`, `sm audit`, `sm replay`… describe and
refuse a value the same way.

A command writes `project: ProjectOption = None`; an option only one command has stays
declared in that command's module.
"""

# No `from __future__ import annotations`: Typer evaluates the aliases when it reads them.

from datetime import datetime
from typing import Annotated

import typer

from ..evidence.access_log import CASE_ID_RULE, check_case_id
from ..investigate.index import parse_time_bound
from ..message import MEDIUMS, RFC3339_RE, check_message_id, normalise_reference, parse_sent_at
from .common import fail


def project_option(value: str | None) -> str | None:
    """`--project ID`: a project id as the ingest rule reads it; else a usage error."""
    if value is None:
        return None
    try:
        return normalise_reference("project_id", value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def campaign_option(value: str | None) -> str | None:
    """`--campaign ID`: a campaign id (or `unassociated`); else a usage error."""
    if value is None:
        return None
    try:
        return normalise_reference("campaign_id", value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def message_id_option(value: str | None) -> str | None:
    """A message id (`--message-id`, or the MESSAGE_ID argument); else a usage error."""
    if value is None:
        return None
    try:
        return check_message_id(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def medium_option(value: str | None) -> str | None:
    """`--medium`: email, sms or push; else a usage error."""
    if value is not None and value not in MEDIUMS:
        raise typer.BadParameter(f"{value!r}: use email, sms or push")
    return value


def case_option(value: str | None) -> str | None:
    """`--case ID`: a case id that can name a key folder and a file."""
    if value is None:
        return None
    try:
        return check_case_id(value)
    except ValueError:
        raise typer.BadParameter(CASE_ID_RULE) from None


def time_bound(value: str | None, *, end_of_day: bool, name: str, command: str
               ) -> datetime | None:
    """`--since` / `--until` of `sm COMMAND` as an aware UTC datetime (None when not given).

    Never a traceback: a time outside years 1-9999 once in UTC, a naive time, or any other
    text gives `Error: invalid value for --since: …`, a `Try:` line and exit 2.
    """
    if value is None:
        return None
    try:
        return parse_time_bound(value, end_of_day=end_of_day)
    except (ValueError, OverflowError) as exc:  # InvalidMessage is a ValueError too
        reason = str(exc)
        if RFC3339_RE.fullmatch(value.strip()):
            try:  # the precise reason (e.g. out of range in UTC) rather than "not a time"
                parse_sent_at(value.strip())
            except ValueError as precise:
                reason = f"{value!r} {str(precise).removeprefix('sent_at ')}"
        fail(f"invalid value for {name}: {reason}",
             hint=f"sm {command} {name} 2026-11-27 (a UTC day), {name} 2026-11-27T17:00:00Z"
                  f" or {name} 7d",
             code=2)


def time_range(since: str | None, until: str | None, *, command: str
               ) -> tuple[datetime | None, datetime | None]:
    """`--since` and `--until` of `sm COMMAND`; an empty range is a usage error too."""
    since_at = time_bound(since, end_of_day=False, name="--since", command=command)
    until_at = time_bound(until, end_of_day=True, name="--until", command=command)
    if since_at is not None and until_at is not None and since_at > until_at:
        fail(f"--since {since} is after --until {until}: the range is empty", code=2,
             hint=f"sm {command} --since 7d --until 1d (the earlier time first)")
    return since_at, until_at


# ----------------------------------------------------------------- which messages

ProjectOption = Annotated[str | None, typer.Option(
    "--project", callback=project_option,
    help="Only this project (default: every project).")]
ProjectIdOption = Annotated[str, typer.Option(
    "--project", callback=project_option,
    help="The project id (the project_id its messages carry).")]
MessageProjectOption = Annotated[str | None, typer.Option(
    "--project", callback=project_option,
    help="The message's project (needed when the id exists in several).")]
MessageIdArgument = Annotated[str, typer.Argument(
    callback=message_id_option, help="The message id.")]
MessageIdOption = Annotated[str | None, typer.Option(
    "--message-id", callback=message_id_option, help="Only the message with this id.")]
RecipientOption = Annotated[str | None, typer.Option(
    "--recipient",
    help="Email, user id, phone number or device token (normalised like the key).")]
CampaignOption = Annotated[str | None, typer.Option(
    "--campaign", callback=campaign_option,
    help="A campaign id; 'unassociated' for messages without one.")]
MediumOption = Annotated[str | None, typer.Option(
    "--medium", callback=medium_option, metavar="|".join(MEDIUMS),
    autocompletion=lambda: list(MEDIUMS), help="Only this medium: email, sms or push.")]
SinceOption = Annotated[str | None, typer.Option(
    "--since", help="Only messages sent at or after: an RFC 3339 time, a date (UTC) or a"
    " time ago (7d, 2h).")]
UntilOption = Annotated[str | None, typer.Option(
    "--until", help="Only messages sent at or before: an RFC 3339 time, a date (the whole"
    " day, UTC) or a time ago (2h).")]

# ----------------------------------------------------------------- how, and on whose behalf

CASE_HELP = ("A case id: the access is also recorded, create-only, in the bucket under"
             " _sm/access/ID/.")
CaseOption = Annotated[str | None, typer.Option(
    "--case", callback=case_option, help=CASE_HELP)]
ConcurrencyOption = Annotated[int | None, typer.Option(
    "--concurrency", min=1, max=256,
    help="Parallel uploads (default: the setting `concurrency`, 8).")]
WorkersOption = Annotated[int, typer.Option(
    "--workers", min=1, max=64, help="Objects read in parallel.")]

# ----------------------------------------------------------------- reaching a bucket

EndpointUrlOption = Annotated[str | None, typer.Option(
    "--endpoint-url", help="S3-compatible endpoint (https).")]
RegionOption = Annotated[str | None, typer.Option("--region", help="The bucket's region.")]
ProfileOption = Annotated[str | None, typer.Option("--profile", help="AWS profile to use.")]
RoleArnOption = Annotated[str | None, typer.Option("--role-arn", help="IAM role to assume.")]
ExternalIdOption = Annotated[str | None, typer.Option(
    "--external-id", help="External id for --role-arn.")]
ExpectedOwnerOption = Annotated[str | None, typer.Option(
    "--expected-owner",
    help="Account that must own the bucket (default: the account in --role-arn).")]
AllowInsecureOption = Annotated[bool, typer.Option(
    "--allow-insecure-endpoint",
    help="Allow a plain-http endpoint on a loopback address (test servers).")]
