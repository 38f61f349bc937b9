"""Provider webhooks (SPEC 9.3): verify a provider's request, keep its events as evidence.

One module per provider (`ses`, `sendgrid`, `twilio`, `mailgun`, `postmark`) verifies with
the provider's documented algorithm and normalises the body to `events.ProviderEvent`s;
`receiver.Receiver` is what `sm serve` calls. No web framework is imported here.
"""

from __future__ import annotations

from .events import Kind, ProviderEvent, Refused, Unreadable, Verified
from .receiver import Receiver, configured_providers, make_receiver

__all__ = ["Kind", "ProviderEvent", "Receiver", "Refused", "Unreadable", "Verified",
           "configured_providers", "make_receiver"]
