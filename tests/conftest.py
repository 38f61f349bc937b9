"""Shared fixtures. Emulators start once per test session (see tests/fixtures/)."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.core",
    "tests.fixtures.s3",
    "tests.fixtures.faults",
    "tests.fixtures.gcs",
    "tests.fixtures.azure",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
