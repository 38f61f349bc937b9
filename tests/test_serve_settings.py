"""`serve_max_queued` (SPEC 9.3, 9.6): a setting of config.toml and of `SM_SERVE_MAX_QUEUED`,
a whole number of at least 1, the environment winning over the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from stored_messages_cli.config.settings import load_settings
from stored_messages_cli.errors import ConfigError


def test_the_default_is_one_million(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SM_SERVE_MAX_QUEUED", raising=False)
    assert load_settings(tmp_path / "config.toml").serve_max_queued == 1_000_000


def test_config_toml_sets_it_and_the_environment_wins(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text("serve_max_queued = 5000\n")
    monkeypatch.delenv("SM_SERVE_MAX_QUEUED", raising=False)
    assert load_settings(config).serve_max_queued == 5000
    monkeypatch.setenv("SM_SERVE_MAX_QUEUED", "70")
    assert load_settings(config).serve_max_queued == 70


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "many"])
def test_a_bad_value_is_blamed_on_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               value: str) -> None:
    monkeypatch.setenv("SM_SERVE_MAX_QUEUED", value)
    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path / "config.toml")
    assert str(raised.value).startswith(f"environment variable SM_SERVE_MAX_QUEUED='{value}'")
    assert raised.value.hint == "fix or unset SM_SERVE_MAX_QUEUED"


def test_a_bad_value_in_the_file_names_the_key(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SM_SERVE_MAX_QUEUED", raising=False)
    config = tmp_path / "config.toml"
    config.write_text("serve_max_queued = 0\n")
    with pytest.raises(ConfigError, match="serve_max_queued"):
        load_settings(config)
