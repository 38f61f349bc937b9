"""The RFC 6962 Merkle tree of a log (SPEC 9.1): the reference vectors, an independent naive
reading of the RFC, and an attacker who edits proofs, roots, indexes and sizes."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stored_messages_cli.evidence.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from tests.support import rfc6962

# Reference vectors of Certificate Transparency, as kept in github.com/transparency-dev/merkle
# (testonly/constants.go: LeafInputs, NodeHashes, RootHashes; proof/verify_test.go:
# inclusionProofs, consistencyProofs). The Go file numbers leaves from 1; here from 0.
LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f")]
LEAF_HASHES = [bytes.fromhex(h) for h in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1")]
ROOTS = {size: bytes.fromhex(h) for size, h in enumerate((
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"))}
INCLUSION_PROOFS = [  # (leaf index from 0, tree size, audit path)
    (0, 1, []),
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY_PROOFS = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
OTHER_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def hexes(hashes: list[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hashes]


def flipped(value: bytes, bit: int) -> bytes:
    changed = bytearray(value)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


def test_leaf_and_node_hashes_are_the_reference_ones() -> None:
    assert [leaf_hash(leaf) for leaf in LEAVES] == LEAF_HASHES
    assert node_hash(LEAF_HASHES[0], LEAF_HASHES[1]) == ROOTS[2]
    assert EMPTY_ROOT == ROOTS[0]


@pytest.mark.parametrize("size", range(9))
def test_roots_of_every_prefix_are_the_reference_ones(size: int) -> None:
    assert root(LEAF_HASHES[:size]) == ROOTS[size]
    frontier = Frontier()
    frontier.extend(LEAF_HASHES[:size])
    assert frontier.root() == ROOTS[size]
    assert rfc6962.mth(LEAVES[:size]) == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_PROOFS)
def test_reference_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    expected = hexes(path)
    assert inclusion_proof(index, LEAF_HASHES[:size]) == expected
    assert rfc6962.path(index, LEAVES[:size]) == expected
    assert verify_inclusion(LEAF_HASHES[index], index, size, expected, ROOTS[size])
    assert rfc6962.verify_inclusion(LEAF_HASHES[index], index, size, expected, ROOTS[size])
    assert not rfc6962.verify_inclusion(LEAF_HASHES[index], index, size, [*expected, OTHER_HASH],
                                        ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_PROOFS)
def test_reference_consistency_proofs(old: int, new: int, proof: list[str]) -> None:
    expected = hexes(proof)
    assert consistency_proof(old, LEAF_HASHES[:new]) == expected
    assert verify_consistency(old, new, ROOTS[old], ROOTS[new], expected)
    if old < new:
        assert rfc6962.proof(old, LEAVES[:new]) == expected
        assert rfc6962.verify_consistency(old, new, ROOTS[old], ROOTS[new], expected)


# From proof/verify_test.go's TestVerifyConsistency table, with sm's rule for the empty tree:
# every tree extends it, given an empty proof and the empty tree's root.
ROOT_A, ROOT_B = b"a" * 32, b"b" * 32


@pytest.mark.parametrize(("old", "new", "old_root", "new_root", "proof", "expected"), [
    (0, 0, ROOT_A, ROOT_B, [], False),
    (1, 1, ROOT_A, ROOT_B, [], False),
    (0, 0, ROOT_A, ROOT_A, [], True),
    (1, 1, ROOT_B, ROOT_B, [], True),
    (1, 0, ROOT_A, ROOT_B, [], False),
    (2, 1, ROOT_A, ROOT_B, [], False),
    (1, 2, ROOT_A, ROOT_B, [], False),
    (0, 0, EMPTY_ROOT, ROOT_B, [], False),
    (1, 1, EMPTY_ROOT, ROOT_B, [], False),
    (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    (0, 5, EMPTY_ROOT, ROOTS[5], [], True),
    (0, 5, ROOT_A, ROOTS[5], [], False),
])
def test_consistency_edge_cases(old: int, new: int, old_root: bytes, new_root: bytes,
                                proof: list[bytes], expected: bool) -> None:
    assert verify_consistency(old, new, old_root, new_root, proof) is expected


@pytest.mark.parametrize(("index", "size"), [(0, 0), (0, 1), (1, 0), (2, 1), (-1, 1)])
def test_inclusion_in_impossible_places_never_verifies(index: int, size: int) -> None:
    for leaf, tree_root in ((OTHER_HASH, b""), (b"", EMPTY_ROOT), (OTHER_HASH, EMPTY_ROOT)):
        assert not verify_inclusion(leaf, index, size, [], tree_root)


@pytest.mark.parametrize("garbage", [
    ["not bytes"], [b"short"], [None], [OTHER_HASH + b"x"], [bytearray(32)]])
def test_malformed_proofs_are_false_not_errors(garbage: list) -> None:
    assert not verify_inclusion(LEAF_HASHES[0], 0, 2, garbage, ROOTS[2])
    assert not verify_consistency(1, 2, ROOTS[1], ROOTS[2], garbage)
    assert not verify_inclusion(LEAF_HASHES[0], 0, 1, [], "a root")  # type: ignore[arg-type]
    assert not verify_consistency(True, 2, ROOTS[1], ROOTS[2], garbage)  # type: ignore[arg-type]


def test_proofs_refuse_indexes_outside_the_tree() -> None:
    with pytest.raises(ValueError):
        inclusion_proof(8, LEAF_HASHES)
    with pytest.raises(ValueError):
        inclusion_proof(-1, LEAF_HASHES)
    with pytest.raises(ValueError):
        consistency_proof(9, LEAF_HASHES)
    assert consistency_proof(0, LEAF_HASHES) == []
    assert consistency_proof(8, LEAF_HASHES) == []


leaf_lists = st.lists(st.binary(max_size=12), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(entries=leaf_lists)
def test_frontier_and_root_agree_with_the_rfc(entries: list[bytes]) -> None:
    hashes = [leaf_hash(entry) for entry in entries]
    frontier = Frontier()
    for count, leaf in enumerate(hashes, start=1):
        frontier.append(leaf)
        assert frontier.size == count
        assert len(frontier.hashes) == count.bit_count()
        assert frontier.root() == root(hashes[:count]) == rfc6962.mth(entries[:count])
    again = Frontier.from_json(frontier.size, frontier.to_json())
    assert again == frontier
    again.append(leaf_hash(b"one more"))
    assert again.root() == root([*hashes, leaf_hash(b"one more")])


unique_leaf_lists = st.lists(st.binary(max_size=12), min_size=1, max_size=40, unique=True)


def more_leaves(hashes: list[bytes], count: int) -> list[bytes]:
    """`hashes` followed by `count` leaves none of them holds."""
    return [*hashes, *(leaf_hash(b"more %d" % i + b"\xff" * 13) for i in range(count))]


@settings(max_examples=40, deadline=None)
@given(entries=unique_leaf_lists, data=st.data())
def test_every_inclusion_proof_verifies_and_any_change_breaks_it(entries: list[bytes],
                                                                 data: st.DataObject) -> None:
    hashes = [leaf_hash(entry) for entry in entries]
    size, tree_root = len(hashes), root(hashes)
    for index in range(size):
        path = inclusion_proof(index, hashes)
        assert path == rfc6962.path(index, entries)
        assert verify_inclusion(hashes[index], index, size, path, tree_root)
        assert rfc6962.verify_inclusion(hashes[index], index, size, path, tree_root)
    index = data.draw(st.integers(0, size - 1), label="index")
    path = inclusion_proof(index, hashes)
    leaf = hashes[index]
    bit = data.draw(st.integers(0, 255), label="bit")
    assert not verify_inclusion(leaf, index, size, path, flipped(tree_root, bit))
    assert not verify_inclusion(flipped(leaf, bit), index, size, path, tree_root)
    for position in range(len(path)):
        changed = [*path[:position], flipped(path[position], bit), *path[position + 1:]]
        assert not verify_inclusion(leaf, index, size, changed, tree_root)
    for other_index in {index - 1, index + 1, index ^ 2, 2 * index + 1} - {index}:
        assert not verify_inclusion(leaf, other_index, size, path, tree_root)
    assert not verify_inclusion(leaf, index, size, path[:-1], tree_root) or not path
    assert not verify_inclusion(leaf, index, size, [*path, OTHER_HASH], tree_root)
    # A proof names its tree size only through the root (the signed checkpoint binds the
    # two): against the genuine root of another size, only that size's own proof verifies.
    grown = more_leaves(hashes, size)
    for other_size in {size - 1, size + 1, 2 * size, size // 2} - {size}:
        if other_size > index:
            genuine = inclusion_proof(index, grown[:other_size])
            assert verify_inclusion(leaf, index, other_size, path, root(grown[:other_size])) \
                is (path == genuine)


@settings(max_examples=25, deadline=None)
@given(entries=st.lists(st.binary(max_size=8), min_size=2, max_size=24, unique=True),
       data=st.data())
def test_every_consistency_proof_verifies_and_any_change_breaks_it(
        entries: list[bytes], data: st.DataObject) -> None:
    hashes = [leaf_hash(entry) for entry in entries]
    roots = [root(hashes[:size]) for size in range(len(hashes) + 1)]
    for new in range(len(hashes) + 1):
        for old in range(new + 1):
            proof = consistency_proof(old, hashes[:new])
            assert verify_consistency(old, new, roots[old], roots[new], proof)
            if 0 < old < new:
                assert proof == rfc6962.proof(old, entries[:new])
                assert rfc6962.verify_consistency(old, new, roots[old], roots[new], proof)
    new = data.draw(st.integers(2, len(hashes)), label="new")
    old = data.draw(st.integers(1, new - 1), label="old")
    proof = consistency_proof(old, hashes[:new])
    bit = data.draw(st.integers(0, 255), label="bit")
    assert not verify_consistency(old, new, flipped(roots[old], bit), roots[new], proof)
    assert not verify_consistency(old, new, roots[old], flipped(roots[new], bit), proof)
    for position in range(len(proof)):
        changed = [*proof[:position], flipped(proof[position], bit), *proof[position + 1:]]
        assert not verify_consistency(old, new, roots[old], roots[new], changed)
    for other_old in {old - 1, old + 1} - {0, new}:
        assert not verify_consistency(other_old, new, roots[old], roots[new], proof)
        assert verify_consistency(other_old, new, roots[other_old], roots[new], proof) is (
            proof == consistency_proof(other_old, hashes[:new]))
    grown = more_leaves(hashes, 1)
    for other_new in {new - 1, new + 1} - {old}:  # sizes bind through the signed roots only
        assert verify_consistency(old, other_new, roots[old], root(grown[:other_new]),
                                  proof) is (proof == consistency_proof(old, grown[:other_new]))
    assert not verify_consistency(old, new, roots[old], roots[new], proof[:-1])
    assert not verify_consistency(old, new, roots[old], roots[new], [*proof, OTHER_HASH])


def test_a_forked_log_fails_consistency() -> None:
    honest = LEAF_HASHES
    forked = [*LEAF_HASHES[:3], leaf_hash(b"rewritten"), *LEAF_HASHES[4:]]
    proof = consistency_proof(5, forked)
    assert not verify_consistency(5, 8, root(honest[:5]), root(forked), proof)
    assert not verify_consistency(5, 8, root(forked[:5]), root(honest), proof)


@pytest.mark.parametrize(("size", "data", "problem"), [
    (3, [], "frontier"),
    (1, ["AA=="], "32 bytes"),
    (2, ["not base64!"], "base64"),
    (-1, [], "whole number"),
    (1, [base64.b64encode(b"x" * 32).decode(), base64.b64encode(b"y" * 32).decode()],
     "frontier"),
    (1, [7], "list of base64"),
])
def test_frontier_from_json_refuses_what_cannot_be_a_frontier(size: int, data: list,
                                                             problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Frontier.from_json(size, data)


def test_roots_of_a_hundred_thousand_leaves_are_fast() -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(100_000)]
    started = time.perf_counter()
    whole = root(hashes)
    frontier = Frontier()
    frontier.extend(hashes)
    elapsed = time.perf_counter() - started
    assert frontier.root() == whole
    assert len(frontier.hashes) == (100_000).bit_count()
    assert elapsed < 1.0, f"{elapsed:.2f}s"
    path = inclusion_proof(77_777, hashes)
    assert verify_inclusion(hashes[77_777], 77_777, 100_000, path, whole)
