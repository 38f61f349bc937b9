"""An independent, deliberately naive reading of RFC 6962 section 2.1, for tests.

Written from the RFC's recursive definitions (MTH, PATH, PROOF/SUBPROOF) and nothing else,
and importing nothing from sm: the tests check sm's Merkle code, proofs and `sm prove`
output against it, so a mistake shared by both would have to be made twice in two different
shapes. Slow on purpose (every subtree is recomputed); fine for test-sized trees.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(entry: bytes) -> bytes:
    """MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return _sha256(b"\x00" + entry)


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right)


def split_point(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(entries: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of the raw entries, exactly as the RFC defines it."""
    n = len(entries)
    if n == 0:
        return _sha256(b"")
    if n == 1:
        return leaf_hash(entries[0])
    k = split_point(n)
    return node_hash(mth(entries[:k]), mth(entries[k:]))


def path(m: int, entries: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the audit path of entry m."""
    n = len(entries)
    if n == 1:
        return []
    k = split_point(n)
    if m < k:
        return path(m, entries[:k]) + [mth(entries[k:])]
    return path(m - k, entries[k:]) + [mth(entries[:k])]


def proof(m: int, entries: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) for 0 < m < n (RFC 6962 2.1.2)."""
    return _subproof(m, entries, True)


def _subproof(m: int, entries: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(entries)
    if m == n:
        return [] if whole else [mth(entries)]
    k = split_point(n)
    if m <= k:
        return _subproof(m, entries[:k], whole) + [mth(entries[k:])]
    return _subproof(m - k, entries[k:], False) + [mth(entries[:k])]


def verify_inclusion(leaf: bytes, index: int, tree_size: int, audit_path: Sequence[bytes],
                     root: bytes) -> bool:
    """True when walking PATH's recursion back up from `leaf` gives `root`.

    The last hash of the path is the sibling at the top split, so the recursion peels the
    path from its end, going left or right as PATH did."""
    if not 0 <= index < tree_size:
        return False

    def climb(m: int, n: int, hashes: Sequence[bytes]) -> bytes | None:
        if n == 1:
            return leaf if not hashes else None
        if not hashes:
            return None
        k = split_point(n)
        if m < k:
            below = climb(m, k, hashes[:-1])
            return None if below is None else node_hash(below, hashes[-1])
        below = climb(m - k, n - k, hashes[:-1])
        return None if below is None else node_hash(hashes[-1], below)

    return climb(index, tree_size, list(audit_path)) == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       consistency: Sequence[bytes]) -> bool:
    """True when SUBPROOF's recursion, walked back up, rebuilds both roots (0 < m < n)."""
    if not 0 < old_size < new_size:
        return False

    def climb(m: int, n: int, whole: bool, hashes: Sequence[bytes]
              ) -> tuple[bytes, bytes] | None:
        if m == n:
            if whole:
                return (old_root, old_root) if not hashes else None
            return (hashes[0], hashes[0]) if len(hashes) == 1 else None
        if not hashes:
            return None
        k = split_point(n)
        if m <= k:
            below = climb(m, k, whole, hashes[:-1])
            return None if below is None else (below[0], node_hash(below[1], hashes[-1]))
        below = climb(m - k, n - k, False, hashes[:-1])
        if below is None:
            return None
        return node_hash(hashes[-1], below[0]), node_hash(hashes[-1], below[1])

    rebuilt = climb(old_size, new_size, True, list(consistency))
    return rebuilt == (old_root, new_root)
