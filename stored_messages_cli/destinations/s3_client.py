"""The boto3 session and S3 client an S3 destination uses, and what it reads of their errors.

The client has botocore's standard-mode retries without the client-wide retry quota, sends
PUT bodies without `Expect: 100-continue`, adds the bucket-owner condition to every call that
accepts it, and only talks to an endpoint that obeys the HTTPS / loopback rule, wherever the
endpoint comes from (--endpoint-url, AWS_ENDPOINT_URL*, a profile). With --role-arn the
credentials come from STS AssumeRole, refreshed by botocore before they expire. boto3 is
imported only when an S3 destination is opened.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import DestinationOptions, check_endpoint

RETRY_MAX_ATTEMPTS = 3
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0


def error_code(exc: Any) -> str:
    """The S3 error code of a botocore ClientError ('' for other exceptions)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def timeout_from_env(name: str, default: float) -> float:
    """Seconds from an environment variable (e.g. SM_S3_READ_TIMEOUT), else `default`."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{name} must be more than 0 seconds")
    return value


_model_loader: Any = None  # botocore's data loader, shared by every session this process makes


def botocore_session(profile: str | None) -> Any:
    """A new botocore session for `profile` (its own credentials and configuration) whose
    data loader, the service models read from botocore's JSON files, is this process's one:
    a probe drops the client for fresh credentials (`S3Destination.refresh_credentials`), and
    the new client need not read and parse those files again (0.1-0.7 s of CPU each time)."""
    import botocore.session  # loads on first S3 use, not at start-up

    global _model_loader
    session = botocore.session.Session(profile=profile)
    if _model_loader is None:
        _model_loader = session.get_component("data_loader")
    else:
        session.register_component("data_loader", _model_loader)
    return session


def make_session(options: DestinationOptions) -> Any:
    """A boto3 session for `options`: the standard credential chain (with --profile), or,
    with --role-arn, refreshable credentials from STS AssumeRole made with that chain.

    The role's credentials are botocore's own `DeferredRefreshableCredentials`: fetched on
    first use and fetched again by botocore shortly before they expire.
    """
    # botocore loads on first S3 use, not at start-up
    from botocore.credentials import (
        AssumeRoleCredentialFetcher,
        CredentialProvider,
        CredentialResolver,
        DeferredRefreshableCredentials,
    )

    if not options.role_arn:
        return _boto3_session(botocore_session(options.profile), options.region)
    source = botocore_session(options.profile)
    if options.region:
        source.set_config_variable("region", options.region)
    # The role's credentials come back from STS: its endpoint obeys the same rule as S3's.
    sts = source.create_client("sts", region_name=options.region)
    try:
        check_endpoint(sts.meta.endpoint_url, options.allow_insecure_endpoint,
                       source=configured_endpoint_source("sts", options.profile))
    finally:
        sts.close()
    source_credentials = source.get_credentials()
    if source_credentials is None:
        raise ConfigError("no AWS credentials found to assume the role with",
                          hint="set AWS_PROFILE (or --profile) or AWS_ACCESS_KEY_ID/"
                          "AWS_SECRET_ACCESS_KEY, then try again")
    extra_args = {"RoleSessionName": f"sm-{secrets.token_hex(6)}"}
    if options.external_id:
        extra_args["ExternalId"] = options.external_id
    fetcher = AssumeRoleCredentialFetcher(
        client_creator=source.create_client, source_credentials=source_credentials,
        role_arn=options.role_arn, extra_args=extra_args)
    credentials = DeferredRefreshableCredentials(
        refresh_using=fetcher.fetch_credentials, method="assume-role")

    class AssumedRoleProvider(CredentialProvider):
        METHOD = "assume-role"

        def load(self) -> Any:
            """The role's refreshable credentials."""
            return credentials

    target = botocore_session(options.profile)
    if options.region:
        target.set_config_variable("region", options.region)
    target.register_component("credential_provider",
                              CredentialResolver(providers=[AssumedRoleProvider()]))
    return _boto3_session(target, options.region)


def _boto3_session(session: Any, region: str | None) -> Any:
    """The boto3 session on a `botocore_session`. boto3 adds its own data folder to the
    loader's search paths for each session: with one loader shared, once is enough."""
    import boto3  # loads on first S3 use, not at start-up

    made = boto3.session.Session(botocore_session=session, region_name=region)
    paths = session.get_component("data_loader").search_paths
    paths[:] = list(dict.fromkeys(paths))
    return made


def configured_endpoint_source(service: str, profile: str | None) -> str:
    """Where botocore found an endpoint that no --endpoint-url gave: the environment variable
    or the profile's `endpoint_url` (for messages that blame what the operator must change)."""
    for name in (f"AWS_ENDPOINT_URL_{service.upper()}", "AWS_ENDPOINT_URL"):
        if os.environ.get(name):
            return name
    name = profile or os.environ.get("AWS_PROFILE") or "default"
    return f"the endpoint_url of AWS profile {name} (AWS config file)"


def _is_aws_endpoint(endpoint_url: str) -> bool:
    host = (urlsplit(endpoint_url).hostname or "").lower()
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


def resolved_endpoint(options: DestinationOptions, session: Any = None) -> str:
    """The S3 endpoint the SDK will really use for `options`, checked against the HTTPS /
    loopback rule (SPEC 7).

    Besides --endpoint-url, botocore reads `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL` and a
    profile's `endpoint_url` (services or top level) from its configuration; whichever wins
    is what `client.meta.endpoint_url` says, so that is what is checked, never the option.
    """
    # boto3/botocore load on first S3 use, not at start-up
    import boto3

    session = session or boto3.session.Session(profile_name=options.profile,
                                               region_name=options.region)
    probe = session.client("s3", endpoint_url=options.endpoint_url)
    try:
        endpoint = str(probe.meta.endpoint_url)
    finally:
        probe.close()
    source = None if options.endpoint_url else configured_endpoint_source("s3",
                                                                          options.profile)
    check_endpoint(endpoint, options.allow_insecure_endpoint, source=source)
    return endpoint


@dataclass(frozen=True)
class Transport:
    """How the client's connections check TLS and keep alive: resolved once and given both
    to the client and to the lean PUT's own pool (`s3_put`), so the two always agree."""

    verify: bool | str  # True (botocore's default CA bundle) or a CA bundle's path
    tcp_keepalive: bool


def transport_settings(options: DestinationOptions) -> Transport:
    """The CA bundle and TCP keep-alive botocore would take for `options`: `ca_bundle`
    (AWS_CA_BUNDLE or the profile), else REQUESTS_CA_BUNDLE, else its default bundle; and
    `tcp_keepalive` (AWS_TCP_KEEPALIVE or the profile)."""
    # boto3/botocore load on first S3 use, not at start-up
    import botocore.session

    source = botocore.session.Session(profile=options.profile)
    ca_bundle = source.get_config_variable("ca_bundle")
    verify = ca_bundle if ca_bundle is not None else os.environ.get("REQUESTS_CA_BUNDLE", True)
    return Transport(verify, bool(source.get_config_variable("tcp_keepalive")))


def make_s3_client(options: DestinationOptions, session: Any = None,
                   transport: Transport | None = None) -> Any:
    """An S3 client with standard-mode retries (no retry quota) and the owner condition.

    Raises ConfigError when the endpoint it resolves to (from any source) is not allowed.
    """
    # boto3/botocore load on first S3 use, not at start-up
    from botocore.config import Config

    session = session or make_session(options)
    transport = transport or transport_settings(options)
    endpoint = resolved_endpoint(options, session)
    custom = options.endpoint_url or not _is_aws_endpoint(endpoint)
    config = Config(
        retries={"mode": "standard", "max_attempts": RETRY_MAX_ATTEMPTS},
        connect_timeout=timeout_from_env("SM_S3_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT),
        read_timeout=timeout_from_env("SM_S3_READ_TIMEOUT", DEFAULT_READ_TIMEOUT),
        max_pool_connections=max(10, options.max_connections),
        s3={"addressing_style": "path"} if custom else None,
        tcp_keepalive=transport.tcp_keepalive,
    )
    client = session.client("s3", endpoint_url=options.endpoint_url, config=config,
                            verify=transport.verify)
    if client.meta.endpoint_url != endpoint:  # never expected; never trust an unchecked one
        check_endpoint(client.meta.endpoint_url, options.allow_insecure_endpoint,
                       source=configured_endpoint_source("s3", options.profile))
    disable_retry_quota(client, RETRY_MAX_ATTEMPTS)
    skip_expect_continue(client)
    if options.expected_owner:
        add_owner_condition(client, options.expected_owner)
    return client


def skip_expect_continue(client: Any) -> None:
    """Send PUT bodies at once instead of asking first (`Expect: 100-continue`).

    botocore adds the header to every S3 PUT with a body; each archived object, manifest or
    access record is a few kilobytes, so waiting for the go-ahead costs a whole round trip per
    message on real S3 and saves nothing. Every other guarantee of the request (conditions,
    checksums, signing) stays.
    """
    # boto3/botocore load on first S3 use, not at start-up
    from botocore.handlers import add_expect_header

    client.meta.events.unregister("before-call.s3", add_expect_header)


class _UnlimitedRetryQuota:
    """A retry quota that never runs dry (see `disable_retry_quota`)."""

    def acquire(self, capacity_amount: int) -> bool:
        """Always grant the retry."""
        return True

    def release(self, capacity_amount: int) -> None:
        """Nothing to give back."""


def standard_retry_policy(service: str, max_attempts: int) -> tuple[Any, Any]:
    """botocore's standard-mode retry policy for `service` (its retry conditions and its
    exponential backoff) and the throttling detector it uses."""
    # boto3/botocore load on first S3 use, not at start-up
    from botocore.retries import standard

    throttling = standard.ThrottlingErrorDetector(standard.RetryEventAdapter())
    policy = standard.RetryPolicy(
        retry_checker=standard.StandardRetryConditions(max_attempts=max_attempts),
        retry_backoff=standard.ExponentialBackoff(service_name=service,
                                                  throttling_detector=throttling),
    )
    return policy, throttling


def disable_retry_quota(client: Any, max_attempts: int) -> None:
    """Keep botocore's standard retry mode but without its client-wide retry quota.

    After a long outage the quota is spent and every later call fails at once without its
    quick retries; the archiver has its own slow schedule for outages, so the quota only
    hurts. This swaps the `needs-retry` handler that
    `botocore.retries.standard.register_retry_handler` installed for one built from the same
    botocore parts, with a quota that never runs dry.
    """
    # boto3/botocore load on first S3 use, not at start-up
    from botocore.retries import standard

    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.unregister(f"needs-retry.{service}", unique_id=f"retry-config-{service}")
    policy, throttling = standard_retry_policy(service, max_attempts)
    handler = standard.RetryHandler(
        retry_policy=policy,
        retry_event_adapter=standard.RetryEventAdapter(),
        retry_quota=standard.RetryQuotaChecker(_UnlimitedRetryQuota(), throttling),
        service_name=service,
    )
    client.meta.events.register(f"needs-retry.{service}", handler.needs_retry,
                                unique_id=f"retry-config-{service}")


def add_owner_condition(client: Any, account: str) -> None:
    """Send `ExpectedBucketOwner=account` on every S3 operation that accepts it."""

    def add_owner(params: dict[str, Any], model: Any, **_: Any) -> None:
        if "ExpectedBucketOwner" in model.input_shape.members:
            params.setdefault("ExpectedBucketOwner", account)

    client.meta.events.register("before-parameter-build.s3", add_owner,
                                unique_id="sm-expected-bucket-owner")

