"""`recipient_hash = "hmac-sha256"` (SPEC 9.5): the key's recipient hash and the index's
identifier hashes are HMAC-SHA256 under the project's key file, never the SHA-256 Iterable's
layout uses, and `sm find` (local and remote) still finds the recipient by any spelling."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stored_messages_cli.config.privacy import load_key_file, load_or_create_key_file
from tests.support.investigation_support import (
    ArchiveTarget,
    Invoke,
    archive,
    cli_for,
    email,
    sms,
    target_for,
)

ANN = "Ann.Lee@Example.com"


@pytest.fixture(params=["file", "s3"])
def keyed(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Invoke, ArchiveTarget, Path]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('recipient_hash = "hmac-sha256"\n')
    target = target_for(request, tmp_path)
    cli = cli_for(home)
    archive(cli, target, [email("mail-1", to=ANN), sms("sms-1", user_id="u-77")])
    return cli, target, home


def test_keys_carry_the_hmac_not_the_iterable_sha256(keyed: tuple[Invoke, ArchiveTarget, Path]
                                                     ) -> None:
    _, target, home = keyed
    key_file = home / "keys" / "recipient-hash.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secret = load_key_file(key_file)
    keys = target.keys()
    iterable = hashlib.sha256(b"ann.lee@example.com").hexdigest()
    keyed_hash = hmac.new(secret, b"ann.lee@example.com", hashlib.sha256).hexdigest()
    assert not any(iterable in k for k in keys)
    assert any(f"/{keyed_hash}/111/mail-1.json.gz" in k for k in keys)
    user = hmac.new(secret, b"u-77", hashlib.sha256).hexdigest()
    assert any(f"/{user}/unassociated/sms-1.json.gz" in k for k in keys)


def test_find_still_finds_the_recipient_locally_and_remotely(
        keyed: tuple[Invoke, ArchiveTarget, Path], tmp_path: Path) -> None:
    cli, target, home = keyed
    for spelling in (ANN, " ann.lee@EXAMPLE.com ", "ann.lee@example.com"):
        found = cli("--json", "find", "--recipient", spelling)
        assert [r["message_id"] for r in json.loads(found.stdout)] == ["mail-1"], spelling
    # by the SMS recipient's other identifier (the phone number): the index has its HMAC
    found = cli("--json", "find", "--recipient", "+15555550100")
    assert [r["message_id"] for r in json.loads(found.stdout)] == ["sms-1"]
    remote = cli("--json", "find", "--remote", "--recipient", "ann.lee@example.com")
    assert remote.exit_code == 0, remote.output
    assert [r["message_id"] for r in json.loads(remote.stdout)] == ["mail-1"]
    # a home with another hash key finds nothing: the hashes are keyed
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.toml").write_text('recipient_hash = "hmac-sha256"\n')
    elsewhere = cli_for(other)
    assert elsewhere("connect", target.url, "--project", "12345", "--read-only",
                     *target.connect_options).exit_code == 0
    lost = elsewhere("--json", "find", "--remote", "--recipient", "ann.lee@example.com")
    assert json.loads(lost.stdout or "[]") == []


def test_the_key_file_is_made_once_by_racing_processes(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "recipient-hash.key"
    code = ("import sys; from pathlib import Path;"
            " from stored_messages_cli.config.privacy import load_or_create_key_file as f;"
            " sys.stdout.write(f(Path(sys.argv[1])).hex())")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                              env=env) for _ in range(4)]
    seen = {p.communicate()[0] for p in procs}
    assert len(seen) == 1 and len(next(iter(seen))) == 64
    assert load_or_create_key_file(path).hex() == next(iter(seen)).decode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no staged file left


@pytest.mark.parametrize("content", [b"", b"short\n", b"!" * 44 + b"\n", b"A" * 300])
def test_a_key_file_that_is_not_a_key_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(Exception, match="not a key file"):
        load_key_file(path)


def test_a_key_file_open_to_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    load_or_create_key_file(path)
    path.chmod(0o644)
    with pytest.raises(Exception, match="open to other users"):
        load_key_file(path)


def test_connect_explains_sha256_and_says_nothing_once_keyed(tmp_path: Path) -> None:
    plain = cli_for(tmp_path / "plain")
    said = plain("connect", f"file://{tmp_path / 'a'}/", "--project", "1")
    assert said.exit_code == 0, said.output
    assert "plain SHA-256" in said.output and "hmac-sha256" in said.output
    home = tmp_path / "keyed"
    home.mkdir()
    (home / "config.toml").write_text('recipient_hash = "hmac-sha256"\n')
    keyed = cli_for(home)("connect", f"file://{tmp_path / 'b'}/", "--project", "1")
    assert keyed.exit_code == 0 and "plain SHA-256" not in keyed.output


def test_a_wrong_privacy_value_is_a_config_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('encryption = "aes"\n')
    result = cli_for(home)("--json", "find", "--recipient", "x@example.com")
    assert result.exit_code != 0
    assert "per-recipient" in result.output
