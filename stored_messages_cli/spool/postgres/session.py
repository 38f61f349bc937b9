"""One psycopg connection to a PostgreSQL spool, in PostgreSQL's own SQL (`%s` placeholders).

psycopg is imported only here (and only when a `postgresql://` spool is opened). A connection
the server dropped (a restart, a fail-over, an idle timeout) is opened again before a
transaction or a read outside one: nothing is lost, since nothing of it had run. Inside a
transaction the error stands (the transaction is gone) and the caller's ROLLBACK ends it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

# Advisory lock key (any fixed 64-bit number, unlikely to clash with an application's):
# "smspool" 1, one writer at a time, as SQLite's BEGIN IMMEDIATE.
WRITE_LOCK = 0x736D_7370_6F6F_6C01


class PgSession:
    """The spool's connection: autocommit, explicit BEGIN/COMMIT, UTC."""

    def __init__(self, url: str) -> None:
        import psycopg  # an optional dependency: only a PostgreSQL spool needs it

        self.url = url
        self._psycopg = psycopg
        self.errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        self._in_transaction = False  # BEGIN sent, COMMIT/ROLLBACK not yet
        self._closed = False
        self._trace: Callable[[str], object] | None = None
        self._conn = self._connect()

    def _connect(self) -> Any:
        conn = self._psycopg.connect(self.url, autocommit=True, application_name="sm")
        conn.execute("SET TIME ZONE 'UTC'")
        return conn

    def set_trace_callback(self, callback: Callable[[str], object] | None) -> None:
        """Call `callback(sql)` with each statement run (as `sqlite3` does; for tests)."""
        self._trace = callback

    @contextmanager
    def transaction(self, *, write_lock: bool, durable: bool = True) -> Iterator[PgSession]:
        """BEGIN … COMMIT, rolled back on error. `write_lock` takes the spool's write lock
        (one writer at a time across hosts, as SQLite's BEGIN IMMEDIATE: read-then-write
        steps keep their guarantees); a claim takes row locks only. Not `durable`: the
        COMMIT does not wait for the WAL flush (a lost lease is simply claimed again)."""
        self.execute("BEGIN")
        try:
            if write_lock:
                self.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
            if not durable:
                self.execute("SET LOCAL synchronous_commit = off")
            yield self
            self.execute("COMMIT")
        except BaseException:
            if self.in_transaction:
                self.execute("ROLLBACK")
            raise

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None, *,
                row_factory: Any = None) -> Any:
        """Run one statement and return its psycopg cursor (rows as tuples, unless
        `row_factory`; None for the ROLLBACK of a transaction the server dropped)."""
        if self._trace is not None:
            self._trace(sql)
        verb = sql.lstrip()[:8].upper()
        if self._conn.broken and not self._closed:
            if self._in_transaction:
                if verb.startswith("ROLLBACK"):
                    self._in_transaction = False
                    return None  # the server already ended the transaction
            else:
                self._conn = self._connect()
        may_retry = not self._in_transaction and verb.startswith(("BEGIN", "SELECT"))
        try:
            cursor = self._run(sql, params, row_factory)
        except self._psycopg.OperationalError:
            if not (may_retry and self._conn.broken and not self._closed):
                raise
            self._conn = self._connect()  # the server dropped us before anything ran
            cursor = self._run(sql, params, row_factory)
        if verb.startswith("BEGIN"):
            self._in_transaction = True
        elif verb.startswith(("COMMIT", "ROLLBACK")):
            self._in_transaction = False
        return cursor

    def _run(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None,
             row_factory: Any) -> Any:
        cursor = (self._conn.cursor() if row_factory is None
                  else self._conn.cursor(row_factory=row_factory))
        cursor.execute(sql, params)
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        """Run one statement for each parameter row; the cursor's `rowcount` is their total."""
        cursor = self._conn.cursor()
        cursor.executemany(sql, list(rows))
        return cursor

    @property
    def in_transaction(self) -> bool:
        """True inside an explicit transaction (also a failed one, until ROLLBACK)."""
        if self._conn.broken:
            return self._in_transaction
        status = self._conn.info.transaction_status
        return bool(status != self._psycopg.pq.TransactionStatus.IDLE)

    def close(self) -> None:
        """Close the connection."""
        self._closed = True
        self._conn.close()
