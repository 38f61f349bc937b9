"""Random bytes as bucket objects (issue 24): whatever is stored, the bounded reader and every
command that reads the bucket (fetch, find --remote, index rebuild, audit --deep) answer with
an SmError (one `Error:` line, exit 1) or a finding, never another exception."""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stored_messages_cli.errors import UnreadableObject
from stored_messages_cli.message import gunzip, gzip_body
from tests.support.investigation_support import (
    ArchiveTarget,
    Invoke,
    archive,
    build_target,
    cli_for,
    connect,
    email,
    sha256_hex,
)

ANN_HASH = sha256_hex(b"ann.lee@example.com")
VALID = gzip.compress(b'{"a":"' + b"x" * 300 + b'"}', mtime=0)


def hostile_objects() -> st.SearchStrategy[bytes]:
    """Random bytes; gzip cut short anywhere; members concatenated or followed by bytes;
    a gzip header followed by random bytes."""
    return st.one_of(
        st.binary(max_size=512),
        st.integers(min_value=0, max_value=len(VALID) - 1).map(lambda n: VALID[:n]),
        st.binary(max_size=64).map(lambda tail: VALID + tail),
        st.just(VALID + VALID),
        st.binary(max_size=256).map(lambda tail: VALID[:10] + tail),
    )


@settings(max_examples=300, deadline=None)
@given(hostile_objects())
def test_the_bounded_reader_refuses_with_unreadable_object_only(body: bytes) -> None:
    try:
        payload = gunzip(body, "k", limit=1024)
    except UnreadableObject as exc:
        assert str(exc).startswith("cannot read k: ") and "\n" not in str(exc)
        return
    assert payload == gzip.decompress(body) and len(payload) <= 1024  # one intact member
    assert not (body.startswith(VALID) and body != VALID)  # nothing may follow the member


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=2000))
def test_the_bounded_reader_returns_what_gzip_wrote(payload: bytes) -> None:
    assert gunzip(gzip.compress(payload, mtime=0), "k") == payload
    with pytest.raises(UnreadableObject, match="over max_payload_bytes"):
        gunzip(gzip.compress(payload, mtime=0), "k", limit=len(payload) - 1)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str
           ) -> tuple[Invoke, Invoke, ArchiveTarget, str, str]:
    """a-1 archived to moto S3 with its manifest; a second home connected to the same bucket
    (`laptop`), for remote reads."""
    folder = tmp_path_factory.mktemp("hostile-objects")
    target = build_target("s3", folder, moto_endpoint)
    home = cli_for(folder / "home")
    archive(home, target, [email("a-1")])
    laptop = cli_for(folder / "laptop")
    connect(laptop, target, "12345")
    listed = target.s3_client.list_objects_v2(Bucket=target.bucket,
                                              Prefix=f"{target.key_prefix}_sm/manifests/")
    [segment] = [o["Key"] for o in listed["Contents"]]
    key = f"{target.key_prefix}email/12345/{ANN_HASH}/111/a-1.json.gz"
    return home, laptop, target, key, segment


def _no_escape(invoke: Callable[[], object]) -> None:
    result = invoke()
    exception = getattr(result, "exception", None)
    assert exception is None or isinstance(exception, SystemExit), repr(exception)
    assert getattr(result, "exit_code", None) == 1  # the object is never a stored message
    assert "Traceback" not in str(getattr(result, "output", ""))


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=hostile_objects())
def test_commands_reading_hostile_objects_raise_only_sm_errors(
        stored: tuple[Invoke, Invoke, ArchiveTarget, str, str], body: bytes) -> None:
    home, laptop, target, key, segment = stored
    claimed = hashlib.sha256(body).hexdigest()
    target.overwrite(key, body, payload_sha256=claimed)
    target.overwrite(segment, body, payload_sha256=None)
    _no_escape(lambda: home("fetch", "a-1", "--part", "json"))
    _no_escape(lambda: home("--json", "audit", "--deep"))
    _no_escape(lambda: laptop("--json", "index", "rebuild"))
    _no_escape(lambda: laptop("--json", "find", "--remote", "--recipient",
                              "ann.lee@example.com"))


@pytest.mark.parametrize("limit", [1, 1000, 70_000, 1 << 20])
def test_an_incompressible_payload_of_exactly_the_cap_is_read(limit: int) -> None:
    """`max_object_bytes` never refuses what sm's own gzip makes of a payload under the cap."""
    payload = os.urandom(limit)
    assert gunzip(gzip_body(payload), "k", limit=limit) == payload
    with pytest.raises(UnreadableObject, match=r"the object is \d+ bytes, more than a payload"):
        gunzip(gzip_body(os.urandom(2 * limit + 100)), "k", limit=limit)
