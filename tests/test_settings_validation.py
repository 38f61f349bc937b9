"""Settings are validated: an unknown key in config.toml is an error naming it (with a
suggestion for a near miss); zero or negative intervals, windows, leases and concurrency are
refused; a bad `SM_*` variable is blamed on the variable, not on the file; an unreadable or
invalid config.toml is one `Error:` line with a `Try:`, exit 1, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def write_config(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "config.toml"
    config.write_text(text)
    return config


def assert_config_error(result: Any, error: str, hint: str) -> None:
    """Exit 1, exactly `Error: …` and `Try: …`, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stderr.splitlines() == [f"Error: {error}", f"Try: {hint}"], result.stderr


def test_an_unknown_setting_is_named_with_a_suggestion(cli, sm_home) -> None:
    config = write_config(sm_home, 'retry_intervall = "8h"\n')
    assert_config_error(cli("run", "--once"),
                        f"{config}: unknown setting 'retry_intervall' (did you mean"
                        " 'retry_interval'?)",
                        f"fix or remove it in {config}; the settings are listed in docs/cli.md")


def test_an_unknown_setting_far_from_any_gets_no_suggestion(cli, sm_home) -> None:
    config = write_config(sm_home, "colour = 3\n")
    result = cli("run", "--once")
    assert result.exit_code == 1
    assert f"Error: {config}: unknown setting 'colour'\n" in result.stderr


def test_an_unknown_key_in_a_project_table_is_named(cli, sm_home, tmp_path) -> None:
    config = write_config(sm_home, f'[projects."12345"]\nurl = "file://{tmp_path}/a/"\n'
                          'medium = ["sms"]\n')
    assert_config_error(cli("destinations"),
                        f"{config}: unknown key in [projects.\"12345\"] 'medium' (did you mean"
                        " 'mediums'?)",
                        f"fix or remove it in {config}; the settings are listed in docs/cli.md")


@pytest.mark.parametrize(("line", "error"), [
    ("retry_interval = 0", "retry_interval = 0: must be more than 0 seconds, not 0"),
    ("retry_window = -3600", "retry_window = -3600: must be more than 0 seconds, not -3600"),
    ('lease_seconds = "0s"', "lease_seconds = '0s': must be more than 0 seconds, not 0"),
    ("concurrency = 0", "concurrency = 0: must be at least 1, not 0"),
    ("concurrency = -4", "concurrency = -4: must be at least 1, not -4"),
    ("poll_interval = nan", "poll_interval = nan: must be more than 0 seconds, not nan"),
])
def test_zero_or_negative_values_in_the_file_are_refused(cli, sm_home, line, error) -> None:
    config = write_config(sm_home, line + "\n")
    field = line.split(" ", 1)[0]
    assert_config_error(cli("run", "--once"), f"{config}: {error}",
                        f"fix {field} in {config}")


@pytest.mark.parametrize(("variable", "value", "reason"), [
    ("SM_CONCURRENCY", "0", "must be at least 1, not 0"),
    ("SM_RETRY_INTERVAL", "-5", "'-5' is not a duration (examples: 30s, 15m, 8h, 7d)"),
    ("SM_LEASE_SECONDS", "0", "must be more than 0 seconds, not 0"),
    ("SM_RETRY_WINDOW", "soon", "'soon' is not a duration (examples: 30s, 15m, 8h, 7d)"),
    # list settings are JSON in the environment (SPEC 9.6); text that is not JSON is the
    # variable's fault, not the file's
    ("SM_CHECKPOINT_COPIES", "file:///srv/copy/", "not JSON (a list or table setting is"
     ' given as JSON, e.g. ["1m", "5m"])'),
    ("SM_RECOVERY_PROBES", "1m,5m", "not JSON (a list or table setting is given as JSON,"
     ' e.g. ["1m", "5m"])'),
    ("SM_TRUSTED_KEYS", '["sm-a+01020304+AQ", ""]',
     'must be a list of non-empty strings, e.g. ["file:///srv/copy"]'),
])
def test_a_bad_environment_variable_is_blamed_on_the_variable(cli, sm_home, monkeypatch,
                                                              variable, value, reason) -> None:
    write_config(sm_home, 'retry_interval = "8h"\nconcurrency = 4\n')  # the file is fine
    monkeypatch.setenv(variable, value)
    result = cli("run", "--once")
    assert_config_error(result, f"environment variable {variable}={value!r} is not valid:"
                        f" {reason}", f"fix or unset {variable}")
    assert "config.toml" not in result.stderr


def test_invalid_toml_is_one_line(cli, sm_home) -> None:
    config = write_config(sm_home, "retry_interval = \n")
    result = cli("run", "--once")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"Error: {config} is not valid TOML (")
    assert lines[1] == f"Try: fix the line it names in {config}"


def test_a_config_that_is_not_utf8_is_one_line(cli, sm_home) -> None:
    config = sm_home / "config.toml"
    sm_home.mkdir()
    config.write_bytes(b"retry_interval = \"\xff\"\n")
    assert_config_error(cli("run", "--once"), f"{config} is not valid TOML (not UTF-8 text)",
                        f"fix or remove {config}")


def test_an_unreadable_config_is_one_line(cli, sm_home) -> None:
    (sm_home / "config.toml").mkdir(parents=True)  # unreadable as a file, even for root
    config = sm_home / "config.toml"
    assert_config_error(cli("run", "--once"), f"cannot read {config}: Is a directory",
                        f"check the file's permissions (ls -l {config}) or choose another"
                        " --home")


def test_valid_settings_still_load(cli, sm_home) -> None:
    write_config(sm_home, 'retry_interval = "30m"\nretry_window = "2d"\nconcurrency = 2\n'
                 'log_format = "json"\n')
    from stored_messages_cli.config.settings import load_settings

    settings = load_settings(sm_home / "config.toml")
    assert (settings.retry_interval, settings.retry_window, settings.concurrency) == (
        1800.0, 172800.0, 2)
