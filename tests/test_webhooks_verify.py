"""Provider webhook verification (SPEC 9.3): every provider's documented algorithm with
locally generated keys, and every refusal: wrong signature, tampered body, stale timestamps,
missing headers, an SNS certificate URL outside the trusted pattern."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stored_messages_cli.config.providers import (
    MailgunSettings,
    PostmarkSettings,
    SendgridSettings,
    SesSettings,
    TwilioSettings,
)
from stored_messages_cli.webhooks.events import Kind, Refused, Unreadable
from stored_messages_cli.webhooks.mailgun import MailgunVerifier
from stored_messages_cli.webhooks.postmark import PostmarkVerifier
from stored_messages_cli.webhooks.sendgrid import SendgridVerifier
from stored_messages_cli.webhooks.ses import SesVerifier
from stored_messages_cli.webhooks.twilio import TwilioVerifier, signature
from tests.support.provider_signing import (
    SendgridSigner,
    SnsSigner,
    basic_auth,
    mailgun_body,
    ses_event,
    subscription,
    twilio_form,
    twilio_signature,
)

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.fixture(scope="module")
def sns(tmp_path_factory: pytest.TempPathFactory) -> tuple[SnsSigner, SesVerifier]:
    folder = tmp_path_factory.mktemp("sns-trust")
    signer = SnsSigner(folder)
    return signer, SesVerifier(SesSettings(trust_store=str(folder)))


def _flip(body: bytes, index: int, bit: int) -> bytes:
    data = bytearray(body)
    data[index % len(data)] ^= 1 << bit
    return bytes(data)


# --------------------------------------------------------------------------- SES / SNS


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_signature_versions_verify_and_normalise(sns: tuple[SnsSigner, SesVerifier],
                                                     version: str) -> None:
    signer, verifier = sns
    body = json.dumps(signer.sign(ses_event("Delivery", "0100-ses-1"), version)).encode()
    verified = verifier.verify(body, {}, "", NOW)
    [event] = verified.events
    assert (event.provider_message_id, event.kind, event.at, event.event_id) == (
        "0100-ses-1", Kind.DELIVERED, "2026-11-27T17:00:00Z", "sns-1")
    assert verified.result["method"] == f"sns-signature-v{version}"
    assert verified.result["certificate_sha256"] == signer.cert.fingerprint(
        hashes.SHA256()).hex()


def test_a_signed_sns_body_with_a_duplicated_key_is_unreadable(
        sns: tuple[SnsSigner, SesVerifier]) -> None:
    """Two `Message` fields: one parser would verify the last, another act on the first. The
    body is refused before any signature is trusted, whichever copy is the signed one."""
    signer, verifier = sns
    signed = signer.sign(ses_event("Delivery", "0100-ses-1"))
    forged = json.dumps(ses_event("Bounce", "0100-ses-1")["Message"])
    honest = json.dumps(signed)
    for body in ('{"Message": ' + forged + ", " + honest[1:],
                 honest[:-1] + ', "Message": ' + forged + "}"):
        with pytest.raises(Unreadable, match="duplicate"):
            verifier.verify(body.encode(), {}, "", NOW)
    assert verifier.verify(honest.encode(), {}, "", NOW).events  # the honest copy verifies


@pytest.mark.parametrize(("event_type", "kind"), [
    ("Send", Kind.ACCEPTED), ("Reject", Kind.REJECTED), ("Bounce", Kind.BOUNCED),
    ("Complaint", Kind.COMPLAINED), ("Open", Kind.OPENED), ("Click", Kind.CLICKED),
    ("DeliveryDelay", Kind.OTHER)])
def test_ses_event_types(sns: tuple[SnsSigner, SesVerifier], event_type: str,
                         kind: Kind) -> None:
    signer, verifier = sns
    body = json.dumps(signer.sign(ses_event(event_type, "m-1"))).encode()
    assert verifier.verify(body, {}, "", NOW).events[0].kind == kind


def test_sns_wrong_key_is_refused(sns: tuple[SnsSigner, SesVerifier], tmp_path: Path) -> None:
    _, verifier = sns
    stranger = SnsSigner(tmp_path / "other")  # same URL, a key the trust store lacks
    body = json.dumps(stranger.sign(ses_event("Delivery", "m-1"))).encode()
    with pytest.raises(Refused, match="no certificate"):
        verifier.verify(body, {}, "", NOW)


@pytest.mark.parametrize("url", [
    "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-0123abc.pem",
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abc.pem",
    "https://evil.example/SimpleNotificationService-0123abc.pem",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abc.pem?x=1",
    "https://sns.us-east-1.amazonaws.com/../SimpleNotificationService-0123abc.pem"])
def test_sns_cert_url_outside_the_pattern_is_refused(sns: tuple[SnsSigner, SesVerifier],
                                                      url: str) -> None:
    signer, verifier = sns
    document = ses_event("Delivery", "m-1")
    document["SigningCertURL"] = url
    body = json.dumps(signer.sign(document)).encode()  # a good signature by a trusted key
    with pytest.raises(Refused, match="SigningCertURL"):
        verifier.verify(body, {}, "", NOW)


def test_sns_certificate_out_of_its_validity_is_refused(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    signer = SnsSigner(tmp_path, not_before=datetime(2020, 1, 1, tzinfo=UTC), days=30)
    verifier = SesVerifier(SesSettings(trust_store=str(signer.pem_path)))
    body = json.dumps(signer.sign(ses_event("Delivery", "m-1"))).encode()
    with pytest.raises(Refused):
        verifier.verify(body, {}, "", NOW)


def test_sns_signature_version_and_topic_checks(sns: tuple[SnsSigner, SesVerifier]) -> None:
    signer, verifier = sns
    document = signer.sign(ses_event("Delivery", "m-1"))
    with pytest.raises(Refused, match="SignatureVersion"):
        verifier.verify(json.dumps({**document, "SignatureVersion": "3"}).encode(), {}, "", NOW)
    with pytest.raises(Refused, match="base64"):
        verifier.verify(json.dumps({**document, "Signature": "%%%"}).encode(), {}, "", NOW)
    other_topic = SesVerifier(SesSettings(trust_store=str(signer.pem_path.parent),
                                          topic_arns=["arn:aws:sns:us-east-1:1:other"]))
    with pytest.raises(Refused, match="topic"):
        other_topic.verify(json.dumps(document).encode(), {}, "", NOW)
    with pytest.raises(Unreadable):
        verifier.verify(b"not json", {}, "", NOW)


def test_sns_subscription_confirmation_is_verified_not_an_event(
        sns: tuple[SnsSigner, SesVerifier]) -> None:
    signer, verifier = sns
    body = json.dumps(signer.sign(subscription())).encode()
    verified = verifier.verify(body, {}, "", NOW)
    assert verified.events == []
    assert verified.notes["subscribe_url"].startswith("https://sns.us-east-1.amazonaws.com/?")
    forged = json.loads(body)
    forged["SubscribeURL"] = "https://evil.example/confirm"
    with pytest.raises(Refused):
        verifier.verify(json.dumps(forged).encode(), {}, "", NOW)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["Message", "MessageId", "Timestamp", "TopicArn"]),
       index=st.integers(0, 10_000), bit=st.integers(0, 6))
def test_any_change_to_a_signed_sns_field_is_refused(
        sns: tuple[SnsSigner, SesVerifier], field: str, index: int, bit: int) -> None:
    signer, verifier = sns
    document = signer.sign(ses_event("Delivery", "m-1"))
    value = document[field]
    position = index % len(value)
    changed = value[:position] + chr(ord(value[position]) ^ (1 << bit)) + value[position + 1:]
    if changed == value:
        return
    with pytest.raises((Refused, Unreadable)):
        verifier.verify(json.dumps({**document, field: changed}).encode(), {}, "", NOW)


# --------------------------------------------------------------------------- SendGrid


@pytest.fixture(scope="module")
def sendgrid(tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[SendgridSigner, SendgridVerifier]:
    signer = SendgridSigner()
    key_file = tmp_path_factory.mktemp("sg") / "sendgrid.key"
    key_file.write_bytes(signer.public_b64() + b"\n")
    return signer, SendgridVerifier(SendgridSettings(public_key_file=str(key_file)))


SENDGRID_BODY = json.dumps([
    {"email": "ann@example.com", "timestamp": 1799999990, "event": "processed",
     "sg_event_id": "ev-processed-1", "sg_message_id": "W86EgYT6SQKk.filterdrecv-1.0"},
    {"email": "ann@example.com", "timestamp": 1799999995, "event": "delivered",
     "sg_event_id": "ev-delivered-1", "sg_message_id": "W86EgYT6SQKk.filterdrecv-1.0"},
]).encode()


def test_sendgrid_ecdsa_signature_verifies(
        sendgrid: tuple[SendgridSigner, SendgridVerifier]) -> None:
    signer, verifier = sendgrid
    verified = verifier.verify(SENDGRID_BODY, signer.headers(SENDGRID_BODY, "1799999999"),
                               "", NOW)
    assert [(e.event_id, e.kind, e.at) for e in verified.events] == [
        ("ev-processed-1", Kind.ACCEPTED, "2027-01-15T07:59:50Z"),
        ("ev-delivered-1", Kind.DELIVERED, "2027-01-15T07:59:55Z")]
    assert "W86EgYT6SQKk" in verified.events[0].message_ids()
    assert set(verified.headers_used) == {"x-twilio-email-event-webhook-signature",
                                          "x-twilio-email-event-webhook-timestamp"}


def test_sendgrid_refusals(sendgrid: tuple[SendgridSigner, SendgridVerifier]) -> None:
    signer, verifier = sendgrid
    headers = signer.headers(SENDGRID_BODY, "1799999999")
    with pytest.raises(Refused, match="does not verify"):  # another timestamp, same signature
        verifier.verify(SENDGRID_BODY, {**headers, "x-twilio-email-event-webhook-timestamp":
                                        "1799999998"}, "", NOW)
    with pytest.raises(Refused, match="does not verify"):  # signed by another key
        verifier.verify(SENDGRID_BODY, SendgridSigner().headers(SENDGRID_BODY, "1799999999"),
                        "", NOW)
    for missing in headers:
        with pytest.raises(Refused, match="missing"):
            verifier.verify(SENDGRID_BODY, {k: v for k, v in headers.items() if k != missing},
                            "", NOW)
    stale = signer.headers(SENDGRID_BODY, str(int(NOW) - 16 * 60))
    with pytest.raises(Refused, match="15 minutes"):
        verifier.verify(SENDGRID_BODY, stale, "", NOW)


@settings(max_examples=80, deadline=None)
@given(index=st.integers(0, len(SENDGRID_BODY) - 1), bit=st.integers(0, 7))
def test_any_byte_flip_of_a_signed_sendgrid_body_is_refused(index: int, bit: int) -> None:
    signer = _SIGNER
    headers = signer.headers(SENDGRID_BODY, "1799999999")
    with pytest.raises(Refused):
        _VERIFIER.verify(_flip(SENDGRID_BODY, index, bit), headers, "", NOW)


_SIGNER = SendgridSigner()


class _Key:
    def secret(self) -> bytes:
        return _SIGNER.public_b64()


_VERIFIER = SendgridVerifier(_Key())  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Twilio


def test_twilio_published_request_validator_vector() -> None:
    """Twilio's own example (its request-validator docs and libraries' tests): auth token
    12345 over this URL and form gives GvWf1cFY/Q7PnoempGyD5oXAezc=."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    form = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675310", "Digits": "1234",
            "From": "+14158675310", "To": "+18005551212"}
    assert signature(b"12345", url, list(form.items())) == "GvWf1cFY/Q7PnoempGyD5oXAezc="


@pytest.fixture
def twilio(tmp_path: Path) -> TwilioVerifier:
    token = tmp_path / "twilio.token"
    token.write_text("a-twilio-auth-token\n")
    return TwilioVerifier(TwilioSettings(auth_token_file=str(token),
                                         public_url="https://hooks.example/v1/providers/twilio/12345"))


FORM = {"MessageSid": "SM0123456789abcdef", "MessageStatus": "delivered",
        "AccountSid": "AC1", "To": "+15555550100", "From": "+15555550199",
        "ApiVersion": "2010-04-01"}


def test_twilio_status_callback_verifies(twilio: TwilioVerifier) -> None:
    body = twilio_form(FORM)
    sig = twilio_signature(b"a-twilio-auth-token", twilio.settings.public_url, FORM)
    verified = twilio.verify(body, {"x-twilio-signature": sig}, "http://127.0.0.1/any", NOW)
    [event] = verified.events
    assert (event.provider_message_id, event.kind, event.event_id) == (
        "SM0123456789abcdef", Kind.DELIVERED, "SM0123456789abcdef-delivered")


def test_twilio_refusals(twilio: TwilioVerifier) -> None:
    sig = twilio_signature(b"a-twilio-auth-token", twilio.settings.public_url, FORM)
    with pytest.raises(Refused, match="does not verify"):  # tampered status
        twilio.verify(twilio_form({**FORM, "MessageStatus": "failed"}),
                      {"x-twilio-signature": sig}, "", NOW)
    other_url = twilio_signature(b"a-twilio-auth-token", "https://evil.example/", FORM)
    with pytest.raises(Refused):
        twilio.verify(twilio_form(FORM), {"x-twilio-signature": other_url}, "", NOW)
    wrong_token = twilio_signature(b"another-token", twilio.settings.public_url, FORM)
    with pytest.raises(Refused):
        twilio.verify(twilio_form(FORM), {"x-twilio-signature": wrong_token}, "", NOW)
    with pytest.raises(Refused, match="missing"):
        twilio.verify(twilio_form(FORM), {}, "", NOW)


# --------------------------------------------------------------------------- Mailgun


@pytest.fixture
def mailgun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MailgunVerifier:
    monkeypatch.setenv("TEST_MAILGUN_KEY", "key-mailgun-signing")
    return MailgunVerifier(MailgunSettings(signing_key_env="TEST_MAILGUN_KEY"))


MAILGUN_EVENT = {"event": "delivered", "id": "CPgfbmQMTCKtHW6uIWtuVe",
                 "timestamp": 1799999990.5,
                 "message": {"headers": {"message-id": "<20261127.1@mg.shop.example>"}}}


def test_mailgun_signature_verifies(mailgun: MailgunVerifier) -> None:
    body = mailgun_body(b"key-mailgun-signing", MAILGUN_EVENT, timestamp=int(NOW) - 5,
                        token="t" * 50)
    verified = mailgun.verify(body, {}, "", NOW)
    [event] = verified.events
    assert (event.provider_message_id, event.kind, event.event_id) == (
        "20261127.1@mg.shop.example", Kind.DELIVERED, "CPgfbmQMTCKtHW6uIWtuVe")
    assert verified.notes["replay_token"] == "t" * 50


def test_mailgun_refusals(mailgun: MailgunVerifier) -> None:
    good = json.loads(mailgun_body(b"key-mailgun-signing", MAILGUN_EVENT,
                                   timestamp=int(NOW) - 5, token="t" * 50))
    wrong = mailgun_body(b"another-key", MAILGUN_EVENT, timestamp=int(NOW) - 5, token="t" * 50)
    with pytest.raises(Refused, match="does not verify"):
        mailgun.verify(wrong, {}, "", NOW)
    stale = mailgun_body(b"key-mailgun-signing", MAILGUN_EVENT, timestamp=int(NOW) - 16 * 60,
                         token="u" * 50)
    with pytest.raises(Refused, match="15 minutes"):
        mailgun.verify(stale, {}, "", NOW)
    swapped = {**good, "signature": {**good["signature"], "token": "v" * 50}}
    with pytest.raises(Refused):
        mailgun.verify(json.dumps(swapped).encode(), {}, "", NOW)
    with pytest.raises(Refused, match="no signature"):
        mailgun.verify(json.dumps({"event-data": MAILGUN_EVENT}).encode(), {}, "", NOW)


# --------------------------------------------------------------------------- Postmark


@pytest.fixture
def postmark(tmp_path: Path) -> PostmarkVerifier:
    password = tmp_path / "postmark.password"
    password.write_text("s3cret-pm\n")
    return PostmarkVerifier(PostmarkSettings(username="sm", password_file=str(password)))


POSTMARK_BODY = json.dumps({"RecordType": "Delivery", "MessageID": "883953f4-6105-42a2",
                            "Recipient": "ann@example.com",
                            "DeliveredAt": "2026-11-27T17:00:03.9070259Z"}).encode()


def test_postmark_basic_auth_verifies_and_keeps_no_password(postmark: PostmarkVerifier) -> None:
    verified = postmark.verify(POSTMARK_BODY, {"authorization": basic_auth("sm", "s3cret-pm")},
                               "", NOW)
    [event] = verified.events
    assert (event.provider_message_id, event.kind, event.at) == (
        "883953f4-6105-42a2", Kind.DELIVERED, "2026-11-27T17:00:03.907Z")
    assert "s3cret" not in json.dumps(verified.headers_used)


@pytest.mark.parametrize("auth", [basic_auth("sm", "wrong"), basic_auth("other", "s3cret-pm"),
                                  basic_auth("sm", "s3cret-pm2"), "Bearer s3cret-pm",
                                  "Basic %%%", "Basic c20="])
def test_postmark_wrong_credentials_are_refused(postmark: PostmarkVerifier, auth: str) -> None:
    with pytest.raises(Refused):
        postmark.verify(POSTMARK_BODY, {"authorization": auth}, "", NOW)


TWILIO_BODY = twilio_form(FORM)


@settings(max_examples=80, deadline=None)
@given(index=st.integers(0, len(TWILIO_BODY) - 1), bit=st.integers(0, 6))
def test_any_byte_flip_of_a_signed_twilio_form_is_refused(index: int, bit: int) -> None:
    """Every form field is signed: a flipped bit anywhere is refused (or unreadable), unless
    it decodes to the very same fields (e.g. `+` and `%20` both a space)."""
    from urllib.parse import parse_qsl

    from stored_messages_cli.config.providers import TwilioSettings as Settings

    class _Token(Settings):
        def secret(self) -> bytes:
            return b"a-twilio-auth-token"

    verifier = TwilioVerifier(_Token(auth_token_env="UNUSED",
                                     public_url="https://hooks.example/t"))
    sig = twilio_signature(b"a-twilio-auth-token", "https://hooks.example/t", FORM)
    flipped = _flip(TWILIO_BODY, index, bit)
    try:
        same = sorted(parse_qsl(flipped.decode(), keep_blank_values=True)) == sorted(
            FORM.items())
    except UnicodeDecodeError:
        same = False
    if same:
        return
    with pytest.raises((Refused, Unreadable)):
        verifier.verify(flipped, {"x-twilio-signature": sig}, "", NOW)


def test_twilio_json_callback_is_signed_through_body_sha256(twilio: TwilioVerifier) -> None:
    """A JSON body: Twilio appends `bodySHA256` to the URL it calls and signs that URL."""
    import hashlib

    body = json.dumps({"MessageSid": "SM99", "MessageStatus": "sent"}).encode()
    digest = hashlib.sha256(body).hexdigest()
    signed_url = f"{twilio.settings.public_url}?bodySHA256={digest}"
    sig = twilio_signature(b"a-twilio-auth-token", signed_url, {})
    request_url = f"http://127.0.0.1:8080/v1/providers/twilio/12345?bodySHA256={digest}"
    [event] = twilio.verify(body, {"x-twilio-signature": sig}, request_url, NOW).events
    assert (event.provider_message_id, event.kind) == ("SM99", Kind.ACCEPTED)
    with pytest.raises(Refused, match="bodySHA256"):  # the body changed, the URL did not
        twilio.verify(body.replace(b"sent", b"sent "), {"x-twilio-signature": sig},
                      request_url, NOW)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=300), st.recursive(
           st.none() | st.booleans() | st.integers() | st.text(max_size=20),
           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
               st.sampled_from(["Type", "Message", "SignatureVersion", "SigningCertURL",
                                "Signature", "signature", "event-data", "timestamp", "token",
                                "RecordType", "MessageID", "sg_message_id"]), inner,
               max_size=6), max_leaves=20).map(lambda v: json.dumps(v).encode())),
       auth=st.text(max_size=40))
def test_hostile_requests_are_only_ever_refused_or_unreadable(
        sns: tuple[SnsSigner, SesVerifier], tmp_path: Path, body: bytes, auth: str) -> None:
    password = tmp_path / "pm"
    password.write_text("pw")
    verifiers = [sns[1], _VERIFIER, PostmarkVerifier(PostmarkSettings(
        username="u", password_file=str(password))), MailgunVerifier(MailgunSettings(
            signing_key_file=str(password))), TwilioVerifier(TwilioSettings(
                auth_token_file=str(password), public_url="https://h.example/t"))]
    headers = {"authorization": auth, "x-twilio-signature": auth,
               "x-twilio-email-event-webhook-signature": auth,
               "x-twilio-email-event-webhook-timestamp": auth}
    for verifier in verifiers:
        with pytest.raises((Refused, Unreadable)):
            verifier.verify(body, headers, "", NOW)
