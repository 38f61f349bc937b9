"""docs/python-api.md runs as written, and the package exports its public names only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import stored_messages_cli

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def test_every_code_block_of_the_python_api_docs_runs(sm_home: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 3
    namespace: dict[str, object] = {}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"docs/python-api.md block {number}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "kept the first copy" in printed
    assert "rejected:" in printed
    assert "UnknownMessage" in printed


def test_the_package_exports_its_public_names_and_nothing_else() -> None:
    public = {"Spool", "EmailMessage", "SmsMessage", "PushMessage", "SmError",
              "InvalidMessage", "MessageConflict", "UnknownMessage"}
    assert set(stored_messages_cli.__all__) == public | {"__version__"}
    namespace: dict[str, object] = {}
    exec("from stored_messages_cli import *", namespace)
    assert set(namespace) - {"__builtins__"} == public | {"__version__"}
    assert set(dir(stored_messages_cli)) == public | {"__version__"}
    assert issubclass(stored_messages_cli.InvalidMessage, stored_messages_cli.SmError)
    assert issubclass(stored_messages_cli.MessageConflict, stored_messages_cli.SmError)
