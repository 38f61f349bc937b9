"""RFC 6962 Merkle tree hashing (section 2.1): the tree over a log's manifest lines (SPEC 9.1).

Pure functions over 32-byte SHA-256 hashes, no I/O. A leaf is `SHA-256(0x00 ‖ line)` and a
node `SHA-256(0x01 ‖ left ‖ right)`, so a leaf can never pass for a node. The proofs are
those of RFC 6962 (PATH and PROOF) and are checked with the algorithms of RFC 9162 sections
2.1.3.2 and 2.1.4.2, which read only the proof, the sizes and the roots: an auditor needs
nothing else. `Frontier` keeps the few hashes a sealer needs to append leaves and know the
new root without holding every leaf.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(line: bytes) -> bytes:
    """The hash of one leaf: SHA-256(0x00 ‖ line)."""
    return hashlib.sha256(b"\x00" + line).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an inner node: SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (MTH) of the leaves, `EMPTY_ROOT` for none.

    Built level by level: pairs are hashed and a last node without a partner moves up
    unchanged, which gives RFC 6962's tree (the left part always the largest power of two
    smaller than the whole) without recursion."""
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _split(size: int) -> int:
    """The largest power of two smaller than `size` (size ≥ 2): where RFC 6962 splits."""
    return 1 << ((size - 1).bit_length() - 1)


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The audit path (RFC 6962 PATH) of leaf `index`, lowest sibling first.

    Raises ValueError when `index` is not a leaf of the tree."""
    if not 0 <= index < len(leaf_hashes):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaf_hashes)} leaves")
    path: list[bytes] = []
    low, high = 0, len(leaf_hashes)
    while high - low > 1:
        middle = low + _split(high - low)
        if index < middle:
            path.append(root(leaf_hashes[middle:high]))
            high = middle
        else:
            path.append(root(leaf_hashes[low:middle]))
            low = middle
    path.reverse()  # found from the top down; a proof lists the lowest sibling first
    return path


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The proof (RFC 6962 PROOF) that the tree of the first `old_size` leaves is a prefix of
    the tree of all of them; empty when `old_size` is 0 or the whole tree.

    Raises ValueError when `old_size` is negative or larger than the tree."""
    size = len(leaf_hashes)
    if not 0 <= old_size <= size:
        raise ValueError(f"no tree of {old_size} leaves precedes one of {size}")
    if old_size in (0, size):
        return []
    proof: list[bytes] = []
    low, high, whole = 0, size, True  # SUBPROOF(m, D[low:high], whole), m = old_size - low
    while old_size - low != high - low:
        middle = low + _split(high - low)
        if old_size <= middle:
            proof.append(root(leaf_hashes[middle:high]))
            high = middle
        else:
            proof.append(root(leaf_hashes[low:middle]))
            low, whole = middle, False
    if not whole:
        proof.append(root(leaf_hashes[low:high]))
    proof.reverse()
    return proof


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def verify_inclusion(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes],
                     root: bytes) -> bool:
    """True when `proof` shows leaf hash `leaf` at `index` in the tree of `tree_size` leaves
    whose root is `root` (RFC 9162 2.1.3.2). Any malformed input is False, never an error."""
    if not (_is_size(index) and _is_size(tree_size) and index < tree_size):
        return False
    if not (_is_hash(leaf) and _is_hash(root) and all(_is_hash(p) for p in proof)):
        return False
    node, last = index, tree_size - 1
    computed = leaf
    for sibling in proof:
        if last == 0:
            return False  # more hashes than the path has levels
        if node & 1 or node == last:
            computed = node_hash(sibling, computed)
            while not node & 1 and node != 0:  # climb past levels where we have no sibling
                node, last = node >> 1, last >> 1
        else:
            computed = node_hash(computed, sibling)
        node, last = node >> 1, last >> 1
    return last == 0 and computed == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """True when `proof` shows the tree of `old_size` leaves (root `old_root`) is a prefix of
    the tree of `new_size` leaves (root `new_root`) (RFC 9162 2.1.4.2).

    Equal sizes need an empty proof and equal roots; from the empty tree (whose root must be
    `EMPTY_ROOT`) every tree is an extension, with an empty proof. Any malformed input is
    False, never an error."""
    if not (_is_size(old_size) and _is_size(new_size) and old_size <= new_size):
        return False
    if not (_is_hash(old_root) and _is_hash(new_root) and all(_is_hash(p) for p in proof)):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node
        path.insert(0, old_root)
    node, last = old_size - 1, new_size - 1
    while node & 1:
        node, last = node >> 1, last >> 1
    old_computed = new_computed = path[0]
    for sibling in path[1:]:
        if last == 0:
            return False
        if node & 1 or node == last:
            old_computed = node_hash(sibling, old_computed)
            new_computed = node_hash(sibling, new_computed)
            while not node & 1 and node != 0:
                node, last = node >> 1, last >> 1
        else:
            new_computed = node_hash(new_computed, sibling)
        node, last = node >> 1, last >> 1
    return last == 0 and old_computed == old_root and new_computed == new_root


class Frontier:
    """The compact range of a tree from leaf 0: the roots of its right-edge perfect subtrees,
    largest first (one per set bit of the size, so at most log2(n)+1 hashes).

    A sealer keeps this instead of every leaf: appending a leaf merges equal-sized subtrees
    like a binary counter carries, and `root()` folds them from the right."""

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        kept = list(hashes)
        if not _is_size(size):
            raise ValueError(f"a tree size is a whole number ≥ 0, not {size!r}")
        if len(kept) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} frontier"
                             f" hashes, not {len(kept)}")
        if not all(_is_hash(h) for h in kept):
            raise ValueError(f"every frontier hash is {HASH_SIZE} bytes")
        self._size = size
        self._hashes = kept

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The right-edge subtree roots, largest subtree first."""
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash at the right edge."""
        if not _is_hash(leaf):
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes")
        merged, carry = leaf, self._size
        while carry & 1:  # each full subtree of this size joins the new one
            merged = node_hash(self._hashes.pop(), merged)
            carry >>= 1
        self._hashes.append(merged)
        self._size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add leaf hashes in order."""
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """The root of the tree of every leaf appended (`EMPTY_ROOT` for none)."""
        if not self._hashes:
            return EMPTY_ROOT
        folded = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            folded = node_hash(left, folded)
        return folded

    def to_json(self) -> list[str]:
        """The hashes as base64 strings, to store beside the size."""
        return [base64.b64encode(h).decode("ascii") for h in self._hashes]

    @classmethod
    def from_json(cls, size: int, data: list[str]) -> Frontier:
        """The frontier `to_json` gave for a tree of `size` leaves; ValueError when the
        count of hashes or any of them does not fit that size."""
        if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
            raise ValueError("frontier hashes are a list of base64 strings")
        try:
            hashes = [base64.b64decode(item, validate=True) for item in data]
        except (binascii.Error, ValueError):
            raise ValueError("a frontier hash is not base64") from None
        return cls(size, hashes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable: appending changes it

    def __repr__(self) -> str:
        return f"Frontier(size={self._size}, root={self.root().hex()})"
