"""The habits of well-made CLIs (`gh`, `aws`): global options anywhere, and every bad value a
one-line usage error with a `Try:` line and exit 2, while operational failures exit 1."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

BOX = re.compile("[╭╮╰╯│─]")


def usage_error_lines(result) -> list[str]:
    """The stderr lines of a usage error, after checking its form."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert not BOX.search(result.stderr), f"a boxed panel:\n{result.stderr}"
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("Error: ") and lines[1].startswith("Try: "), result.stderr
    return lines


# ----------------------------------------------------------------- global options anywhere


def test_json_after_the_command(cli, spool) -> None:
    status = cli("status", "--json")
    assert status.exit_code == 0, status.stderr
    assert "counts" in json.loads(status.stdout)
    destinations = cli("destinations", "--json")
    assert destinations.exit_code == 0, destinations.stderr
    assert json.loads(destinations.stdout) == []


def test_every_global_option_after_the_command(cli, tmp_path: Path) -> None:
    other = tmp_path / "other-home"
    result = cli("ingest", "-", "--home", str(other), "--json", "-q", "--log-format", "json",
                 input='{"not": "a message"}\n')
    assert result.exit_code == 1
    assert json.loads(result.stdout)["rejected"] == 1
    assert (other / "spool.db").exists()  # --home after the command chose the spool
    verbose = cli("destinations", "-vv", "--home=" + str(other))
    assert verbose.exit_code == 0, verbose.stderr


def test_a_value_that_looks_like_a_global_option_stays_a_value(cli, spool) -> None:
    # `--campaign -q` asks for campaign "-q"; -q is not moved before the command
    result = cli("find", "--campaign", "-q", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_a_subcommand_of_a_group_takes_global_options_too(cli, spool) -> None:
    result = cli("spool", "prune", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["dry_run"] is True


# ----------------------------------------------------------------- bad values: exit 2

CONNECT = ["connect", "--project", "12345"]
BAD_VALUES = [
    # unknown options and commands
    (["status", "--jsn"], "No such option: --jsn", "sm status --help"),
    (["archive-everything"], "No such command", "sm --help"),
    (["--log-format", "yaml", "status"], "use text or json", None),
    # destination URLs
    ([*CONNECT, "ftp://files.example.com/archive/"], "unsupported scheme 'ftp://'",
     "sm connect s3://BUCKET/PREFIX --project ID"),
    ([*CONNECT, "file://demo/archive/"], "relative file URL", "sm connect file:///"),
    ([*CONNECT, "file:demo/archive"], "relative file URL", "sm connect file:///"),
    ([*CONNECT, "demo/archive"], "is not a URL", "/demo/archive/ --project ID"),
    ([*CONNECT, "/srv/archive"], "is not a URL", "sm connect file:///srv/archive/"),
    ([*CONNECT, "s3:///prefix/"], "has no bucket name", "sm connect s3://BUCKET/PREFIX"),
    # names the provider would refuse
    ([*CONNECT, "s3://ab/"], "not a valid S3 bucket name", "3-63 lowercase"),
    ([*CONNECT, "s3://acme..archive/"], "two dots in a row", None),
    ([*CONNECT, "s3://192.168.10.1/"], "IP address", None),
    ([*CONNECT, "s3://xn--archive/"], "reserved", None),
    ([*CONNECT, "gs://google-archive/"], "not a valid Cloud Storage bucket name", None),
    ([*CONNECT, "gs://-archive/"], "not a valid Cloud Storage bucket name", None),
    ([*CONNECT, "az://Archive/"], "not a valid Azure container name", None),
    ([*CONNECT, "az://archive--2026/"], "not a valid Azure container name", None),
    (["bucket", "create", "s3://Acme_Archive/"], "not a valid S3 bucket name", None),
    (["bucket", "create", "gs://acme-archive/"], "unsupported scheme 'gs://'",
     "sm bucket create s3://"),
    (["policy", "az://acme-archive/"], "unsupported scheme 'az://'", "sm policy s3://"),
    # other values
    ([*CONNECT, "file:///srv/archive/", "--medium", "fax"], "'fax'", None),
    ([*CONNECT, "file:///srv/archive/", "--retention-days", "0"], "--retention-days", None),
    ([*CONNECT, "file:///srv/archive/", "--retention-days", "3", "--retention-mode",
      "forever"], "governance or compliance", None),
    (["connect", "file:///srv/archive/", "--project", "a b"], "project_id", None),
    (["policy", "s3://acme-archive/", "--kms-key-arn", "alias/archive"],
     "not a KMS key ARN", "--kms-key-arn arn:aws:kms:"),
    (["policy", "s3://acme-archive/", "--kms-key-arn",
      "arn:aws:kms:eu-west-1:1234:key/nope"], "not a KMS key ARN", None),
    (["bucket", "create", "s3://acme-archive/", "--kms-key-id", "my key"],
     "not a KMS key id", None),
    (["find", "--medium", "fax"], "'fax'", None),
    (["find", "--since", "2026-11-02", "--until", "2026-11-01"], "is after --until", None),
    (["find", "--since", "yesterday"], "not a time", None),
    (["fetch", "9c438a20", "--part", "pdf"], "'pdf'", None),
    (["export", "--format", "eml", "--output", "x", "--medium", "fax"], "'fax'", None),
    (["export", "--format", "eml", "--output", "x", "--since", "1d", "--until", "2d"],
     "is after --until", None),
    (["export", "--format", "pdf", "--output", "x"], "'pdf'", None),
    (["status", "--max-age", "soon"], "not a duration", None),
    (["spool", "prune", "--older-than", "soon"], "not a duration", None),
    (["run", "--metrics-addr", "nope:port", "--once"], "HOST:PORT", None),
    (["run", "--concurrency", "0"], "--concurrency", None),
    (["show", "not an id!"], "message_id", None),
]


@pytest.mark.parametrize(("args", "error", "try_line"), BAD_VALUES,
                         ids=[" ".join(a) for a, _, _ in BAD_VALUES])
def test_every_bad_value_is_a_one_line_usage_error(cli, sm_home, args, error,
                                                   try_line) -> None:
    result = cli(*args)
    lines = usage_error_lines(result)
    assert error in lines[0], lines
    if try_line:
        assert try_line in lines[1], lines
    assert not (sm_home / "config.toml").exists()  # nothing was saved


def test_audit_with_an_inverted_range_is_a_usage_error(cli, tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir(mode=0o700)
    assert cli("connect", f"file://{folder}/", "--project", "12345").exit_code == 0
    usage_error_lines(cli("audit", "--since", "1d", "--until", "2d"))


def test_a_relative_file_url_suggests_the_absolute_one(cli, tmp_path: Path,
                                                       monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    lines = usage_error_lines(cli("connect", "file://demo/archive/", "--project", "12345"))
    assert lines[1] == f"Try: sm connect file://{tmp_path}/demo/archive/ --project ID"


# ----------------------------------------------------------------- operational failures: 1


def test_operational_failures_stay_exit_1(cli) -> None:
    verify = cli("verify")
    assert verify.exit_code == 1
    assert verify.stderr.startswith("Error: no project has a destination")
    show = cli("show", "9c438a20")
    assert show.exit_code == 1
    assert not BOX.search(show.stderr)
