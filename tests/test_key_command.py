"""`sm key init|show` and the signing key file (SPEC 9.1): private on disk, created once,
refused when others can read it, and its verifier key checks what the key signs."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stored_messages_cli.cli.app import app
from stored_messages_cli.errors import ConfigError
from stored_messages_cli.evidence.note import (
    NoteVerifier,
    format_checkpoint,
    open_note,
    parse_checkpoint,
    sign_note,
)
from stored_messages_cli.evidence.signing import (
    default_key_name,
    load_or_create_signing_key,
    load_signing_key,
    signing_key_path,
)

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_a_private_key_and_prints_its_verifier_key(cli, sm_home: Path) -> None:
    result = cli("key", "init")
    assert result.exit_code == 0, result.output
    verifier_key = result.stdout.strip()
    assert result.stdout == verifier_key + "\n"
    verifier = NoteVerifier.parse(verifier_key)
    assert verifier.name == default_key_name()
    key_file = sm_home / "keys" / "signing.key"
    assert mode_of(key_file) == 0o600
    assert mode_of(key_file.parent) == 0o700
    assert mode_of(sm_home) == 0o700
    content = key_file.read_text()
    assert content.startswith(f"PRIVATE+KEY+{verifier.name}+{verifier.key_id.hex()}+")
    assert content.endswith("\n") and content.count("\n") == 1
    assert "auditor" in result.stderr and str(key_file) in result.stderr
    assert [p.name for p in key_file.parent.iterdir()] == ["signing.key"]  # nothing staged left


def test_a_second_init_keeps_the_key(cli, sm_home: Path) -> None:
    first = cli("--json", "key", "init", "--name", "sm-mail1.example.com")
    key_file = sm_home / "keys" / "signing.key"
    before = key_file.read_bytes()
    again = cli("--json", "key", "init", "--name", "other-name")
    assert again.exit_code == 0, again.output
    assert key_file.read_bytes() == before
    created, kept = json.loads(first.stdout), json.loads(again.stdout)
    assert created == {"key_file": str(key_file), "verifier_key": created["verifier_key"],
                       "created": True}
    assert kept == dict(created, created=False)
    assert created["verifier_key"].startswith("sm-mail1.example.com+")
    human = cli("key", "init")
    assert human.stdout.strip() == created["verifier_key"]
    assert "exists" in human.stderr


def test_show_prints_a_verifier_key_that_checks_what_the_key_signs(cli, sm_home: Path) -> None:
    assert cli("key", "init").exit_code == 0
    shown = cli("key", "show")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.count("\n") == 1 and shown.stderr == ""
    verifier = NoteVerifier.parse(shown.stdout.strip())
    signer = load_signing_key(sm_home / "keys" / "signing.key")
    checkpoint = format_checkpoint("file:///archive/#12345", 3, bytes(32))
    opened = open_note(sign_note(checkpoint, signer), [verifier])
    assert opened.verified_by == [verifier.name]
    assert parse_checkpoint(opened.text).tree_size == 3
    as_json = json.loads(cli("--json", "key", "show").stdout)
    assert as_json == {"key_file": str(sm_home / "keys" / "signing.key"),
                       "verifier_key": verifier.verifier_key}


def test_show_without_a_key_says_what_to_run_and_creates_nothing(cli, sm_home: Path) -> None:
    result = cli("key", "show")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: no signing key at {sm_home / 'keys' / 'signing.key'}", "Try: sm key init"]
    assert not sm_home.exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_others_can_read_is_refused(cli, sm_home: Path, mode: int) -> None:
    assert cli("key", "init").exit_code == 0
    key_file = sm_home / "keys" / "signing.key"
    key_file.chmod(mode)
    for args in (("key", "show"), ("key", "init")):
        result = cli(*args)
        assert result.exit_code == 1
        error, hint = result.stderr.splitlines()
        assert error.startswith(f"Error: the signing key {key_file} is open to other users")
        assert hint == f"Try: chmod 600 {key_file}"
    key_file.chmod(0o600)
    assert cli("key", "show").exit_code == 0


def test_a_file_that_is_no_key_is_refused_in_one_line(cli, sm_home: Path) -> None:
    key_file = sm_home / "keys" / "signing.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("PRIVATE+KEY+someone+00000000+AAAA\n")
    key_file.chmod(0o600)
    result = cli("key", "show")
    assert result.exit_code == 1
    error, hint = result.stderr.splitlines()
    assert error.startswith(f"Error: {key_file} is not a signing key:")
    assert hint.startswith("Try: restore the key file from a backup")


def test_a_name_no_signature_line_can_hold_is_refused(cli, sm_home: Path) -> None:
    for name in ("two words", "a+b"):
        result = cli("key", "init", "--name", name)
        assert result.exit_code == 1
        assert result.stderr.startswith(f"Error: {name!r} cannot be a key name")
    assert not (sm_home / "keys" / "signing.key").exists()


def test_the_setting_log_key_file_moves_the_key(cli, sm_home: Path, tmp_path: Path) -> None:
    sm_home.mkdir(mode=0o700)
    (sm_home / "config.toml").write_text('log_key_file = "secrets/log.key"\n')
    created = json.loads(cli("--json", "key", "init").stdout)
    assert created["key_file"] == str(sm_home / "secrets" / "log.key")
    assert mode_of(sm_home / "secrets") == 0o700
    assert not (sm_home / "keys").exists()
    elsewhere = tmp_path / "elsewhere.key"
    (sm_home / "config.toml").write_text(f'log_key_file = "{elsewhere}"\n')
    moved = json.loads(cli("--json", "key", "init").stdout)
    assert moved["key_file"] == str(elsewhere) and moved["created"] is True
    assert cli("key", "show").stdout.strip() == moved["verifier_key"]


def test_sm_home_alone_chooses_the_key(sm_home: Path) -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["--json", "key", "init"])
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["key_file"] == str(sm_home / "keys" / "signing.key")
    assert runner.invoke(app, ["key", "show"]).stdout.strip() == json.loads(
        created.stdout)["verifier_key"]


def test_racing_creators_all_end_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "home" / "keys" / "signing.key"
    start = threading.Barrier(8)
    results: list[tuple[str, bool]] = []

    def create() -> None:
        start.wait()
        signer, created = load_or_create_signing_key(path, "sm-race")
        results.append((signer.verifier_key(), created))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({key for key, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert load_signing_key(path).verifier_key() == results[0][0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["signing.key"]


def test_a_key_file_of_go_note_tools_loads(tmp_path: Path) -> None:
    path = tmp_path / "go.key"
    path.write_text(GO_SKEY + "\n")
    path.chmod(0o600)
    assert load_signing_key(path).verifier_key() == (
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    path.write_text("x" * 5000)
    with pytest.raises(ConfigError, match="too large"):
        load_signing_key(path)
    with pytest.raises(ConfigError, match="no signing key"):
        load_signing_key(tmp_path / "missing.key")
    with pytest.raises(ConfigError, match="not a file"):
        load_signing_key(tmp_path)


@pytest.mark.parametrize("host", ["mail 1.example.com", "a+b", "", "ホスト", "+++", "x_y.z"])
def test_default_key_name_is_always_a_valid_name(host: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: host)
    name = default_key_name()
    assert re.fullmatch(r"sm-[A-Za-z0-9.-]+", name), name
    assert NoteVerifier.from_public_key(name, bytes(32)).name == name


def test_signing_key_path_follows_the_setting(tmp_path: Path) -> None:
    assert signing_key_path(tmp_path, None) == tmp_path / "keys" / "signing.key"
    assert signing_key_path(tmp_path, "") == tmp_path / "keys" / "signing.key"
    assert signing_key_path(tmp_path, "/etc/sm/log.key") == Path("/etc/sm/log.key")
    assert signing_key_path(tmp_path, "k/log.key") == tmp_path / "k" / "log.key"
    home = Path(os.path.expanduser("~"))
    assert signing_key_path(tmp_path, "~/log.key") == home / "log.key"


def test_a_fifo_at_the_key_path_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "signing.key"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError, match="not a file"):
        load_signing_key(fifo)
