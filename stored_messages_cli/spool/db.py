"""The spool's database: connection, pragmas, transactions and numbered schema migrations.

One SQLite file (WAL, `synchronous=FULL`), written only inside `BEGIN IMMEDIATE`
transactions, so several sender processes and `sm run` can share it.

The schema is the list of numbered, append-only steps in `migrations.STEPS` (each step's
SQLite body in `sqlite/schema.py`); `PRAGMA user_version` holds the number of the last step
applied. A spool at the latest version opens with one pragma read (fast `sm status`).
Never edit a released step: add the next one.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..clock import Clock
from ..config import ensure_private_dir
from ..errors import SmError
from . import postgres
from .lock import SpoolLock
from .migrations import LATEST_VERSION, STEPS, postgres_steps
from .postgres import schema as postgres_schema
from .store import Settled, SettledHook, SpoolError, SpoolFull, SpoolVersionError

__all__ = ["LATEST_VERSION", "Settled", "SettledHook", "SpoolDB", "SpoolError", "SpoolFull",
           "SpoolVersionError", "immediate_transaction", "migrate", "spool_error"]

# 0.1.0 versioned its schema by a CRC of its code: any user_version above this is one of those.
LEGACY_FINGERPRINT_FLOOR = 1000


def spool_error(exc: sqlite3.Error, path: Path) -> SpoolError:
    """One clear error, with the next step, for what SQLite said about the spool file."""
    text = str(exc).lower()
    if "full" in text:
        return SpoolFull(f"the disk holding {path} is full; nothing was written",
                         hint="free some space (sm spool prune && sm spool vacuum) and retry")
    if "readonly" in text or "read-only" in text:
        return SpoolError(f"{path} is read-only for this user",
                          hint=f"check the permissions of {path.parent} (SM_HOME)")
    if "unable to open" in text:
        return SpoolError(f"cannot open {path} ({exc})",
                          hint=f"check that {path.parent} exists and is writable (SM_HOME)")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return SpoolError(f"{path} is not a readable spool (corrupt or truncated: {exc})",
                          hint="restore it from a backup (sm spool backup makes one), or move it"
                          " aside to start an empty spool")
    if "locked" in text or "busy" in text:
        return SpoolError(f"{path} stayed locked by another process for too long",
                          hint="check for a stuck process holding the spool, then retry")
    return SpoolError(f"the spool {path} failed: {exc}")


@contextmanager
def immediate_transaction(conn: Any, lock: SpoolLock, begin: str = "BEGIN IMMEDIATE"
                          ) -> Iterator[Any]:
    """One `BEGIN IMMEDIATE` transaction on `conn` under `lock` (one lock per connection).

    Committed on success, rolled back on error; writers of other processes wait on the busy
    timeout instead of failing with "database is locked".
    """
    with lock:
        conn.execute(begin)
        try:
            yield conn
            conn.execute("COMMIT")  # a COMMIT that fails (disk full) is rolled back too
        except BaseException:
            if conn.in_transaction:  # SQLite may already have rolled back (disk full)
                conn.execute("ROLLBACK")
            raise


class SpoolDB:
    """The shared connection, its lock and the clock every part of the spool uses.

    `location` is a file path (SQLite, the default: `conn`, a `sqlite3.Connection`) or a
    `postgresql://` URL (a fleet's shared spool: `session`, a `postgres.PgSession`). Each
    store runs its own SQL on its own one.
    """

    def __init__(self, location: str | os.PathLike[str], clock: Clock) -> None:
        self.clock = clock
        self.lock = SpoolLock()
        self.settled_hooks: list[SettledHook] = []
        self.url: str | None = None
        if postgres.is_postgres_url(location):
            self._open_postgres(str(location))
            return
        self.errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
        self.path = Path(location)
        self.location = str(self.path)
        try:
            ensure_private_dir(self.path.parent)
        except OSError as exc:
            raise SpoolError(f"cannot create {self.path.parent}: {exc.strerror or exc}",
                             hint="set SM_HOME to a folder you can write") from None
        old_umask = os.umask(0o077)  # the db, -wal and -shm files are owner-only
        try:
            self.conn: sqlite3.Connection = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA busy_timeout=60000")
            self.conn.execute("PRAGMA foreign_keys=ON")
            migrate(self.conn, self.lock)
        except sqlite3.Error as exc:
            raise spool_error(exc, self.path) from None
        finally:
            os.umask(old_umask)
        self._identity = self._file_identity()
        for suffix in ("", "-wal", "-shm"):  # files made by an older umask are closed too
            try:
                os.chmod(f"{self.path}{suffix}", 0o600)
            except OSError:
                pass

    def _open_postgres(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise SpoolError("a postgresql:// spool needs psycopg",
                             hint="pip install 'stored-messages-cli[postgres]'") from None
        self.url = url
        self.location = postgres.redact(url)
        self.path = Path(self.location)  # for display only: nothing is a file here
        self.errors = (psycopg.Error,)
        self._identity = None
        try:
            self.session = postgres.PgSession(url)
            postgres_schema.migrate(self.session, postgres_steps())
        except psycopg.Error as exc:
            raise postgres.spool_error(exc, url) from None

    @property
    def is_postgres(self) -> bool:
        """True for a shared PostgreSQL spool."""
        return self.url is not None

    def failure(self, exc: BaseException) -> SmError:
        """The SpoolError for a database error of this spool."""
        if self.url is not None:
            return postgres.spool_error(exc, self.url)
        assert isinstance(exc, sqlite3.Error)
        return spool_error(exc, self.path)

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[None]:
        """One `BEGIN IMMEDIATE` transaction: committed on success, rolled back on error.

        `durable=False` commits without an fsync (WAL, `synchronous=NORMAL`): for writes a
        crash may lose without harm, like a claim's lease (the message is simply claimed
        again). The next durable commit syncs them too: the WAL is one ordered log.
        SQLite's disk-full, read-only and corruption errors become one SpoolError each.
        On PostgreSQL the transaction holds the spool's write lock (`PgSession.transaction`).
        """
        if self.url is not None:
            try:
                with self.lock, self.session.transaction(write_lock=True, durable=durable):
                    yield
            except self.errors as exc:
                raise self.failure(exc) from None
            return
        try:
            with self.lock:
                if not durable:
                    self.conn.execute("PRAGMA synchronous=NORMAL")
                try:
                    with immediate_transaction(self.conn, self.lock):
                        yield
                finally:
                    if not durable:
                        self.conn.execute("PRAGMA synchronous=FULL")
        except self.errors as exc:
            raise self.failure(exc) from None

    @contextmanager
    def claiming(self) -> Iterator[None]:
        """A transaction that only leases rows (`Queue.claim`), committed without an fsync
        (a lost lease is simply claimed again): SQLite's write lock, or PostgreSQL's row
        locks (`FOR UPDATE SKIP LOCKED`) so workers claim in parallel."""
        if self.url is not None:
            try:
                with self.lock, self.session.transaction(write_lock=False, durable=False):
                    yield
            except self.errors as exc:
                raise self.failure(exc) from None
            return
        try:
            with self.lock:
                self.conn.execute("PRAGMA synchronous=NORMAL")
                try:
                    with immediate_transaction(self.conn, self.lock):
                        yield
                finally:
                    self.conn.execute("PRAGMA synchronous=FULL")
        except self.errors as exc:
            raise self.failure(exc) from None

    def read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """Rows of one query on the SQLite connection, as `sqlite3.Row`."""
        with self.lock:
            try:
                cursor = self.conn.execute(sql, tuple(params))
                cursor.row_factory = sqlite3.Row
                rows: list[sqlite3.Row] = cursor.fetchall()
                return rows
            except self.errors as exc:
                raise self.failure(exc) from None

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_dev, found.st_ino

    def check_file(self) -> None:
        """Raise SpoolError when the spool file was deleted or replaced since it was opened.

        Writes would otherwise go to a file no other process reads (a deleted inode), or two
        spools would each believe they are the one.
        """
        if self.url is not None:
            return  # a database server, not a file that can be replaced under us
        now = self._file_identity()
        if now != self._identity:
            what = "deleted" if now is None else "replaced by another file"
            raise SpoolError(f"{self.path} was {what} while this process had it open",
                             hint="restore the spool file, then start sm again")

    def settled(self, settled: list[Settled]) -> None:
        """Run the `on_settled` hooks inside the transaction that settled these messages."""
        if settled:
            for hook in self.settled_hooks:
                hook(settled)

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            if self.url is not None:
                self.session.close()
            else:
                self.conn.close()


# --------------------------------------------------------------------------- migrations


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


def _applied(conn: sqlite3.Connection) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > LATEST_VERSION:
        if version >= LEGACY_FINGERPRINT_FLOOR and _has_table(conn, "messages"):
            return 1  # a 0.1.0 spool: its layout is step 1
        raise SpoolVersionError(
            f"this spool has schema version {version}; this sm knows up to {LATEST_VERSION}",
            hint="upgrade sm (pip install -U stored-messages-cli)")
    return version


def migrate(conn: sqlite3.Connection, lock: SpoolLock) -> int:
    """Bring the schema to `LATEST_VERSION`; returns how many steps ran."""
    if int(conn.execute("PRAGMA user_version").fetchone()[0]) == LATEST_VERSION:
        return 0
    with immediate_transaction(conn, lock):
        applied = _applied(conn)  # re-read under the write lock: another process may have won
        for number in range(applied + 1, LATEST_VERSION + 1):
            STEPS[number - 1].sqlite(conn)
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION}")
    return LATEST_VERSION - applied
