"""Setting an S3 bucket up for the archive: `sm bucket create` and `sm policy`.

`create_bucket` makes a bucket with safe defaults (all public access blocked, default
encryption, versioning, object lock when asked) or, for a bucket of yours that exists,
fills in whichever of those safe settings it lacks without touching the rest.
`identity_policy` and `trust_policy` build the least-privilege IAM documents the archiver
needs. No Typer or Rich here: the CLI renders what these return.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..destinations.base import TEST_OBJECT_FOLDER, Check, DestinationOptions, split_url
from ..destinations.names import check_destination_url, check_kms_key_arn, check_kms_key_id
from ..destinations.s3 import RETENTION_MODES, S3Destination
from ..destinations.s3_checks import PUBLIC_ACCESS_FLAGS
from ..destinations.s3_client import error_code
from ..errors import ConfigError, DestinationError, SmError
from ..retry import describe

IAM_VERSION = "2012-10-17"
# What `sm verify` reads of the bucket: its safety settings and whether it is public.
SAFETY_SETTINGS_ACTIONS = ["s3:GetBucketPublicAccessBlock", "s3:GetBucketPolicyStatus",
                           "s3:GetBucketAcl", "s3:GetEncryptionConfiguration",
                           "s3:GetBucketVersioning", "s3:GetBucketObjectLockConfiguration"]


@dataclass(frozen=True)
class BucketRequest:
    """What `sm bucket create` was asked for."""

    object_lock: bool = False
    retention_days: int | None = None
    retention_mode: str = "governance"
    kms_key_id: str | None = None


@dataclass
class BucketReport:
    """What `create_bucket` did: created or found, the settings it applied, the read-back."""

    bucket: str
    region: str
    created: bool
    applied: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)


def create_bucket(url: str, options: DestinationOptions, request: BucketRequest
                  ) -> BucketReport:
    """Create the bucket `url` names with safe defaults; report one of yours that exists.

    Raises ConfigError when the name is taken by another account or the request cannot be
    met (object lock asked of an existing bucket without it).
    """
    if request.retention_mode not in RETENTION_MODES:
        raise ConfigError(f"retention mode {request.retention_mode!r}: use governance or"
                          " compliance")
    if request.retention_days and not request.object_lock:
        raise ConfigError("--retention-days needs --object-lock")
    if request.kms_key_id:
        check_kms_key_id(request.kms_key_id)
    check_destination_url(url, command="sm bucket create", new_bucket=True, schemes=("s3",))
    scheme, bucket, _ = split_url(url)
    if scheme != "s3":
        raise ConfigError(f"{url}: sm bucket create makes s3:// buckets",
                          hint=f"sm bucket create s3://{bucket or 'BUCKET'}/")
    check_options = replace(options, retention_mode=request.retention_mode,
                            retention_days=request.retention_days if request.object_lock
                            else None)
    destination = S3Destination(f"s3://{bucket}/", check_options)
    try:
        return _create_or_complete(destination, request, options)
    except SmError:
        raise
    except Exception as exc:  # credentials, profile, network: one line, never a traceback
        raise _failed(destination, exc, "bucket setup") from None
    finally:
        destination.close()


def _create_or_complete(destination: S3Destination, request: BucketRequest,
                        options: DestinationOptions) -> BucketReport:
    region = options.region or destination.client.meta.region_name or "us-east-1"
    exists = _bucket_exists(destination)
    report = BucketReport(bucket=destination.bucket, region=region, created=not exists)
    if exists:
        _complete_existing(destination, request, report)
    else:
        _create(destination, request, region, report)
    # without --expected-owner the owner line says nothing about the new bucket
    report.checks = [c for c in destination.settings_checks()
                     if c.name != "owner_condition" or options.expected_owner]
    return report


def _bucket_exists(destination: S3Destination) -> bool:
    """True when the bucket exists and is ours; raises when it is someone else's."""
    try:
        destination.client.head_bucket(Bucket=destination.bucket)
        return True
    except Exception as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return False
        if code in ("403", "AccessDenied", "Forbidden"):
            raise ConfigError(
                f"bucket {destination.bucket} exists but is not yours to use (owned by another"
                " account, or these credentials may not read it)",
                hint="choose another bucket name, or check --profile/--role-arn and"
                " --expected-owner") from None
        raise _failed(destination, exc, "check for the bucket") from None


def _create(destination: S3Destination, request: BucketRequest, region: str,
            report: BucketReport) -> None:
    client, bucket = destination.client, destination.bucket
    arguments: dict[str, Any] = {"Bucket": bucket, "ObjectOwnership": "BucketOwnerEnforced"}
    if region != "us-east-1":
        arguments["CreateBucketConfiguration"] = {"LocationConstraint": region}
    if request.object_lock:
        arguments["ObjectLockEnabledForBucket"] = True
    try:
        client.create_bucket(**arguments)
    except Exception as exc:
        code = error_code(exc)
        if code == "BucketAlreadyExists":
            raise ConfigError(f"the bucket name {bucket} is taken by another account",
                              hint="sm bucket create s3://ANOTHER-NAME/") from None
        if code != "BucketAlreadyOwnedByYou":
            raise _failed(destination, exc, "bucket creation") from None
    report.applied.append("created the bucket (ACLs disabled: bucket owner enforced)")
    _block_public_access(destination, report)
    _encrypt(destination, request, report)
    _enable_versioning(destination, report)
    if request.object_lock:
        _lock(destination, request, report)


def _complete_existing(destination: S3Destination, request: BucketRequest,
                       report: BucketReport) -> None:
    """Fill in missing safe settings of an existing bucket; leave set ones alone."""
    client, bucket = destination.client, destination.bucket
    report.notes.append(f"bucket {bucket} already exists and is yours; left its other"
                        " settings as they are")
    block = _read(client.get_public_access_block, bucket, "NoSuchPublicAccessBlockConfiguration")
    flags = (block or {}).get("PublicAccessBlockConfiguration", {})
    if not all(flags.get(flag) for flag in PUBLIC_ACCESS_FLAGS):
        _block_public_access(destination, report)
    encryption = _read(client.get_bucket_encryption, bucket,
                       "ServerSideEncryptionConfigurationNotFoundError")
    if not (encryption or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules"):
        _encrypt(destination, request, report)
    elif request.kms_key_id:
        report.notes.append("default encryption was already set; --kms-key-id not applied")
    versioning = _read(client.get_bucket_versioning, bucket)
    if (versioning or {}).get("Status") != "Enabled":
        _enable_versioning(destination, report)
    if request.object_lock:
        lock = _read(client.get_object_lock_configuration, bucket,
                     "ObjectLockConfigurationNotFoundError")
        config = (lock or {}).get("ObjectLockConfiguration", {})
        if config.get("ObjectLockEnabled") != "Enabled":
            raise ConfigError(
                f"bucket {bucket} exists without object lock; sm does not turn object lock"
                " on for an existing bucket",
                hint=f"sm bucket create s3://NEW-BUCKET/ --object-lock --retention-days"
                f" {request.retention_days or 'N'}")
        if request.retention_days and not config.get("Rule"):
            _lock(destination, request, report)
        elif request.retention_days:
            report.notes.append("object lock already has a default retention; left as is")


def _read(call: Any, bucket: str, *missing_codes: str) -> dict[str, Any] | None:
    try:
        return call(Bucket=bucket)
    except Exception as exc:
        if error_code(exc) in missing_codes:
            return None
        raise


def _block_public_access(destination: S3Destination, report: BucketReport) -> None:
    try:
        destination.client.put_public_access_block(
            Bucket=destination.bucket,
            PublicAccessBlockConfiguration={flag: True for flag in PUBLIC_ACCESS_FLAGS})
    except Exception as exc:
        raise _failed(destination, exc, "blocking public access") from None
    report.applied.append("blocked all public access (all four flags)")


def _encrypt(destination: S3Destination, request: BucketRequest, report: BucketReport) -> None:
    if request.kms_key_id:
        default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": request.kms_key_id}
        rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": default,
                                "BucketKeyEnabled": True}
        what = f"default encryption SSE-KMS with {request.kms_key_id}"
    else:
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        what = "default encryption SSE-S3 (AES256)"
    try:
        destination.client.put_bucket_encryption(
            Bucket=destination.bucket,
            ServerSideEncryptionConfiguration={"Rules": [rule]})
    except Exception as exc:
        raise _failed(destination, exc, "setting default encryption") from None
    report.applied.append(what)


def _enable_versioning(destination: S3Destination, report: BucketReport) -> None:
    try:
        destination.client.put_bucket_versioning(
            Bucket=destination.bucket, VersioningConfiguration={"Status": "Enabled"})
    except Exception as exc:
        raise _failed(destination, exc, "enabling versioning") from None
    report.applied.append("versioning enabled")


def _lock(destination: S3Destination, request: BucketRequest, report: BucketReport) -> None:
    config: dict[str, Any] = {"ObjectLockEnabled": "Enabled"}
    if request.retention_days:
        config["Rule"] = {"DefaultRetention": {"Mode": request.retention_mode.upper(),
                                               "Days": request.retention_days}}
    try:
        destination.client.put_object_lock_configuration(
            Bucket=destination.bucket, ObjectLockConfiguration=config)
    except Exception as exc:
        raise _failed(destination, exc, "configuring object lock") from None
    if request.retention_days:
        report.applied.append(f"object lock with default retention {request.retention_mode}"
                              f" {request.retention_days} days")
    else:
        report.applied.append("object lock enabled (no default retention)")


def _failed(destination: S3Destination, exc: Exception, action: str) -> DestinationError:
    code = error_code(exc)
    hint = destination.hint_for(exc)
    if code == "InvalidBucketName":
        hint = "bucket names are 3-63 lowercase letters, digits, dots and hyphens"
    elif code in ("AccessDenied", "403"):
        hint = ("run sm bucket create as an identity allowed to administer buckets"
                " (s3:CreateBucket, s3:PutBucket*, s3:PutEncryptionConfiguration);"
                " the archiver itself needs only what `sm policy` prints")
    return DestinationError(f"{action} for s3://{destination.bucket} failed: {describe(exc)}",
                            hint=hint)


# --------------------------------------------------------------------------- IAM documents


def _partition(region: str | None) -> str:
    if region and region.startswith("cn-"):
        return "aws-cn"
    if region and region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


# What legal holds and `sm retention extend` call on an object version (`sm policy --holds`):
# the hold and the retention, each read and written; HeadObject of a version reads them.
HOLD_ACTIONS = ["s3:PutObjectLegalHold", "s3:GetObjectLegalHold", "s3:PutObjectRetention",
                "s3:GetObjectRetention", "s3:GetObjectVersion"]


def identity_policy(url: str, *, kms_key_arn: str | None = None, retention: bool = False,
                    region: str | None = None, read_only: bool = False,
                    holds: bool = False) -> dict[str, Any]:
    """The least-privilege IAM identity policy for archiving to `url`.

    Only what `sm run`, `sm connect`/`verify`, `find --remote`, `fetch` and `index rebuild`
    call: put/get objects under the prefix, delete only connect test objects under
    `{prefix}_sm/`, list only under the prefix, read the bucket settings verify checks;
    `s3:PutObjectRetention` with retention; with `holds`, placing and lifting legal holds
    and extending retention on object versions (`HOLD_ACTIONS`); KMS use of one key when
    given.

    `read_only` is the policy of an investigator (`sm connect --read-only`): list and read
    under the prefix, the settings `sm verify` reads, and decrypt with the key; no write or
    delete of any kind.
    """
    scheme, bucket, prefix = split_url(url)
    if scheme != "s3":
        raise ConfigError(f"{url}: sm policy prints IAM policies for s3:// destinations")
    if read_only and (retention or holds):
        raise ConfigError("--retention and --holds grant writes; a read-only identity needs"
                          " none", hint=f"sm policy {url} --read-only")
    arn = f"arn:{_partition(region)}:s3:::{bucket}"
    object_actions = ["s3:GetObject"] if read_only else ["s3:PutObject", "s3:GetObject"]
    if retention:
        object_actions.append("s3:PutObjectRetention")
    listing: dict[str, Any] = {"Sid": "ListArchiveKeys", "Effect": "Allow",
                               "Action": "s3:ListBucket", "Resource": arn}
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
    statements: list[dict[str, Any]] = [
        {"Sid": "ReadArchive" if read_only else "WriteAndReadArchive", "Effect": "Allow",
         "Action": object_actions[0] if read_only else object_actions,
         "Resource": f"{arn}/{prefix}*"},
    ]
    if not read_only:
        statements.append({"Sid": "DeleteConnectionTestObjects", "Effect": "Allow",
                           "Action": "s3:DeleteObject",
                           "Resource": f"{arn}/{prefix}{TEST_OBJECT_FOLDER}*"})
    statements += [
        listing,
        {"Sid": "ReadBucketSafetySettings", "Effect": "Allow",
         "Action": SAFETY_SETTINGS_ACTIONS, "Resource": arn},
    ]
    if holds:
        statements.append({"Sid": "LegalHoldsAndRetention", "Effect": "Allow",
                           "Action": HOLD_ACTIONS, "Resource": f"{arn}/{prefix}*"})
    if kms_key_arn:
        check_kms_key_arn(kms_key_arn)
        statements.append({"Sid": "UseArchiveKey", "Effect": "Allow",
                           "Action": ["kms:Decrypt"] if read_only
                           else ["kms:GenerateDataKey", "kms:Decrypt"],
                           "Resource": kms_key_arn})
    return {"Version": IAM_VERSION, "Statement": statements}


def trust_policy(principal_arn: str, external_id: str) -> dict[str, Any]:
    """The role trust policy: only `principal_arn`, and only with `external_id`."""
    if not principal_arn.startswith("arn:"):
        raise ConfigError(f"{principal_arn} is not an ARN",
                          hint="pass --principal arn:aws:iam::ACCOUNT_ID:role/NAME")
    if not external_id:
        raise ConfigError("the trust policy needs an external id",
                          hint="pass --external-id VALUE")
    return {"Version": IAM_VERSION, "Statement": [
        {"Sid": "AssumeForArchiving", "Effect": "Allow", "Principal": {"AWS": principal_arn},
         "Action": "sts:AssumeRole",
         "Condition": {"StringEquals": {"sts:ExternalId": external_id}}},
    ]}
