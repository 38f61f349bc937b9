"""Start-up: a command imports only what it uses (docs/performance.md, "Start-up").

`sm --json status` answers from the spool and config.toml alone, so it must load neither
pydantic (the message and settings models), nor Rich (JSON needs no console), nor any cloud
SDK; `sm --version` loads not even Typer. Each case runs the real entry point in a fresh
interpreter and lists the modules it ended with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from stored_messages_cli.spool import Spool

HEAVY = ("pydantic", "pydantic_core", "pydantic_settings", "rich", "boto3", "botocore",
         "google", "azure", "prometheus_client", "urllib3", "phonenumbers")

_RUN = """
import atexit, json, sys
sys.argv = ["sm", *json.loads(sys.argv[1])]
atexit.register(lambda: sys.stderr.write("MODULES " + json.dumps(sorted(sys.modules)) + "\\n"))
from stored_messages_cli.cli.app import main
main()
"""


def loaded_modules(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `sm ARGS` in a fresh interpreter; its result and the top-level modules it loaded."""
    result = subprocess.run([sys.executable, "-c", _RUN, json.dumps(list(args))],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "SM_HOME": str(home)})
    line = next(x for x in result.stderr.splitlines() if x.startswith("MODULES "))
    return result, {name.split(".")[0] for name in json.loads(line.removeprefix("MODULES "))}


def new_spool(home: Path) -> None:
    """An empty spool in `home` (read-only commands refuse a home without one)."""
    with Spool.open(home=home):
        pass


def test_status_loads_no_pydantic_rich_or_sdk(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text('[projects."1"]\nurl = "s3://bucket/prefix/"\n')
    new_spool(home)
    result, modules = loaded_modules(home, "--json", "status")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["destinations"][0]["url"] == "s3://bucket/prefix/"
    assert sorted(modules.intersection(HEAVY)) == []


def test_status_in_a_terminal_form_still_renders_with_rich(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    new_spool(home)
    result, modules = loaded_modules(home, "status")
    assert result.returncode == 0, result.stderr
    assert "awaiting_confirmation" in result.stdout
    assert "rich" in modules and "pydantic" not in modules and "phonenumbers" not in modules


def test_version_loads_no_typer(tmp_path: Path) -> None:
    result, modules = loaded_modules(tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.startswith("sm ")
    assert "typer" not in modules and "pydantic" not in modules
    assert "phonenumbers" not in modules  # loaded only where a phone number is normalised
