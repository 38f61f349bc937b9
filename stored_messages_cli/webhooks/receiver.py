"""The framework-free side of `POST /v1/providers/{provider}/{project_id}` (SPEC 9.3).

`sm serve` hands each request to `Receiver.receive` (blocking; header names lower-cased)
and sends back its `(status, document)`: 404 for a provider or project not configured,
401 when verification fails (nothing stored), 400 for a body that cannot be parsed, 200 with
what was recorded. Verified events are kept whole in the spool (`Spool.deliveries`), matched
to their message by the provider's message id, and applied: an event saying the provider
sent the message confirms it, a rejection discards it (`send_failed`). A spool that cannot
write is 503 (the provider retries).
"""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from collections.abc import Mapping
from typing import Any, Protocol

from ..clock import Clock
from ..config.providers import (
    PROVIDER_SETTINGS,
    ProviderSettings,
    SesSettings,
    provider_settings,
)
from ..errors import ConfigError
from ..spool import Spool
from ..spool.deliveries import FAILED, SENT
from ..spool.delivery_rows import NewProviderEvent
from ..spool.store import SpoolError
from .events import MAX_AGE, SENT_KINDS, Kind, Refused, Unreadable, Verified
from .mailgun import MailgunVerifier
from .postmark import PostmarkVerifier
from .sendgrid import SendgridVerifier
from .ses import SesVerifier
from .twilio import TwilioVerifier

log = logging.getLogger("sm.webhooks")

MAX_BODY = 1024 * 1024  # bytes: no provider sends a larger webhook
SUBSCRIBE_TIMEOUT = 10.0  # seconds to confirm an SNS subscription (when enabled)


class Verifier(Protocol):
    """One provider's check of a request and reading of its events."""

    name: str

    def verify(self, body: bytes, headers: Mapping[str, str], url: str, now: float
               ) -> Verified:
        """The request's events and what verified them; Refused or Unreadable otherwise."""
        ...


VERIFIERS: dict[str, Any] = {"ses": SesVerifier, "sendgrid": SendgridVerifier,
                             "twilio": TwilioVerifier, "mailgun": MailgunVerifier,
                             "postmark": PostmarkVerifier}


def configured_providers(settings: Any) -> dict[str, dict[str, ProviderSettings]]:
    """project id -> provider name -> its settings, for every project that configures at
    least one provider (its own table merged over the top level's). ConfigError when a
    table is incomplete or wrong."""
    defaults = getattr(settings, "providers", None) or {}
    found: dict[str, dict[str, ProviderSettings]] = {}
    for project_id, project in (getattr(settings, "projects", None) or {}).items():
        own = getattr(project, "providers", None) or {}
        for name in PROVIDER_SETTINGS:
            chosen = provider_settings(name, defaults.get(name), own.get(name))
            if chosen is not None:
                found.setdefault(str(project_id), {})[name] = chosen
    return found


def make_receiver(spool: Spool, settings: Any, clock: Clock) -> Receiver | None:
    """The receiver `sm serve` routes provider webhooks to; None when no project
    configures a provider."""
    providers = configured_providers(settings)
    if not providers:
        return None
    return Receiver(spool, providers, clock)


class Receiver:
    """Verifies provider webhooks and records their events in the spool."""

    def __init__(self, spool: Spool, providers: Mapping[str, Mapping[str, ProviderSettings]],
                 clock: Clock) -> None:
        self.spool = spool
        self.clock = clock
        self.verifiers: dict[tuple[str, str], Verifier] = {
            (project_id, name): VERIFIERS[name](chosen)
            for project_id, by_name in providers.items() for name, chosen in by_name.items()}
        self.settings = {(project_id, name): chosen for project_id, by_name in providers.items()
                         for name, chosen in by_name.items()}

    def receive(self, provider: str, project_id: str, body: bytes, headers: Mapping[str, str],
                url: str) -> tuple[int, dict[str, Any]]:
        """Answer one webhook request: (HTTP status, JSON document)."""
        verifier = self.verifiers.get((project_id, provider))
        if verifier is None:
            what = "provider" if provider not in VERIFIERS else "provider for this project"
            return 404, {"error": f"no {what} {provider!r} is configured for project"
                         f" {project_id!r}"}
        if len(body) > MAX_BODY:
            return 413, {"error": f"the body is over {MAX_BODY} bytes"}
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        now = self.clock.now()
        try:
            verified = verifier.verify(body, lowered, url, now)
            token = verified.notes.get("replay_token")
            if token is not None and self.spool.deliveries.replayed(
                    provider, str(token), now - 2 * MAX_AGE):
                raise Refused("this request's token was seen before (a replay)")
        except Refused as exc:
            log.warning("refused a %s webhook for project %s: %s", provider, project_id, exc)
            return 401, {"error": f"verification failed: {exc}"}
        except Unreadable as exc:
            return 400, {"error": f"unreadable {provider} webhook: {exc}"}
        except ConfigError as exc:
            log.error("the %s webhook of project %s cannot be checked: %s", provider,
                      project_id, exc)
            return 500, {"error": f"the {provider} settings cannot be used: {exc}"}
        except SpoolError as exc:
            return 503, {"error": f"the spool cannot write: {exc}"}
        try:
            answer = self._record(provider, project_id, body, verified)
        except SpoolError as exc:  # nothing answered 200: the provider sends it again
            log.error("a verified %s webhook could not be kept: %s", provider, exc)
            return 503, {"error": f"the spool cannot write: {exc}"}
        if verified.notes.get("subscribe_url") is not None:
            answer["subscription"] = self._subscription(project_id, verified)
        return 200, answer

    def _record(self, provider: str, project_id: str, body: bytes, verified: Verified
                ) -> dict[str, Any]:
        """Keep each event with the request's bytes; what was recorded, per event."""
        headers = json.dumps(verified.headers_used, sort_keys=True)
        result = json.dumps(verified.result, sort_keys=True)
        new = [NewProviderEvent(project_id, provider, event.event_id,
                                event.provider_message_id, tuple(event.message_ids()),
                                event.kind.value, event.at, body, headers, result,
                                _effect(event.kind))
               for event in verified.events]
        recorded = self.spool.deliveries.record(new) if new else []
        events = [{**event.as_dict(), **outcome}
                  for event, outcome in zip(verified.events, recorded, strict=True)]
        return {"verified": True, "provider": provider, "project_id": project_id,
                "events": events}

    def _subscription(self, project_id: str, verified: Verified) -> dict[str, Any]:
        """An SNS (Un)SubscriptionConfirmation: logged, and confirmed only when the operator
        enabled `confirm_subscriptions` and the SubscribeURL is SNS's."""
        url = str(verified.notes["subscribe_url"])
        chosen = self.settings[(project_id, "ses")]
        assert isinstance(chosen, SesSettings)
        answer: dict[str, Any] = {"type": verified.notes.get("sns_type"),
                                  "subscribe_url": url, "confirmed": False}
        log.warning("SNS %s for project %s: SubscribeURL %s", answer["type"], project_id, url)
        if verified.notes.get("sns_type") != "SubscriptionConfirmation" or \
                not chosen.confirm_subscriptions:
            return answer
        if not re.match(chosen.subscribe_url_pattern, url):
            answer["error"] = "the SubscribeURL is outside subscribe_url_pattern"
            return answer
        try:
            with urllib.request.urlopen(url, timeout=SUBSCRIBE_TIMEOUT) as response:  # noqa: S310 - https, SNS's pattern
                answer["confirmed"] = 200 <= response.status < 300
        except OSError as exc:
            answer["error"] = f"confirming failed: {exc}"
        return answer


def _effect(kind: Kind) -> str | None:
    """What an event of `kind` does to a message awaiting confirmation."""
    if kind in SENT_KINDS:
        return SENT
    if kind == Kind.REJECTED:
        return FAILED
    return None
