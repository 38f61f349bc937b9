"""The object bytes are pinned (SPEC 9.6): a fixed 10-byte gzip header, zlib's raw deflate
stream at level 6, then the CRC-32/ISIZE trailer, whatever the Python version."""

from __future__ import annotations

import gzip
import struct
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from stored_messages_cli.message import GZIP_HEADER, gzip_body, gzip_member
from stored_messages_cli.message.encode import gzip_member_explicit
from stored_messages_cli.spool import bodies

PINNED_HEADER = bytes.fromhex("1f 8b 08 00 00 00 00 00 00 03")
PAYLOADS = st.binary(max_size=4096) | st.text(max_size=2000).map(str.encode) | st.sampled_from(
    [b"", b"{}", b"x" * 100_000, bytes(range(256)) * 50])


def test_the_header_is_the_pinned_ten_bytes() -> None:
    assert GZIP_HEADER == PINNED_HEADER
    assert gzip_member(b"")[:10] == PINNED_HEADER
    assert gzip_member(b'{"a":1}')[:10] == PINNED_HEADER
    assert bodies.GZIP_HEADER == PINNED_HEADER


@settings(max_examples=200, deadline=None)
@given(PAYLOADS)
def test_a_member_is_header_raw_deflate_at_level_6_and_trailer(data: bytes) -> None:
    member = gzip_member(data)
    assert member[:10] == PINNED_HEADER
    assert member[10:-8] == zlib.compress(data, 6, -zlib.MAX_WBITS)
    assert member[-8:] == struct.pack("<II", zlib.crc32(data), len(data))
    assert gzip.decompress(member) == data
    assert gzip_body(data) == member
    assert gzip_member_explicit(data) == member  # the path taken if zlib's header had fields


@settings(max_examples=200, deadline=None)
@given(PAYLOADS)
def test_it_is_what_gzip_compress_wrote_with_the_os_byte_of_python_3_11(data: bytes) -> None:
    """`gzip.compress(data, compresslevel=6, mtime=0)` on this interpreter, its OS byte set to
    3 (CPython 3.11 and 3.12 write 3 there; 3.13 and later write 255)."""
    standard = bytearray(gzip.compress(data, compresslevel=6, mtime=0))
    standard[9] = 3
    assert gzip_member(data) == bytes(standard)
