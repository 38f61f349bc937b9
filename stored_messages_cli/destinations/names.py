"""The form of a destination URL, checked locally before any request: the scheme, an absolute
`file:///` path, and bucket or container names the provider itself would refuse.

Every problem is a ConfigError whose hint is the corrected command where one can be guessed;
the CLI shows them as usage errors (exit 2).
"""

from __future__ import annotations

import ipaddress
import os
import re
from urllib.parse import quote, unquote, urlsplit

from ..errors import ConfigError
from .base import refuse_credentials

SCHEMES = ("s3", "gs", "az", "file")
URL_FORMS = "s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, az://CONTAINER/PREFIX or file:///PATH/"

# S3: https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
_S3_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_S3_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_S3_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
# Buckets made in us-east-1 before March 2018 may still have these legacy names.
_S3_LEGACY_NAME = re.compile(r"^(?=.{3,255}$)[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.))*[A-Za-z0-9]$")
# GCS: https://cloud.google.com/storage/docs/buckets#naming
_GCS_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
# Azure: https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
_AZURE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_AZURE_SPECIAL = frozenset({"$root", "$web", "$logs"})

_KMS_KEY_ID = r"(?:mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
_KMS_KEY_ARN = re.compile(
    r"^arn:aws(?:-cn|-us-gov|-iso|-iso-b)?:kms:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:key/"
    + _KMS_KEY_ID + "$")
_KMS_ALIAS_ARN = re.compile(
    r"^arn:aws(?:-cn|-us-gov|-iso|-iso-b)?:kms:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:alias/[\w/-]{1,250}$")
_KMS_ALIAS = re.compile(r"^alias/[\w/-]{1,250}$")
KMS_KEY_ARN_FORM = "arn:aws:kms:REGION:ACCOUNT_ID:key/KEY_ID"


def check_destination_url(url: str, *, command: str = "sm connect", then: str = "",
                          new_bucket: bool = False, schemes: tuple[str, ...] = SCHEMES) -> None:
    """Refuse a destination URL the provider (or sm) would refuse, before any request.

    Hints are `{command} CORRECTED-URL{then}`. `new_bucket` applies the rules for creating a
    bucket (no legacy S3 names); `schemes` narrows the schemes a command takes.
    """
    refuse_credentials(url, "destination URL")  # first: no message may echo a secret
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file" and "://" not in url:  # file:relative/path
        raise ConfigError(f"{url!r} is a relative file URL; sm needs an absolute folder",
                          hint=f"{command} {file_url_for(parts.path)}{then}")
    if not scheme or len(scheme) == 1:  # a bare path (or a Windows drive letter)
        raise ConfigError(f"{url!r} is not a URL: a local folder is file:///PATH/ (three"
                          " slashes and an absolute path), a bucket s3://BUCKET/PREFIX",
                          hint=f"{command} {file_url_for(url)}{then}")
    if scheme not in schemes:
        forms = URL_FORMS if schemes == SCHEMES else "s3://BUCKET/PREFIX"
        raise ConfigError(f"{url!r}: unsupported scheme {scheme + '://'!r} (use {forms})",
                          hint=f"{command} {forms.split(',')[0]}{then}")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"{url!r} is a relative file URL ({parts.netloc!r} would be read as a host"
                " name); a folder URL has three slashes and an absolute path",
                hint=f"{command} {file_url_for(parts.netloc + parts.path)}{then}")
        return
    name = parts.netloc
    what = "container" if scheme == "az" else "bucket"
    if not name:
        raise ConfigError(f"{url!r} has no {what} name",
                          hint=f"{command} {scheme}://{what.upper()}/PREFIX{then}")
    problem = {"s3": s3_bucket_problem, "gs": gcs_bucket_problem,
               "az": azure_container_problem}[scheme](name, new_bucket=new_bucket)
    if problem:
        raise ConfigError(f"{name!r} is not a valid {_PROVIDER[scheme]} {what} name: {problem}",
                          hint=_NAME_RULES[scheme])


_PROVIDER = {"s3": "S3", "gs": "Cloud Storage", "az": "Azure"}
_NAME_RULES = {
    "s3": "use 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a"
          " letter or digit",
    "gs": "use 3-63 lowercase letters, digits, hyphens, underscores and dots, starting and"
          " ending with a letter or digit",
    "az": "use 3-63 lowercase letters, digits and single hyphens, starting and ending with a"
          " letter or digit",
}


def file_url_for(path: str) -> str:
    """The `file:///…/` URL of a (possibly relative) folder path, absolute and with `/`."""
    folder = os.path.abspath(os.path.expanduser(unquote(path) or "."))
    return "file://" + quote(folder.rstrip("/") + "/", safe="/~:@!$&'()*+,;=-._")


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def s3_bucket_problem(name: str, *, new_bucket: bool = False) -> str | None:
    """Why S3 would refuse `name` as a bucket name, or None.

    An existing bucket (`new_bucket=False`) may have a legacy us-east-1 name (capitals,
    underscores, up to 255 characters); a new one may not.
    """
    if not new_bucket and _S3_LEGACY_NAME.match(name) and not _S3_NAME.match(name):
        return None
    if not 3 <= len(name) <= 63:
        return f"it has {len(name)} characters (3 to 63 allowed)"
    if not _S3_NAME.match(name):
        return "only lowercase letters, digits, dots and hyphens, starting and ending with a" \
               " letter or digit"
    if ".." in name:
        return "two dots in a row"
    if _is_ip_address(name):
        return "it looks like an IP address"
    for prefix in _S3_RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"the prefix {prefix!r} is reserved"
    for suffix in _S3_RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"the suffix {suffix!r} is reserved"
    return None


def gcs_bucket_problem(name: str, *, new_bucket: bool = False) -> str | None:
    """Why Cloud Storage would refuse `name` as a bucket name, or None."""
    if not 3 <= len(name) <= 222:
        return f"it has {len(name)} characters (3 to 63, or up to 222 with dots)"
    if not _GCS_NAME.match(name):
        return "only lowercase letters, digits, hyphens, underscores and dots, starting and" \
               " ending with a letter or digit"
    if "." not in name and len(name) > 63:
        return f"it has {len(name)} characters (63 at most without dots)"
    if any(len(part) > 63 or not part for part in name.split(".")):
        return "each dot-separated part must have 1 to 63 characters"
    if _is_ip_address(name):
        return "it looks like an IP address"
    if name.startswith("goog") or "google" in name:
        return "names starting with 'goog' or containing 'google' are reserved"
    return None


def azure_container_problem(name: str, *, new_bucket: bool = False) -> str | None:
    """Why Azure Blob Storage would refuse `name` as a container name, or None."""
    if name in _AZURE_SPECIAL:
        return None
    if not 3 <= len(name) <= 63:
        return f"it has {len(name)} characters (3 to 63 allowed)"
    if not _AZURE_NAME.match(name):
        return "only lowercase letters, digits and single hyphens, starting and ending with a" \
               " letter or digit"
    return None


def check_kms_key_arn(value: str) -> None:
    """Refuse anything but a KMS key ARN (what an IAM policy's Resource must name)."""
    if not _KMS_KEY_ARN.match(value):
        shown = value if len(value) <= 120 else value[:117] + "..."
        also = (" (an alias cannot be granted in a policy; use the key's ARN:"
                " aws kms describe-key --key-id ALIAS)" if "alias" in value else "")
        raise ConfigError(f"{shown!r} is not a KMS key ARN{also}",
                          hint=f"--kms-key-arn {KMS_KEY_ARN_FORM}")


def check_kms_key_id(value: str) -> None:
    """Refuse a value S3 cannot take as a bucket's default KMS key: a key id, a key ARN, an
    alias (`alias/NAME`) or an alias ARN."""
    if (re.fullmatch(_KMS_KEY_ID, value) or _KMS_KEY_ARN.match(value)
            or _KMS_ALIAS_ARN.match(value) or _KMS_ALIAS.match(value)):
        return
    shown = value if len(value) <= 120 else value[:117] + "..."
    raise ConfigError(f"{shown!r} is not a KMS key id, key ARN or alias",
                      hint=f"--kms-key-id {KMS_KEY_ARN_FORM} (or alias/NAME)")
