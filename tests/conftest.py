"""Shared fixtures. Emulators start once per test session (see tests/support/fixtures/)."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.support.fixtures.core",
    "tests.support.fixtures.s3",
    "tests.support.fixtures.faults",
    "tests.support.fixtures.gcs",
    "tests.support.fixtures.azure",
    "tests.support.postgres",
    "tests.support.tsa",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
