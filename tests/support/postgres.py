"""A real PostgreSQL server for the tests, started once per test session (once per xdist worker).

`initdb` + `pg_ctl` on a temporary folder, listening on 127.0.0.1 on a free port (and a unix
socket in the same folder), trust authentication, durability off (the tests kill `sm`
processes, never the database). Each test gets its own database, made from a template, so
tests stay independent. Run as root, the server runs as the `postgres` user (PostgreSQL
refuses to run as root). Tests that need it skip, with the reason, only when no PostgreSQL
server binaries can be found; `scripts/test.sh` installs them on Debian.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

SERVER_USER = "postgres"  # the superuser initdb creates (and, run as root, the OS user)


def find_bindir() -> Path | None:
    """The folder holding `initdb` and `pg_ctl`: $SM_TEST_PG_BINDIR, PATH, or Debian's."""
    candidates = [os.environ.get("SM_TEST_PG_BINDIR", "")]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    candidates += sorted(glob.glob("/usr/local/pgsql*/bin"), reverse=True)
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    """`argv` run as the non-root `postgres` user when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", SERVER_USER, "--", *argv]


@dataclass
class PostgresServer:
    """A running test server: its folder, port and a way to make databases."""

    bindir: Path
    folder: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        """The libpq URL of `database` on this server (no password: trust authentication)."""
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE) as the superuser."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, template: str = "template0") -> str:
        """A new, empty database (a copy of `template`); returns its name."""
        name = f"sm_test_{uuid.uuid4().hex[:12]}"
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop a test database, disconnecting anyone still on it (a killed worker's session)."""
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_server(bindir: Path, *, durable: bool = False) -> PostgresServer:
    """initdb a temporary cluster and start it; raises RuntimeError with the server's log.

    Tests run without fsync (they kill sm, never the server); `durable` keeps PostgreSQL's
    defaults, for benchmarks.
    """
    folder = Path(tempfile.mkdtemp(prefix="sm-test-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam(SERVER_USER)
        os.chown(folder, account.pw_uid, account.pw_gid)
    os.chmod(folder, 0o700)
    data = folder / "data"
    log = folder / "server.log"
    init = subprocess.run(
        _as_server_user([str(bindir / "initdb"), "-D", str(data), "-U", SERVER_USER,
                         "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"]),
        capture_output=True, text=True)
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed: {init.stderr or init.stdout}")
    port = free_port()
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder}"
               " -c max_connections=300 -c shared_buffers=64MB")
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    started = subprocess.run(
        _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                         "-w", "-t", "60", "start"]),
        capture_output=True, text=True)
    if started.returncode != 0:
        text = log.read_text(errors="replace") if log.exists() else started.stderr
        raise RuntimeError(f"pg_ctl start failed: {text[-2000:]}")
    return PostgresServer(bindir, folder, port)


def stop_server(server: PostgresServer) -> None:
    """Stop the server at once and delete its folder."""
    subprocess.run(_as_server_user([str(server.bindir / "pg_ctl"), "-D",
                                    str(server.folder / "data"), "-m", "immediate", "-w",
                                    "stop"]), capture_output=True)
    shutil.rmtree(server.folder, ignore_errors=True)


def _missing(reason: str) -> NoReturn:
    """Skip for lack of PostgreSQL on a developer's machine; fail in CI."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI needs PostgreSQL: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session.

    Without PostgreSQL the tests that need it skip on a developer's machine, and fail in CI
    (`CI=true`): there a missing server is a broken set-up, not a reason to test less.
    """
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (pip install -e '.[test]' installs it)")
    bindir = find_bindir()
    if bindir is None:
        _missing("PostgreSQL server binaries (initdb, pg_ctl) not found: install the"
                 " postgresql package (scripts/test.sh does on Debian) or set"
                 " SM_TEST_PG_BINDIR")
    server = start_server(bindir)
    try:
        deadline = time.monotonic() + 30
        while True:  # pg_ctl -w waited for the socket; make sure TCP answers too
            try:
                server.admin("SELECT 1")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def postgres_spool_template(postgres_server: PostgresServer) -> str:
    """A database holding an empty, fully migrated spool, to copy for each test."""
    from stored_messages_cli.spool import Spool

    name = postgres_server.create_database()
    Spool(postgres_server.url(name)).close()
    return name


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database of its own for one test (dropped afterwards)."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture
def postgres_spool_url(postgres_server: PostgresServer, postgres_spool_template: str
                       ) -> Iterator[str]:
    """The URL of a fresh, empty, migrated spool database of its own for one test."""
    name = postgres_server.create_database(template=postgres_spool_template)
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


SPOOL_BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=SPOOL_BACKENDS)
def spool_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each spool backend in turn: SQLite (spool.db in SM_HOME), then a fresh PostgreSQL
    spool selected by SM_SPOOL_URL (so `Spool.open`, the CLI and `sm run` subprocesses of
    the test all use it). Modules of the spool contract use it for every test:
    `pytestmark = pytest.mark.usefixtures("spool_backend")`."""
    if request.param == "postgresql":
        monkeypatch.setenv("SM_SPOOL_URL", request.getfixturevalue("postgres_spool_url"))
    else:
        monkeypatch.delenv("SM_SPOOL_URL", raising=False)
    return str(request.param)
