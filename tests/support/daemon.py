"""Run a real `sm run` process against a file:// destination, and talk to it (issue 12 tests)."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stored_messages_cli import Spool
from stored_messages_cli.config.projects import ProjectDestination
from stored_messages_cli.config.writer import save_projects
from tests.support.fixtures.core import SMS_MESSAGE

PROJECT = "12345"


def sms(index: int, prefix: str = "m") -> dict[str, Any]:
    """A confirmed SMS message with its own id."""
    message = copy.deepcopy(SMS_MESSAGE)
    message["message_id"] = f"{prefix}-{index}"
    return message


def prepare_home(home: Path, archive: Path, count: int, prefix: str = "m") -> None:
    """A home whose project 12345 archives to `archive`, with `count` queued messages."""
    archive.mkdir(mode=0o700, exist_ok=True)
    save_projects(home / "config.toml", {PROJECT: ProjectDestination(url=f"file://{archive}/")})
    record(home, count, prefix)


def record(home: Path, count: int, prefix: str = "m") -> None:
    """Record `count` more confirmed messages, as a sender would."""
    with Spool.open(home=home) as spool:
        spool.record_many([sms(i, prefix) for i in range(count)])


def sm_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an `sm` child process on `home`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "SM_METRICS_ADDR")}
    env.update(SM_HOME=str(home), SM_POLL_INTERVAL="0.05", **extra)
    return env


def start_run(home: Path, log: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """`sm --log-format json run ARGS…` in the background, stderr to `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "stored_messages_cli.cli.app", "--log-format", "json", "run",
         *args], env=sm_env(home, **env), stdout=subprocess.PIPE, stderr=log.open("wb"))


def sm(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`sm ARGS…` to completion."""
    return subprocess.run([sys.executable, "-m", "stored_messages_cli.cli.app", *args],
                          env=sm_env(home, **env), capture_output=True, text=True, timeout=60)


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll until `predicate()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; (0, error) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)
