"""Choosing the spool: spool.db by default, or a shared PostgreSQL database (docs/fleet.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stored_messages_cli.errors import ConfigError
from stored_messages_cli.spool import Spool
from stored_messages_cli.spool.postgres import check_spool_url


def test_a_password_in_config_toml_is_refused(sm_home: Path) -> None:
    sm_home.mkdir(mode=0o700)
    (sm_home / "config.toml").write_text(
        'spool_url = "postgresql://sm:hunter2@db.internal/sm?sslmode=verify-full"\n')
    with pytest.raises(ConfigError) as refused:
        Spool.open(home=sm_home)
    assert "carries a password" in str(refused.value)
    assert "hunter2" not in str(refused.value)
    assert "PGPASSWORD" in (refused.value.hint or "")


@pytest.mark.parametrize("url", [
    "postgresql://sm@db.internal/sm",
    "postgresql://sm@db.internal/sm?sslmode=prefer",
    "postgresql://sm@10.0.0.5:5432/sm?sslmode=disable",
])
def test_another_host_without_tls_is_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    with pytest.raises(ConfigError) as refused:
        check_spool_url(url, source="SM_SPOOL_URL")
    assert "without requiring TLS" in str(refused.value)
    assert "sslmode=verify-full" in (refused.value.hint or "")


@pytest.mark.parametrize("url", [
    "postgresql://sm@db.internal/sm?sslmode=require",
    "postgresql://sm@db.internal/sm?sslmode=verify-full",
    "postgresql://sm@127.0.0.1:5432/sm",
    "postgresql://sm@localhost/sm",
    "postgresql://sm@[::1]/sm",
    "postgresql:///sm?host=/var/run/postgresql",
])
def test_tls_or_this_machine_is_accepted(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    monkeypatch.delenv("PGHOST", raising=False)
    check_spool_url(url, source="SM_SPOOL_URL")


def test_pgsslmode_or_an_explicit_allowance_accepts_another_host(
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://sm@db.internal/sm"
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    check_spool_url(url, source="SM_SPOOL_URL")
    monkeypatch.delenv("PGSSLMODE")
    check_spool_url(url, source="SM_SPOOL_URL", allow_insecure=True)


def test_without_a_url_the_spool_is_spool_db_in_the_home(
        sm_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SM_SPOOL_URL", raising=False)
    with Spool.open(home=sm_home) as spool:
        assert not spool.is_postgres
        assert spool.path == sm_home / "spool.db"
    assert (sm_home / "spool.db").exists()


def test_spool_option_env_and_config_each_select_postgresql(
        sm_home: Path, cli, postgres_spool_url: str, make_message,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SM_SPOOL_URL", raising=False)
    with Spool.open(postgres_spool_url) as spool:
        assert spool.is_postgres
        assert spool.record(make_message()) == "accepted"

    def queued(*args: str) -> int:
        result = cli(*args, "status", "--json")
        assert result.exit_code == 0, result.output
        return int(json.loads(result.stdout)["counts"]["queued"])

    with Spool.open(home=sm_home):
        pass  # the home's own spool.db, empty
    assert queued() == 0  # spool.db of the home
    assert queued("--spool", postgres_spool_url) == 1
    monkeypatch.setenv("SM_SPOOL_URL", postgres_spool_url)
    assert queued() == 1
    monkeypatch.delenv("SM_SPOOL_URL")
    (sm_home / "config.toml").write_text(f'spool_url = "{postgres_spool_url}"\n')
    assert queued() == 1


def test_an_unreachable_database_is_one_clear_error(cli, postgres_server,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.postgres import free_port

    monkeypatch.setenv("SM_SPOOL_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    result = cli("status")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot reach the spool database"
                                    " postgresql://postgres@127.0.0.1:")
    assert "pg_isready" in result.stderr


def _drop_connections(postgres_server, url: str) -> int:
    """Terminate every session on the spool's database (a restart or fail-over, as sm sees it)."""
    import psycopg

    database = url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        return len(admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (database,)).fetchall())


def test_a_dropped_connection_is_opened_again_and_nothing_is_lost(
        postgres_server, postgres_spool_url: str, make_message) -> None:
    from stored_messages_cli.spool import SpoolError

    with Spool.open(postgres_spool_url) as spool:
        assert spool.record(make_message(message_id="before")) == "accepted"
        assert _drop_connections(postgres_server, postgres_spool_url) == 1
        assert spool.record(make_message(message_id="after")) == "accepted"
        assert spool.status()["counts"]["queued"] == 2
        # Dropped inside a transaction: that transaction fails, as a whole, with a clear error.
        session = spool._db.session
        with pytest.raises(SpoolError, match="spool database"), spool._db.write():
            session.execute("UPDATE messages SET attempts = 7")
            _drop_connections(postgres_server, postgres_spool_url)
            session.execute("UPDATE messages SET attempts = 8")
        assert spool.record(make_message(message_id="later")) == "accepted"
        assert sorted(r["message_id"] for r in [spool.message_state("12345", m)
                                                for m in ("before", "after", "later")]) == [
            "after", "before", "later"]
        assert {spool.message_state("12345", m)["attempts"] for m in ("before", "after")} == {0}
