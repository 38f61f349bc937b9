"""Canonical JSON by orjson is byte for byte the standard library's (SPEC 3).

`canonical_json` and `encode_document` encode with orjson (sorted keys) when a document holds
only objects, arrays, strings, true/false/null and integers within 64 bits, and with the
standard library's encoder otherwise. These properties prove, on arbitrary documents (text
with lone surrogates and astral characters, keys that sort differently in UTF-16, integers on
both sides of 64 bits, floats, nesting), that the bytes are `reference_canonical_json`'s, the
definition, and that what cannot be carried is refused with the same reason.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from stored_messages_cli.errors import InvalidMessage
from stored_messages_cli.message import canonical_json, encode_document, sha256_hex
from stored_messages_cli.message import encode as encode_module
from stored_messages_cli.message.encode import reference_canonical_json

PROPERTY = settings(max_examples=400, deadline=None)

# Every code point, lone surrogates included; astral characters and the private use area
# (U+E000-U+F8FF) sort differently by UTF-16 code units than by code point.
ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None)
CLEAN_EDGE_CHARS = ["\x00", "\x1f", "\x7f", "\x80", '"', "\\", "/", "\u2028", "\u2029",
                    "\ud7ff", "\ue000", "\uffff", "\U00010000", "\U0001f600", "\U0010ffff",
                    "\u00e9", "\u0301"]
EDGE_CHARS = st.sampled_from([*CLEAN_EDGE_CHARS, "\ud800", "\udbff", "\udc00", "\udfff"])
TEXT = st.text(ANY_CHAR | EDGE_CHARS, max_size=12)
CLEAN_TEXT = st.text(st.characters(exclude_categories=("Cs",))
                     | st.sampled_from(CLEAN_EDGE_CHARS), max_size=12)
# Both ends of what orjson writes (a signed or an unsigned 64-bit integer), and beyond.
INT64_EDGES = [0, -1, 2**53, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]
EDGE_INTS = st.sampled_from([*INT64_EDGES, 2**64, -(2**63) - 1, 10**20, -(10**20), 10**300])
INTS = st.integers() | EDGE_INTS
FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [-0.0, 0.0, 1e300, 1e16, 1e-7, 2.5e-8, 0.1, 1.5, 123456789.0])


def documents(text: st.SearchStrategy[str], scalars: st.SearchStrategy[Any]
              ) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects whose keys come from `text` and whose leaves from `scalars`."""
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(text, inner, max_size=4), max_leaves=12)
    return st.dictionaries(text, values, max_size=8)


ANY_DOCUMENT = documents(TEXT, st.none() | st.booleans() | INTS | FLOATS | TEXT)
# What orjson takes: no float, no integer beyond 64 bits, no lone surrogate.
PLAIN_DOCUMENT = documents(CLEAN_TEXT, st.none() | st.booleans() | CLEAN_TEXT | st.integers(
    -(2**63), 2**64 - 1) | st.sampled_from(INT64_EDGES))


def outcome(encode: Any, document: Any) -> bytes | str:
    """The bytes `encode` gives, or the reason it refuses `document`."""
    try:
        return encode(document)
    except InvalidMessage as exc:
        return f"InvalidMessage: {exc}"


@PROPERTY
@given(ANY_DOCUMENT)
@example({"a": 1.5, "b": [1e300, -0.0, 2**64, 2**63 - 1]})
@example({"\U00010000": 1, "\uffff": 2, "\ue000": 3, "z": 4, "é": 5, "\x00": 6})
@example({"a": "\ud800"})
@example({"\udfff": 1})
def test_canonical_json_is_the_reference(document: dict[str, Any]) -> None:
    assert outcome(canonical_json, document) == outcome(reference_canonical_json, document)


@PROPERTY
@given(PLAIN_DOCUMENT)
@example({"\U0001f600": {"\ue000": [2**64 - 1, -(2**63)], "\uffff": "\x00\x1f\x7f\u2028"}})
def test_orjson_gives_the_reference_bytes(document: dict[str, Any]) -> None:
    """Not vacuous: orjson itself encodes these (the fast path is taken), and its bytes are
    the standard library's, which are `json.dumps`'s."""
    fast = encode_module._fast(document)
    assert fast is not None
    assert fast == reference_canonical_json(document)
    assert fast == json.dumps(document, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False).encode("utf-8")


@PROPERTY
@given(ANY_DOCUMENT, st.sampled_from([{}, {"sent_at": "2026-11-27T17:00:00Z"},
                                      {"provider": {"name": "ses", "n": 1.5}},
                                      {"schema_version": 7, "sent_at": None}]))
def test_encode_document_is_the_reference(document: dict[str, Any],
                                          extra: dict[str, Any]) -> None:
    document = {**document, **extra}
    content = {k: v for k, v in document.items()
               if k not in ("sent_at", "provider", "schema_version")}
    try:
        expected: Any = (reference_canonical_json({**document, "schema_version": 1}),
                         sha256_hex(reference_canonical_json(content)))
    except InvalidMessage as exc:
        expected = f"InvalidMessage: {exc}"
    assert outcome(encode_document, document) == expected


def test_every_code_point_is_spelled_as_the_reference_does() -> None:
    """Each character alone as a value and as a key (one document each, so orjson sorts all
    1,112,064 keys): the same escapes, the same raw UTF-8, the same order."""
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    values = {"v": chars}
    keys = dict.fromkeys(reversed(chars), 0)
    for document in (values, keys):
        fast = encode_module._fast(document)
        assert fast is not None
        assert fast == reference_canonical_json(document)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**300, 1.0, -0.0, 1e300, (1, 2),
                                   "\ud800", True])
def test_what_orjson_would_spell_differently_or_refuse_takes_the_standard_library(
        value: Any) -> None:
    document = {"k": [value]}
    fast = encode_module._fast(document)
    if value is True:
        assert fast == b'{"k":[true]}'
        return
    assert fast is None
    assert outcome(canonical_json, document) == outcome(reference_canonical_json, document)


class Text(str):
    """A str subclass: orjson would write it, the fast path must not take it."""


def test_subclasses_and_non_string_keys_keep_the_reference_behaviour() -> None:
    for document in ({"a": Text("x")}, {Text("k"): 1}, {"a": {1: "b"}}, {1: "b"},
                     {"a": {"b": {True: 1, None: 2}}}):
        assert encode_module._fast(document) is None
        assert outcome(canonical_json, document) == outcome(reference_canonical_json, document)
    assert canonical_json({"a": {1: "b"}}) == b'{"a":{"1":"b"}}'  # as json.dumps writes it
    with pytest.raises(InvalidMessage, match="key that is not a string"):
        canonical_json({1: "b"})


def test_a_document_that_contains_itself_is_refused() -> None:
    looped: dict[str, Any] = {"a": 1}
    looped["self"] = looped
    with pytest.raises(InvalidMessage):
        canonical_json(looped)
    with pytest.raises(InvalidMessage):
        encode_document(looped)
