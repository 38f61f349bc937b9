"""Signed notes and checkpoints (C2SP signed-note, tlog-checkpoint; SPEC 9.1): the vectors of
Go's golang.org/x/mod/sumdb/note and of the C2SP specifications, and an attacker who edits
notes, signatures and keys."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stored_messages_cli.evidence.note import (
    Checkpoint,
    NoteError,
    NoteVerifier,
    format_checkpoint,
    open_note,
    parse_checkpoint,
    sign_note,
)
from stored_messages_cli.evidence.signing import LogSigner

# golang.org/x/mod sumdb/note/note_test.go (TestNewSigner, TestSign, TestOpen).
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
PETER_SIG = ("— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvq"
             "fqdngotpRZb6KE6RyyBwJnAM=\n")
ENOCH_SIG = ("— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTG"
             "wnWLox33WWd1RvMc+QQ=\n")
# c2sp.org/signed-note, "Example"; c2sp.org/tlog-checkpoint, the opening example.
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = ("This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6T"
             "fXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n")
C2SP_CHECKPOINT = ("example.com/behind-the-sofa\n20852163\n"
                   "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
                   "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDe"
                   "OoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n")

PETER = NoteVerifier.parse(PETER_VKEY)
ENOCH = NoteVerifier.parse(ENOCH_VKEY)
SIGNER = LogSigner.generate("sm-test.example")
IMPOSTOR = LogSigner.generate("sm-test.example")  # same name, another key


def test_go_key_pair_and_signature_are_reproduced_exactly() -> None:
    peter = LogSigner.from_private_key(PETER_SKEY)
    assert peter.verifier_key() == PETER_VKEY
    assert peter.private_key_text() == PETER_SKEY
    assert peter.key_id.hex() == "c74f20a3"
    assert sign_note(GO_TEXT, peter) == GO_TEXT + "\n" + PETER_SIG  # Ed25519 is deterministic
    assert PETER.verifier_key == PETER_VKEY


def test_go_note_with_a_known_and_an_unknown_signature() -> None:
    opened = open_note(GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER])
    assert opened.text == GO_TEXT
    assert opened.verified_by == ["PeterNeumann"]
    assert opened.unknown == [("EnochRoot", bytes.fromhex("af0cfe78"))]
    both = open_note(GO_TEXT + "\n" + ENOCH_SIG + PETER_SIG, [PETER, ENOCH])
    assert both.verified_by == ["EnochRoot", "PeterNeumann"] and both.unknown == []


def test_the_c2sp_examples_open() -> None:
    opened = open_note(C2SP_NOTE, [NoteVerifier.parse(C2SP_VKEY)])
    assert opened.text == "This is an example message.\n"
    assert opened.verified_by == ["example.com/foo"]
    checkpoint = open_note(C2SP_CHECKPOINT, [])
    assert checkpoint.verified_by == []
    assert [name for name, _ in checkpoint.unknown] == ["example.com/behind-the-sofa"]
    parsed = parse_checkpoint(checkpoint.text)
    assert (parsed.origin, parsed.tree_size) == ("example.com/behind-the-sofa", 20852163)
    assert base64.b64encode(parsed.root).decode() == "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="


@pytest.mark.parametrize("note", [
    GO_TEXT,
    GO_TEXT + "\n",
    GO_TEXT + "\n" + PETER_SIG[:-1],
    "\x01" + GO_TEXT + "\n" + PETER_SIG,
    "\udcff" + GO_TEXT + "\n" + PETER_SIG,  # a byte that is not UTF-8, as Python decodes it
    GO_TEXT + "\n" + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZS"
    "NXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
    GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    GO_TEXT + "\n" + "— PeterNeumann x08go/Z\n",  # a signature as short as a key ID
    GO_TEXT + "\n" + PETER_SIG * 101,
    GO_TEXT + "\n" + PETER_SIG.replace("=", "=="),
    GO_TEXT + "\r\n" + PETER_SIG,
])
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(NoteError):
        open_note(note, [PETER])


def test_a_failing_signature_of_a_trusted_key_rejects_the_note() -> None:
    bad = PETER_SIG.replace("x08go/ZJ", "x08go/ZK")
    with pytest.raises(NoteError, match="PeterNeumann\\+c74f20a3 does not verify"):
        open_note(GO_TEXT + "\n" + bad, [PETER])
    # also when a good signature by the same key comes first (Go checks only the first)
    with pytest.raises(NoteError, match="does not verify"):
        open_note(GO_TEXT + "\n" + PETER_SIG + bad, [PETER])
    assert open_note(GO_TEXT + "\n" + bad, [ENOCH]).unknown == [
        ("PeterNeumann", bytes.fromhex("c74f20a3"))]


def test_two_different_keys_under_one_name_and_id_are_refused() -> None:
    twin = NoteVerifier(PETER.name, PETER.key_id, ENOCH.public_key)
    with pytest.raises(NoteError, match="two verifier keys"):
        open_note(GO_TEXT + "\n" + PETER_SIG, [PETER, twin])
    assert open_note(GO_TEXT + "\n" + PETER_SIG, [PETER, PETER]).verified_by == ["PeterNeumann"]


def test_every_mangling_of_a_verifier_key_is_refused() -> None:
    # As Go's TestNewVerifier: every proper substring and every one-character change.
    for start in range(len(PETER_VKEY) + 1):
        for end in range(start + 1, len(PETER_VKEY) + 1):
            if (start, end) != (0, len(PETER_VKEY)):
                with pytest.raises(NoteError):
                    NoteVerifier.parse(PETER_VKEY[start:end])
    for index in range(len(PETER_VKEY)):
        changed = PETER_VKEY[:index] + chr(ord(PETER_VKEY[index]) + 1) + PETER_VKEY[index + 1:]
        with pytest.raises(NoteError):
            NoteVerifier.parse(changed)
    for wrong in ("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
                  "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"):
        with pytest.raises(NoteError):
            NoteVerifier.parse(wrong)


def test_every_mangling_of_a_private_key_is_refused() -> None:
    for index in range(len(PETER_SKEY)):
        changed = PETER_SKEY[:index] + chr(ord(PETER_SKEY[index]) + 1) + PETER_SKEY[index + 1:]
        with pytest.raises(NoteError):
            LogSigner.from_private_key(changed)
    for end in range(len(PETER_SKEY)):
        with pytest.raises(NoteError):
            LogSigner.from_private_key(PETER_SKEY[:end])


def test_a_checkpoint_round_trips_and_signs() -> None:
    root = bytes(range(32))
    text = format_checkpoint("s3://acme-archive/messages/#12345", 42, root)
    assert text == "s3://acme-archive/messages/#12345\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    assert parse_checkpoint(text) == Checkpoint("s3://acme-archive/messages/#12345", 42, root)
    opened = open_note(sign_note(text, SIGNER), [SIGNER.verifier()])
    assert opened.verified_by == [SIGNER.name]
    assert parse_checkpoint(opened.text).tree_size == 42
    with_extension = format_checkpoint("o", 0, root, ["ext one"])
    assert parse_checkpoint(with_extension).extensions == ("ext one",)


ROOT64 = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize("text", [
    f"origin\n1\n{ROOT64}",  # no final newline
    f"\n1\n{ROOT64}\n",  # empty origin
    f"origin\n01\n{ROOT64}\n",  # leading zero
    f"origin\n+1\n{ROOT64}\n",
    f"origin\n1.0\n{ROOT64}\n",
    f"origin\n١\n{ROOT64}\n",  # a digit, but not an ASCII one
    f"origin\n-1\n{ROOT64}\n",
    f"origin\n{2**63}\n{ROOT64}\n",
    "origin\n1\nAAAA\n",  # 3 bytes
    f"origin\n1\n{ROOT64[:-1]}\n",
    "origin\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=\n",  # not canonical base64
    f"origin\n1\n {ROOT64}\n",
    f"origin\n1\n{ROOT64}\n\n",  # an empty extension line
    "origin\n1\n",
    f"ori\tgin\n1\n{ROOT64}\n",
])
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        parse_checkpoint(text)


@pytest.mark.parametrize(("origin", "size", "root"), [
    ("", 1, bytes(32)), ("o\nx", 1, bytes(32)), ("o", -1, bytes(32)), ("o", True, bytes(32)),
    ("o", 1, bytes(31)), ("o", 1, "x" * 32), ("o\x00", 1, bytes(32))])
def test_format_checkpoint_refuses_what_it_cannot_write(origin: str, size: int,
                                                        root: bytes) -> None:
    with pytest.raises(NoteError):
        format_checkpoint(origin, size, root)


note_texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00"), max_size=200,
).map(lambda t: "".join(c for c in t if c >= " " or c == "\n") + "\n")


@settings(max_examples=80, deadline=None)
@given(text=note_texts)
def test_any_signed_note_opens_with_its_key(text: str) -> None:
    note = sign_note(text, SIGNER)
    opened = open_note(note, [SIGNER.verifier()])
    assert (opened.text, opened.verified_by, opened.unknown) == (text, [SIGNER.name], [])


@settings(max_examples=80, deadline=None)
@given(text=note_texts, data=st.data())
def test_a_changed_text_never_verifies(text: str, data: st.DataObject) -> None:
    note = sign_note(text, SIGNER)
    index = data.draw(st.integers(0, len(text) - 1), label="index")
    replacement = data.draw(st.characters(blacklist_categories=("Cs",)), label="char")
    changed = note[:index] + replacement + note[index + 1:]
    if changed == note:
        return
    try:
        opened = open_note(changed, [SIGNER.verifier()])
    except NoteError:
        return
    assert opened.verified_by == []


@settings(max_examples=80, deadline=None)
@given(text=note_texts, data=st.data())
def test_a_changed_signature_never_verifies(text: str, data: st.DataObject) -> None:
    note = sign_note(text, SIGNER)
    body, line = note[: len(text) + 1], note[len(text) + 1:]
    name, encoded = line[2:-1].split(" ")
    raw = bytearray(base64.b64decode(encoded))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1), label="bit")
    raw[bit // 8] ^= 1 << (bit % 8)
    forged = f"{body}— {name} {base64.b64encode(bytes(raw)).decode()}\n"
    if bit < 32:  # the key ID: now another key's signature, which is left unchecked
        opened = open_note(forged, [SIGNER.verifier()])
        assert opened.verified_by == [] and len(opened.unknown) == 1
    else:
        with pytest.raises(NoteError, match="does not verify"):
            open_note(forged, [SIGNER.verifier()])


@settings(max_examples=40, deadline=None)
@given(text=note_texts)
def test_another_key_with_the_same_name_is_unknown_not_verified(text: str) -> None:
    note = sign_note(text, IMPOSTOR)
    opened = open_note(note, [SIGNER.verifier()])
    assert opened.verified_by == []
    assert opened.unknown == [(IMPOSTOR.name, IMPOSTOR.key_id)]


def open_note_trusting_two(note: str) -> object:
    return open_note(note, [SIGNER.verifier(), PETER])


@settings(max_examples=150, deadline=None)
@given(garbage=st.text(max_size=300), data=st.data())
def test_garbage_raises_note_error_and_nothing_else(garbage: str, data: st.DataObject) -> None:
    signed = sign_note(GO_TEXT, SIGNER)
    cut = data.draw(st.integers(0, len(signed)), label="cut")
    for candidate in (garbage, signed[:cut] + garbage + signed[cut:],
                      signed[:cut] + signed[cut + 1:]):
        for attempt, argument in ((open_note_trusting_two, candidate),
                                  (parse_checkpoint, candidate), (NoteVerifier.parse, candidate)):
            try:
                attempt(argument)
            except NoteError:
                pass


@pytest.mark.parametrize("text", ["no final newline", "a\x07bell\n", "\udc80\n"])
def test_sign_note_refuses_text_a_note_cannot_hold(text: str) -> None:
    with pytest.raises(NoteError):
        sign_note(text, SIGNER)


DOCS = Path(__file__).resolve().parent.parent / "docs" / "signing.md"


def test_the_documented_checkpoint_verifies_with_the_documented_key_and_script(
        tmp_path: Path) -> None:
    text = DOCS.read_text(encoding="utf-8")
    verifier_key = re.search(r"^sm-mail1\.example\.com\+\S+$", text, re.M)
    checkpoint = re.search(r"```text\n(.*?)```", text, re.S)
    script = re.search(r"```python\n(.*?)```", text, re.S)
    assert verifier_key and checkpoint and script
    opened = open_note(checkpoint.group(1), [NoteVerifier.parse(verifier_key.group(0))])
    assert opened.verified_by == ["sm-mail1.example.com"]
    assert parse_checkpoint(opened.text).tree_size == 1042
    (tmp_path / "check.py").write_text(script.group(1))
    (tmp_path / "checkpoint.txt").write_text(checkpoint.group(1), encoding="utf-8")
    ran = subprocess.run([sys.executable, "check.py", verifier_key.group(0), "checkpoint.txt"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("signed by sm-mail1.example.com: s3://acme-archive/")
    tampered = checkpoint.group(1).replace("1042", "1043")
    (tmp_path / "checkpoint.txt").write_text(tampered, encoding="utf-8")
    refused = subprocess.run([sys.executable, "check.py", verifier_key.group(0),
                              "checkpoint.txt"], cwd=tmp_path, capture_output=True, timeout=60)
    assert refused.returncode != 0
