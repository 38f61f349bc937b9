"""`evidence.audit_log` on its own: bytes from the bucket's checkpoint folder are hostile, so
whatever they are, the check gives findings and never raises; a genuine checkpoint of the
tree passes and pins it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stored_messages_cli.destinations.file import FileDestination
from stored_messages_cli.evidence import merkle
from stored_messages_cli.evidence.audit_log import SpoolLog, Trust, check_log
from stored_messages_cli.evidence.findings import ProjectAudit
from stored_messages_cli.evidence.note import encode_base64 as b64
from stored_messages_cli.evidence.note import format_checkpoint, sign_note
from stored_messages_cli.evidence.segments import build_segment, parse_segment, segment_header
from stored_messages_cli.evidence.signing import LogSigner

PROJECT = "12345"
SIGNER = LogSigner.generate("archive.example")
LINES = [b'{"message_id":"m-1","outcome":"stored"}', b'{"message_id":"m-2","outcome":"failed"}']


def one_segment(origin: str) -> list[Any]:
    root = merkle.root([merkle.leaf_hash(line) for line in LINES])
    header = segment_header(PROJECT, 1, None, 0.0, len(LINES), tree_size=len(LINES),
                            root=b64(root), origin=origin, sealer="ab" * 8)
    return [parse_segment(build_segment(header, LINES))]


def audit_with(folder: Path, body: bytes, name: str = "000000000002.txt") -> ProjectAudit:
    checkpoints = folder / "_sm" / "checkpoints" / PROJECT
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / name).write_bytes(body)
    destination = FileDestination(f"file://{folder}/")
    origin = f"file://{folder}/#{PROJECT}"
    result = ProjectAudit(PROJECT)
    check_log(destination, PROJECT, origin, one_segment(origin), result,
              Trust((SIGNER.verifier(),)), SpoolLog())
    destination.close()
    return result


def test_a_genuine_checkpoint_pins_the_tree(tmp_path: Path) -> None:
    origin = f"file://{tmp_path}/#{PROJECT}"
    root = merkle.root([merkle.leaf_hash(line) for line in LINES])
    text = sign_note(format_checkpoint(origin, 2, root), SIGNER)
    result = audit_with(tmp_path, text.encode())
    assert (result.findings, result.anchored, result.tree_size, result.root) == (
        [], True, 2, b64(root))
    assert result.checkpoints == {2: text}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode)))
def test_any_other_checkpoint_bytes_are_one_finding_never_an_exception(
        tmp_path: Path, body: bytes) -> None:
    result = audit_with(tmp_path, body)
    # and so nothing valid covers the segment
    assert [f.type for f in result.findings] == ["signature_invalid", "unsigned_segment"]


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300))
def test_any_time_stamp_token_bytes_are_one_finding_never_an_exception(
        tmp_path: Path, body: bytes) -> None:
    origin = f"file://{tmp_path}/#{PROJECT}"
    root = merkle.root([merkle.leaf_hash(line) for line in LINES])
    audit_with(tmp_path, sign_note(format_checkpoint(origin, 2, root), SIGNER).encode())
    result = audit_with(tmp_path, body, "000000000002.tsr")
    assert [f.type for f in result.findings] == ["timestamp_invalid"]
    assert result.timestamps == {2: [body]}
