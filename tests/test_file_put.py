"""The folder destination's write path: what each put leaves on disk."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
from pathlib import Path

import pytest

from stored_messages_cli.destinations.file import TEMP_FOLDER, FileDestination
from stored_messages_cli.errors import ObjectConflict


def body(text: str) -> tuple[bytes, str]:
    payload = text.encode()
    return gzip.compress(payload, mtime=0), hashlib.sha256(payload).hexdigest()


def test_puts_into_new_and_existing_folders_leave_only_objects(tmp_path: Path) -> None:
    """A put that makes its folders, one into a folder another put made, and one of a key
    already there: each object once, its bytes exact, folders 0700, no temp file left."""
    root = tmp_path / "archive"
    root.mkdir(mode=0o700)
    destination = FileDestination(f"file://{root}/")
    first, first_sha = body('{"n":1}')
    second, second_sha = body('{"n":2}')
    assert destination.put("a/b/c/one.json.gz", first, first_sha).created is True
    assert destination.put("a/b/c/two.json.gz", second, second_sha).created is True
    assert destination.put("a/b/c/one.json.gz", first, first_sha).created is False
    with pytest.raises(ObjectConflict):
        destination.put("a/b/c/one.json.gz", second, second_sha)
    assert (root / "a/b/c/one.json.gz").read_bytes() == first
    assert (root / "a/b/c/two.json.gz").read_bytes() == second
    for folder in ("a", "a/b", "a/b/c", TEMP_FOLDER):
        assert stat.S_IMODE((root / folder).stat().st_mode) == 0o700
    assert os.listdir(root / TEMP_FOLDER) == []


def test_a_symlinked_folder_in_the_key_is_refused_even_below_a_new_one(tmp_path: Path) -> None:
    """A folder made by this put is walked like any other: a symlink under an existing
    folder is refused and nothing is written through it."""
    root, outside = tmp_path / "archive", tmp_path / "outside"
    root.mkdir(mode=0o700)
    outside.mkdir()
    (root / "a").mkdir(mode=0o700)
    (root / "a" / "b").symlink_to(outside)
    destination = FileDestination(f"file://{root}/")
    data, sha = body('{"n":3}')
    with pytest.raises(Exception, match="symlink"):
        destination.put("a/b/c/three.json.gz", data, sha)
    assert list(outside.iterdir()) == []


def test_two_writers_racing_into_new_folders_create_each_key_once(tmp_path: Path) -> None:
    """Two destinations (as two `sm run` processes on one folder would be) put the same 200
    keys, each in folders neither has yet, at once: a writer that made the folder skips its
    existence probe, so the exclusive link alone must settle every race. Each key is created
    exactly once, the other put finds the same bytes, and no temp file is left."""
    import threading

    root = tmp_path / "archive"
    root.mkdir(mode=0o700)
    writers = [FileDestination(f"file://{root}/"), FileDestination(f"file://{root}/")]
    objects = [(f"p{n % 7}/r{n}/c/{n}.json.gz", *body(f'{{"n":{n}}}')) for n in range(200)]
    created: list[list[bool]] = [[], []]
    start = threading.Barrier(2)

    def write(index: int) -> None:
        start.wait()
        for key, data, sha in objects:
            created[index].append(writers[index].put(key, data, sha).created)

    threads = [threading.Thread(target=write, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a + b for a, b in zip(*created, strict=True)] == [1] * len(objects)
    for key, data, _ in objects:
        assert (root / key).read_bytes() == data
    assert os.listdir(root / TEMP_FOLDER) == []
