"""The safety settings of an S3 bucket, as `sm verify` lines (`S3Destination.checks`).

Owner condition, public access (S3's policy status, ACL grants, the four public access
blocks), default encryption, versioning and object lock (required with retention), each read
with the destination's own client: a setting the identity may not read (403) or the store
does not implement (501 NotImplemented) is a warning "cannot read …" (or a failure where
retention depends on it), never a pass and never a traceback.
"""

from __future__ import annotations

from typing import Any

from ..retry import describe
from ..states import CheckStatus
from .base import Check, DestinationOptions, endpoint_check
from .s3_client import error_code

# ACL grantee groups (http://acs.amazonaws.com/groups/global/…) that make a bucket public.
PUBLIC_GRANTEES = {"AllUsers": "everyone", "AuthenticatedUsers": "every AWS account"}
PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                       "RestrictPublicBuckets")


class BucketChecks:
    """The settings checks of one bucket, read through `client`."""

    def __init__(self, client: Any, bucket: str, url: str, options: DestinationOptions,
                 endpoint_url: str | None) -> None:
        self.client = client
        self.bucket = bucket
        self.url = url
        self.options = options
        self.endpoint_url = endpoint_url

    def all(self) -> list[Check]:
        """Owner condition, public access block, default encryption, versioning, object
        lock (required when retention is configured) and the transport."""
        return [
            self._owner_check(),
            self._public_access_check(),
            self._encryption_check(),
            self._versioning_check(),
            *self._object_lock_checks(),
            endpoint_check(self.endpoint_url),
        ]

    def _owner_check(self) -> Check:
        owner = self.options.expected_owner
        if owner:
            return Check("owner_condition", CheckStatus.PASS,
                         f"every request requires the bucket to be owned by {owner}")
        return Check("owner_condition", CheckStatus.WARN,
                     "no expected owner: a same-named bucket in another account would be"
                     " used too", hint=f"sm connect {self.url} --expected-owner ACCOUNT_ID …")

    def read_setting(self, call: str, missing_codes: set[str]) -> tuple[str, Any]:
        """('ok', response) | ('missing', None) | ('unreadable', reason): a setting the
        identity may not read (403) or the store does not implement (501) is unreadable."""
        try:
            response = getattr(self.client, call)(Bucket=self.bucket)
        except Exception as exc:
            if error_code(exc) in missing_codes:
                return "missing", None
            return "unreadable", describe(exc)
        if not isinstance(response, dict):
            return "unreadable", f"unexpected answer to {call}"
        return "ok", response

    def _public_access_check(self) -> Check:
        """Fail when the bucket is public (its policy status or an ACL grant says so) or when
        the public access block is not fully on (it could become public)."""
        state, value = self.read_setting("get_public_access_block",
                                          {"NoSuchPublicAccessBlockConfiguration"})
        fix = (f"aws s3api put-public-access-block --bucket {self.bucket}"
               " --public-access-block-configuration BlockPublicAcls=true,"
               "IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true")
        exposures = self._public_exposures()
        if exposures:
            return Check("public_access", CheckStatus.FAIL, "the bucket is public: "
                         + "; ".join(exposures) + "; the bucket holds personal data", hint=fix)
        if state == "unreadable":
            return Check("public_access", CheckStatus.WARN, f"cannot read the public access block"
                         f" ({value})", hint=f"sm policy {self.url}")
        config = (value or {}).get("PublicAccessBlockConfiguration", {})
        open_flags = [flag for flag in PUBLIC_ACCESS_FLAGS if not config.get(flag)]
        if not open_flags:
            return Check("public_access", CheckStatus.PASS, "all four public access blocks are on")
        if state == "missing":
            detail = "no public access block: the bucket can be made public"
        else:
            detail = f"public access not fully blocked ({', '.join(open_flags)} off)"
        return Check("public_access", CheckStatus.FAIL,
                     detail + "; the bucket holds personal data", hint=fix)

    def _public_exposures(self) -> list[str]:
        """What makes the bucket public now: S3's own policy status, and ACL grants to
        everyone or to every AWS account. Settings that cannot be read add nothing."""
        exposures: list[str] = []
        state, value = self.read_setting("get_bucket_policy_status", {"NoSuchBucketPolicy"})
        if state == "ok" and ((value or {}).get("PolicyStatus") or {}).get("IsPublic"):
            exposures.append("S3 reports its bucket policy as public")
        state, value = self.read_setting("get_bucket_acl", set())
        for grant in (value or {}).get("Grants", []) if state == "ok" else []:
            grantee = str((grant.get("Grantee") or {}).get("URI") or "")
            whom = PUBLIC_GRANTEES.get(grantee.rsplit("/", 1)[-1]) if grantee else None
            if whom:
                exposures.append(f"its ACL grants {grant.get('Permission', 'access')} to {whom}")
        return exposures

    def _encryption_check(self) -> Check:
        state, value = self.read_setting("get_bucket_encryption",
                                          {"ServerSideEncryptionConfigurationNotFoundError"})
        if state == "unreadable":
            return Check("encryption", CheckStatus.WARN,
                         f"cannot read default encryption ({value})",
                         hint=f"sm policy {self.url}")
        rules = (value or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        for rule in rules:
            default = rule.get("ApplyServerSideEncryptionByDefault") or {}
            algorithm = default.get("SSEAlgorithm")
            if algorithm == "AES256":
                return Check("encryption", CheckStatus.PASS, "default encryption SSE-S3 (AES256)")
            if algorithm and algorithm.startswith("aws:kms"):
                key = default.get("KMSMasterKeyID") or "the AWS managed key"
                return Check("encryption", CheckStatus.PASS, f"default encryption SSE-KMS ({key})")
        return Check("encryption", CheckStatus.WARN, "no default encryption configured",
                     hint=f"aws s3api put-bucket-encryption --bucket {self.bucket}"
                     " --server-side-encryption-configuration"
                     " '{\"Rules\":[{\"ApplyServerSideEncryptionByDefault\":"
                     "{\"SSEAlgorithm\":\"AES256\"}}]}'")

    def _versioning_check(self) -> Check:
        # object lock (retention) needs versioning: without it, a failure
        fail_or_warn = CheckStatus.FAIL if self.options.retention_days else CheckStatus.WARN
        state, value = self.read_setting("get_bucket_versioning", set())
        if state == "unreadable":
            return Check("versioning", fail_or_warn,
                         f"cannot read versioning ({value})", hint=f"sm policy {self.url}")
        status = (value or {}).get("Status") or "never enabled"
        if status == "Enabled":
            return Check("versioning", CheckStatus.PASS, "versioning is enabled")
        return Check("versioning", fail_or_warn,
                     f"versioning is {status.lower()}: a deleted or replaced object cannot be"
                     " recovered",
                     hint=f"aws s3api put-bucket-versioning --bucket {self.bucket}"
                     " --versioning-configuration Status=Enabled")

    def _object_lock_checks(self) -> list[Check]:
        required = bool(self.options.retention_days)
        state, value = self.read_setting("get_object_lock_configuration",
                                          {"ObjectLockConfigurationNotFoundError"})
        if state == "unreadable":
            # e.g. an S3-compatible store without object lock answers 501 NotImplemented
            if not required:
                return [Check("object_lock", CheckStatus.WARN,
                              f"cannot read the object lock configuration ({value})",
                              hint=f"sm policy {self.url}")]
            return [Check("object_lock", CheckStatus.FAIL,
                          f"cannot read the object lock configuration ({value}); retention is"
                          " configured", hint=f"sm policy {self.url}")]
        config = (value or {}).get("ObjectLockConfiguration", {})
        enabled = config.get("ObjectLockEnabled") == "Enabled"
        if not required:
            if enabled:
                return [Check("object_lock", CheckStatus.PASS,
                              f"object lock is on{_default_rule(config)}")]
            return []
        if not enabled:
            return [Check("object_lock", CheckStatus.FAIL,
                          f"retention of {self.options.retention_days} days is configured but"
                          f" the bucket has no object lock",
                          hint=f"sm bucket create s3://NEW-BUCKET/ --object-lock --retention-days"
                          f" {self.options.retention_days}")]
        mode = (self.options.retention_mode or "governance").lower()
        return [Check("object_lock", CheckStatus.PASS,
                      f"object lock is on{_default_rule(config)}; every object is kept"
                      f" {self.options.retention_days} days in {mode} mode")]


def _default_rule(config: dict[str, Any]) -> str:
    rule = (config.get("Rule") or {}).get("DefaultRetention") or {}
    if not rule:
        return ""
    length = f"{rule['Days']} days" if rule.get("Days") else f"{rule.get('Years')} years"
    return f" (default retention {rule.get('Mode', '').lower()} {length})"

