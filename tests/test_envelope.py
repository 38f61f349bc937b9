"""The AES-256-GCM envelope (SPEC 9.5, docs/format.md): canonical bytes, a binding to the
object's key, deterministic for one message, and nothing that opens when altered."""

from __future__ import annotations

import base64
import json
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from stored_messages_cli.message.envelope import (
    AAD_PREFIX,
    DataKey,
    EnvelopeError,
    keyed_digest,
    looks_sealed,
    parse_envelope,
)

KEY = "email/12345/abc/111/m-1.json.gz"


def fresh_key() -> tuple[DataKey, bytes]:
    secret = os.urandom(32)
    return DataKey(os.urandom(16).hex(), secret), secret


def test_the_envelope_is_the_spec_json_and_opens_with_the_standard_library_and_aesgcm() -> None:
    key, secret = fresh_key()
    payload = b'{"content":{"html":"<p>secret body</p>"},"message_id":"m-1"}'
    sealed = key.seal(payload, KEY)
    document = json.loads(sealed)
    assert set(document) == {"sm_envelope", "alg", "kid", "nonce", "ciphertext"}
    assert document["sm_envelope"] == 1 and document["alg"] == "AES-256-GCM"
    assert document["kid"] == key.kid
    # canonical: sorted keys, compact separators, as every stored JSON
    assert sealed == json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    # decrypted independently of sm: AAD = prefix ‖ kid ‖ 0x00 ‖ relative key
    aad = AAD_PREFIX + key.kid.encode() + b"\x00" + KEY.encode()
    plain = AESGCM(secret).decrypt(base64.b64decode(document["nonce"]),
                                   base64.b64decode(document["ciphertext"]), aad)
    assert plain == payload
    assert b"secret body" not in sealed
    assert looks_sealed(sealed) and not looks_sealed(payload)


def test_same_message_same_bytes_other_message_other_nonce() -> None:
    key, _ = fresh_key()
    one = key.seal(b'{"a":1}', KEY)
    assert key.seal(b'{"a":1}', KEY) == one  # a retried upload or a duplicate: no conflict
    other = key.seal(b'{"a":2}', KEY)
    assert parse_envelope(other).nonce != parse_envelope(one).nonce
    moved = key.seal(b'{"a":1}', KEY.replace("m-1", "m-2"))
    assert parse_envelope(moved).nonce != parse_envelope(one).nonce


def test_an_envelope_moved_to_another_key_does_not_open() -> None:
    key, _ = fresh_key()
    sealed = key.seal(b'{"a":1}', KEY)
    with pytest.raises(EnvelopeError, match="another object"):
        key.open(parse_envelope(sealed), KEY.replace("m-1", "m-2"))


def test_another_recipients_key_does_not_open_it() -> None:
    key, _ = fresh_key()
    other = DataKey(key.kid, os.urandom(32))  # even under the same key id
    sealed = key.seal(b'{"a":1}', KEY)
    with pytest.raises(EnvelopeError):
        other.open(parse_envelope(sealed), KEY)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(min_size=0, max_size=300), flip=st.integers(min_value=0))
def test_any_single_bit_flipped_in_the_envelope_is_refused(payload: bytes, flip: int) -> None:
    key = DataKey("0" * 32, b"k" * 32)
    sealed = bytearray(key.seal(payload, KEY))
    at = flip % (len(sealed) * 8)
    sealed[at // 8] ^= 1 << (at % 8)
    try:
        envelope = parse_envelope(bytes(sealed))
    except EnvelopeError:
        return  # no longer an envelope at all
    with pytest.raises(EnvelopeError):
        key.open(envelope, KEY)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=2000))
def test_round_trip(payload: bytes) -> None:
    key = DataKey("a" * 32, b"s" * 32)
    assert key.open(parse_envelope(key.seal(payload, KEY)), KEY) == payload


@pytest.mark.parametrize("bad", [
    b"{}", b"[]", b"not json", b'{"alg":"AES-256-GCM"}',
    b'{"alg":"AES-128-GCM","ciphertext":"AAAAAAAAAAAAAAAAAAAAAA==","kid":"' + b"a" * 32
    + b'","nonce":"AAAAAAAAAAAAAAAA","sm_envelope":1}',
    b'{"alg":"AES-256-GCM","ciphertext":"AAAAAAAAAAAAAAAAAAAAAA==","kid":"' + b"a" * 32
    + b'","nonce":"AAAAAAAAAAAAAAAA","sm_envelope":2}',
    b'{"alg":"AES-256-GCM","ciphertext":"AAAAAAAAAAAAAAAAAAAAAA==","kid":"' + b"A" * 32
    + b'","nonce":"AAAAAAAAAAAAAAAA","sm_envelope":1}',
    b'{"alg":"AES-256-GCM","ciphertext":"!!","kid":"' + b"a" * 32
    + b'","nonce":"AAAAAAAAAAAAAAAA","sm_envelope":1}',
    b'{"alg":"AES-256-GCM","ciphertext":"AAAAAAAAAAAAAAAAAAAAAA==","kid":"' + b"a" * 32
    + b'","nonce":"AAAAAAAAAAAAAAAA","sm_envelope":1,"x":1}',
    b'{"sm_envelope":1,"alg":"AES-256-GCM","ciphertext":"AAAAAAAAAAAAAAAAAAAAAA==","kid":"'
    + b"a" * 32 + b'","nonce":"AAAAAAAAAAAAAAAA"}',  # not canonical
    b'{"alg":"AES-256-GCM","ciphertext":"AAAAAAAAAAAAAAAAAAAAAA==","kid":"' + b"a" * 32
    + b'","nonce":"AAAAAAAAAAAAAAAA","sm_envelope":true}',
])
def test_hostile_envelopes_are_refused_with_a_reason(bad: bytes) -> None:
    with pytest.raises(EnvelopeError):
        parse_envelope(bad)


def test_the_keyed_hash_is_hmac_sha256_and_differs_from_plain_sha256() -> None:
    import hashlib
    import hmac

    secret = os.urandom(32)
    digest = keyed_digest(secret)
    assert digest(b"ann@example.com") == hmac.new(secret, b"ann@example.com",
                                                  hashlib.sha256).hexdigest()
    assert digest(b"ann@example.com") != hashlib.sha256(b"ann@example.com").hexdigest()
    assert keyed_digest(os.urandom(32))(b"ann@example.com") != digest(b"ann@example.com")
    assert "<key>" in repr(digest) and secret.hex() not in repr(digest)


def test_a_given_message_under_a_given_key_keeps_its_stored_bytes() -> None:
    """Pinned: the object of one message under one fixed key (SHA-256 of the envelope and
    of its gzip member, as the code before issue 28's changes made them)."""
    import hashlib

    from stored_messages_cli.message import gzip_member, parse_message

    message = parse_message({
        "project_id": 12345, "message_id": "golden-1", "medium": "email",
        "message_type": "triggered", "campaign_id": 77,
        "recipient": {"email": "ann@example.com"}, "sent_at": "2026-01-02T03:04:05Z",
        "content": {"from": "a@shop.example", "to": "ann@example.com",
                    "subject": "Order 4471", "html": "<p>shipped</p>"}})
    key = DataKey("0123456789abcdef0123456789abcdef", bytes(range(32)))
    envelope = key.seal(message.payload_bytes, message.key, message.payload_sha)
    assert envelope == key.seal(message.payload_bytes, message.key)  # the hash given or not
    assert hashlib.sha256(envelope).hexdigest() == (
        "8070af6adae0af4c7ff447dd73b8b3e41362f565165d8529f41b448742445c67")
    assert hashlib.sha256(gzip_member(envelope)).hexdigest() == (
        "7fcb24e198189ec96306642cc12d77153a0b110474025915ffa34baf6ec18efd")
