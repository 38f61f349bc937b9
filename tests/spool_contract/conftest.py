"""The spool contract: every test in this folder runs on each spool backend in turn.

A test module added here gets SQLite and PostgreSQL without opting in; a test that is about
one backend only says so with `@pytest.mark.parametrize("spool_backend", ["sqlite"],
indirect=True)`.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def every_spool_backend(spool_backend: str) -> str:
    """Run the test once per backend (`spool_backend` is parametrized over both)."""
    return spool_backend
