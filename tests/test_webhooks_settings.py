"""Provider webhook settings (SPEC 9.3, 9.6): per project over the top level, secrets only by
`*_file` or `*_env` (an inline secret is refused), `SM_PROVIDERS` as JSON, `orphan_event_ttl`
as a duration; `make_receiver` is None when no project configures a provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from stored_messages_cli.clock import FakeClock
from stored_messages_cli.config.providers import TwilioSettings
from stored_messages_cli.config.settings import load_settings
from stored_messages_cli.errors import ConfigError
from stored_messages_cli.spool import Spool
from stored_messages_cli.webhooks import configured_providers, make_receiver

PROJECT_TABLE = '[projects."12345"]\nurl = "file:///tmp/archive/"\n'


def _settings(home: Path, text: str):  # type: ignore[no-untyped-def]
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)
    return load_settings(home / "config.toml")


def test_a_project_table_is_merged_over_the_top_level(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 'orphan_event_ttl = "3d"\n'
                         '[providers.twilio]\nauth_token_file = "/run/secrets/twilio"\n'
                         'public_url = "https://default.example/hook"\n' + PROJECT_TABLE +
                         '[projects."12345".providers.twilio]\n'
                         'public_url = "https://hooks.example/v1/providers/twilio/12345"\n')
    assert settings.orphan_event_ttl == 3 * 86400
    chosen = configured_providers(settings)["12345"]["twilio"]
    assert chosen == TwilioSettings(auth_token_file="/run/secrets/twilio",
                                    public_url="https://hooks.example/v1/providers/twilio/12345")


@pytest.mark.parametrize("table", [
    '[projects."12345".providers.twilio]\nauth_token = "AC-secret"\n',
    '[projects."12345".providers.mailgun]\nsigning_key = "key-1"\n',
    '[projects."12345".providers.postmark]\npassword = "pw"\n',
    '[projects."12345".providers.nosuch]\nx = 1\n'])
def test_an_inline_secret_or_unknown_provider_is_refused(tmp_path: Path, table: str) -> None:
    with pytest.raises(ConfigError):
        _settings(tmp_path, PROJECT_TABLE + table)


def test_a_secret_needs_exactly_one_source(tmp_path: Path) -> None:
    settings = _settings(tmp_path, PROJECT_TABLE + '[projects."12345".providers.mailgun]\n'
                         'signing_key_file = "/a"\nsigning_key_env = "B"\n')
    with pytest.raises(ConfigError, match="exactly one"):
        configured_providers(settings)


def test_providers_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    monkeypatch.setenv("SM_PROVIDERS", '{"ses": {"trust_store": "/etc/sm/sns"}}')
    monkeypatch.setenv("SM_ORPHAN_EVENT_TTL", "12h")
    settings = _settings(tmp_path, PROJECT_TABLE)
    assert settings.orphan_event_ttl == 12 * 3600
    assert configured_providers(settings)["12345"]["ses"].trust_store == "/etc/sm/sns"  # type: ignore[attr-defined]


def test_no_receiver_without_a_provider(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "home", PROJECT_TABLE)
    with Spool(tmp_path / "spool.db", clock=FakeClock()) as spool:
        assert make_receiver(spool, settings, FakeClock()) is None


def test_an_unreadable_secret_is_a_500_and_stores_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "home", PROJECT_TABLE + '[projects."12345".providers.twilio]\n'
                         f'auth_token_file = "{tmp_path / "missing"}"\n'
                         'public_url = "https://hooks.example/t"\n')
    with Spool(tmp_path / "spool.db", clock=FakeClock()) as spool:
        receiver = make_receiver(spool, settings, FakeClock())
        assert receiver is not None
        status, answer = receiver.receive("twilio", "12345", b"MessageSid=SM1",
                                          {"x-twilio-signature": "x"}, "")
        assert status == 500 and "auth_token_file" in answer["error"]
        assert spool.deliveries.counts() == {}


def test_confirming_never_visits_a_subscribe_url_outside_the_pattern(tmp_path: Path) -> None:
    import json

    from stored_messages_cli.config.providers import SesSettings
    from stored_messages_cli.webhooks import Receiver
    from tests.support.provider_signing import SnsSigner, subscription

    signer = SnsSigner(tmp_path / "sns")
    document = subscription()
    document["SubscribeURL"] = "http://127.0.0.1:9/confirm"  # signed, but not SNS's
    body = json.dumps(signer.sign(document)).encode()
    with Spool(tmp_path / "spool.db", clock=FakeClock()) as spool:
        receiver = Receiver(spool, {"12345": {"ses": SesSettings(
            trust_store=str(signer.pem_path), confirm_subscriptions=True)}}, FakeClock())
        status, answer = receiver.receive("ses", "12345", body, {}, "")
    assert status == 200
    assert answer["subscription"] == {"type": "SubscriptionConfirmation",
                                      "subscribe_url": "http://127.0.0.1:9/confirm",
                                      "confirmed": False, "error":
                                      "the SubscribeURL is outside subscribe_url_pattern"}
