"""Provider webhook settings (`[projects."ID".providers.NAME]`, SPEC 9.3) as pydantic models.

Secrets never sit in config.toml (SPEC 7): each is named by a `*_file` key (a file holding
it) or a `*_env` key (an environment variable holding it). Unknown keys are refused, so a
secret written inline (`auth_token = "…"`) is an error, not a silent default.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from ..errors import ConfigError

# SNS signing certificates (SPEC 9.3): what `SigningCertURL` must look like by default.
SNS_CERT_URL_PATTERN = (r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"
                        r"SimpleNotificationService-[0-9a-f]+\.pem$")
# Where a SubscriptionConfirmation may send us (only when the operator enables confirming).
SNS_SUBSCRIBE_URL_PATTERN = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/\?"


class _ProviderSettings(BaseModel):
    """What every provider's table shares: no unknown key, a way to read its secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    SECRET: ClassVar[str | None] = None  # the secret's name, e.g. "auth_token"

    @model_validator(mode="after")
    def _one_source(self) -> _ProviderSettings:
        if self.SECRET is None:
            return self
        given = [name for name in (f"{self.SECRET}_file", f"{self.SECRET}_env")
                 if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(f"set exactly one of {self.SECRET}_file (a file holding it) or"
                             f" {self.SECRET}_env (an environment variable holding it)")
        return self

    def secret(self) -> bytes:
        """The secret, read now (a file's text without its final newline, or the variable's);
        ConfigError when it cannot be read."""
        assert self.SECRET is not None
        path = getattr(self, f"{self.SECRET}_file")
        if path:
            try:
                value = Path(path).expanduser().read_bytes().rstrip(b"\r\n")
            except OSError as exc:
                raise ConfigError(f"cannot read {self.SECRET}_file {path}: {exc.strerror}",
                                  hint="check the path and its permissions") from None
        else:
            name = getattr(self, f"{self.SECRET}_env")
            value = os.environ.get(name, "").encode()
        if not value:
            raise ConfigError(f"the provider's {self.SECRET} is empty",
                              hint=f"put it in the file or variable {self.SECRET}_file or"
                              f" {self.SECRET}_env names")
        return value


class SesSettings(_ProviderSettings):
    """SES through SNS: certificates from a local trust store, never fetched."""

    trust_store: str  # a PEM file or a folder of PEM files: the SNS signing certificates
    cert_url_pattern: str = SNS_CERT_URL_PATTERN
    topic_arns: list[str] = []  # when set, only these topics are accepted
    confirm_subscriptions: bool = False  # GET a verified SubscribeURL (an outbound call)
    subscribe_url_pattern: str = SNS_SUBSCRIBE_URL_PATTERN

    @field_validator("cert_url_pattern", "subscribe_url_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class SendgridSettings(_ProviderSettings):
    """SendGrid's signed event webhook: the verification key (base64 DER or PEM)."""

    SECRET: ClassVar[str | None] = "public_key"
    public_key_file: str | None = None
    public_key_env: str | None = None


class TwilioSettings(_ProviderSettings):
    """Twilio's `X-Twilio-Signature`: the auth token and the URL Twilio calls."""

    SECRET: ClassVar[str | None] = "auth_token"
    auth_token_file: str | None = None
    auth_token_env: str | None = None
    public_url: str


class MailgunSettings(_ProviderSettings):
    """Mailgun's HMAC-SHA256 webhook signature: the webhook signing key."""

    SECRET: ClassVar[str | None] = "signing_key"
    signing_key_file: str | None = None
    signing_key_env: str | None = None


class PostmarkSettings(_ProviderSettings):
    """Postmark's webhook basic auth: the user name and the password."""

    SECRET: ClassVar[str | None] = "password"
    username: str
    password_file: str | None = None
    password_env: str | None = None


PROVIDER_SETTINGS: dict[str, type[_ProviderSettings]] = {
    "ses": SesSettings, "sendgrid": SendgridSettings, "twilio": TwilioSettings,
    "mailgun": MailgunSettings, "postmark": PostmarkSettings}

ProviderSettings = _ProviderSettings


def check_providers(value: Any) -> dict[str, dict[str, Any]]:
    """A `providers` table: known provider names, each table valid for its provider (the
    tables are kept as given: a project's table is merged over the top level's)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("must be a table of provider tables, e.g. [providers.ses]")
    for name, table in value.items():
        if name not in PROVIDER_SETTINGS:
            raise ValueError(f"unknown provider {name!r} (use {', '.join(PROVIDER_SETTINGS)})")
        if not isinstance(table, dict):
            raise ValueError(f"providers.{name} must be a table")
        known = PROVIDER_SETTINGS[name].model_fields
        for key in table:
            if key not in known:
                raise ValueError(f"unknown key {key!r} in providers.{name} (secrets are"
                                 " named by a *_file or *_env key, never written here)")
    return {name: dict(table) for name, table in value.items()}


def provider_settings(name: str, defaults: dict[str, Any] | None,
                      own: dict[str, Any] | None) -> _ProviderSettings | None:
    """One provider's settings for a project: its own table over the top level's; None when
    neither configures it. ConfigError names what is wrong."""
    if not defaults and not own:
        return None
    merged = {**(defaults or {}), **(own or {})}
    try:
        return PROVIDER_SETTINGS[name].model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or name
        raise ConfigError(f"providers.{name}: {where}: {first['msg']}",
                          hint="the provider settings are listed in docs/providers.md") from None
