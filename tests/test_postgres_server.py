"""The test PostgreSQL server itself: each test's database is its own."""

from __future__ import annotations

from typing import Any


def test_each_test_database_is_fresh_and_separate(postgres_server: Any, postgres_url: str
                                                  ) -> None:
    import psycopg

    other = postgres_server.create_database()
    try:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE only_here (n int)")
            conn.execute("INSERT INTO only_here VALUES (7)")
            assert conn.execute("SELECT n FROM only_here").fetchall() == [(7,)]
            assert conn.execute("SHOW server_version_num").fetchone()[0] >= "150000"
        with psycopg.connect(postgres_server.url(other), autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('only_here')").fetchone() == (None,)
    finally:
        postgres_server.drop_database(other)
