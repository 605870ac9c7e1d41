"""SQLiteStore: conversations in one SQLite file, shared by the processes of one machine.

The file is in WAL mode, so readers never wait for the writer. Every write
is a ``BEGIN IMMEDIATE`` transaction: it takes the database's write lock
before it reads, so ``append_turn``'s turn-count check and its insert are
one atomic step across threads and processes. Each thread uses its own
connection. WAL needs a local file system (not NFS or SMB).

Every ``sqlite3`` failure becomes a :class:`~promptkit.StoreError` in one
place, :meth:`SQLiteStore._transaction` (opening a connection included).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from .._errors import ConfigurationError, StoreError
from ._protocol import DEFAULT_LOCK_TTL, DEFAULT_STORE_TIMEOUT, check_id, check_index, check_optional_seconds, check_seconds, check_turn
from ._values import (
    FORMAT_VERSION,
    ConversationMeta,
    StoreConflictError,
    StoredConversation,
    StoredTurn,
    StoreFormatError,
)

__all__ = ["SQLiteStore"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS promptkit_schema (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS promptkit_conversations (
        id TEXT PRIMARY KEY,
        meta TEXT NOT NULL,
        turn_count INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        expires_at REAL
    )""",
    """CREATE TABLE IF NOT EXISTS promptkit_turns (
        conversation_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (conversation_id, idx)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS promptkit_locks (
        conversation_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL
    )""",
)


class SQLiteStore:
    """A :class:`~promptkit.stores.ConversationStore` in an SQLite file (stdlib ``sqlite3``).

    Safe to share between threads, and between processes on one machine
    that open the same file: web workers of one host can share it. The
    tables are created on first use, named ``promptkit_*``, so the file may
    also hold your own tables.

    Args:
        path: the database file (created when missing), or a ``file:`` URI
            such as ``"file:chats.db?mode=ro"`` (read-only: loading works,
            every write raises :class:`~promptkit.StoreError`). ``":memory:"``
            is refused, as every thread would get its own database: use
            :class:`~promptkit.stores.MemoryStore`.
        lock_ttl: default lifetime of a turn lock, in seconds.
        ttl: forget a conversation this many seconds after its last
            committed turn; ``None`` keeps it forever. Expired rows are
            skipped on read and removed by :meth:`purge_expired` or when the
            id is written again.
        timeout: how long an operation waits for the database's lock held by
            another connection, in seconds; then it fails with
            :class:`~promptkit.StoreError` ("database is locked").
        busy_timeout: the former name of ``timeout``; wins when given.
        clock: the time source for expiries, seconds since the epoch
            (``time.time``; the processes sharing a file must agree on it).

    Raises:
        StoreFormatError: the file's promptkit tables are from a newer version.
        StoreError: the file cannot be opened: not a database, a directory,
            locked beyond ``timeout``, or read-only without the tables.
    """

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        *,
        lock_ttl: float = DEFAULT_LOCK_TTL,
        ttl: Optional[float] = None,
        timeout: float = DEFAULT_STORE_TIMEOUT,
        busy_timeout: Optional[float] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = os.fspath(path)
        if not isinstance(self.path, str) or not self.path or self.path == ":memory:" or "mode=memory" in self.path:
            raise ConfigurationError("SQLiteStore needs a database file path; use MemoryStore for an in-memory store")
        self.lock_ttl = check_seconds("lock_ttl", lock_ttl)
        self.ttl = check_optional_seconds("ttl", ttl)
        self.timeout = check_seconds("timeout", timeout)
        if busy_timeout is not None:
            self.timeout = check_seconds("busy_timeout", busy_timeout)
        self._uri = self.path.startswith("file:")
        self.description = f"SQLiteStore({self.path})"
        self._clock = clock
        self._local = threading.local()
        self._conns: Dict[int, Tuple[threading.Thread, sqlite3.Connection]] = {}
        self._conns_lock = threading.Lock()
        self._closed = False
        self._init_schema()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, ttl={self.ttl})"

    def __str__(self) -> str:
        return self.description

    # -- connections and transactions ---------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: Optional[sqlite3.Connection] = getattr(self._local, "conn", None)
        if conn is not None and not self._closed:
            return conn
        with self._conns_lock:
            if self._closed:
                raise StoreError(f"{self.description} is closed", store=self.description)
            # A thread that ended left its connection behind: close those now.
            for ident, (thread, old) in list(self._conns.items()):
                if not thread.is_alive():
                    old.close()
                    del self._conns[ident]
            # isolation_level=None: no implicit transactions, we BEGIN ourselves.
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False, uri=self._uri
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except BaseException:
                conn.close()
                raise
            if str(mode).lower() != "wal":
                logger.warning("SQLite store %s is in journal mode %r, not WAL", self.path, mode)
            self._conns[threading.get_ident()] = (threading.current_thread(), conn)
        self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _transaction(self, begin: str, operation: str) -> Iterator["_Guarded"]:
        """One transaction; with :class:`_Guarded`, the one place where ``sqlite3`` errors become StoreErrors."""
        conn: Optional[sqlite3.Connection] = None
        try:
            conn = self._conn()
            conn.execute(begin)
        except sqlite3.Error as exc:
            cause = self._cause(exc)
        else:
            try:
                yield _Guarded(self, conn, operation)
            except BaseException:
                _rollback(conn)
                raise
            try:
                conn.execute("COMMIT")
                return
            except sqlite3.Error as exc:
                cause = self._cause(exc)
        if conn is not None:
            _rollback(conn)
        # Raised outside the except blocks: sqlite3's exception is not this one's context.
        raise self._error(operation, cause)

    def _cause(self, exc: sqlite3.Error) -> str:
        cause = str(exc) or type(exc).__name__
        if "locked" in cause or "busy" in cause:
            cause += f" (waited {self.timeout:g}s)"
        return cause

    def _error(self, operation: str, cause: str) -> StoreError:
        return StoreError(f"{self.description}: {operation} failed: {cause}", store=self.description, operation=operation)

    def _write(self, operation: str) -> "contextlib.AbstractContextManager[_Guarded]":
        # IMMEDIATE takes the write lock first, so what we read cannot change before we write.
        return self._transaction("BEGIN IMMEDIATE", operation)

    def _read(self, operation: str) -> "contextlib.AbstractContextManager[_Guarded]":
        # A read transaction sees one snapshot (WAL), so the meta and turns agree.
        return self._transaction("BEGIN", operation)

    def _init_schema(self) -> None:
        with self._read("open") as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
            complete = {"promptkit_schema", "promptkit_conversations", "promptkit_turns", "promptkit_locks"} <= tables
            if complete:  # nothing to create: a read-only file opens too
                self._check_schema(conn)
        if complete:
            return
        with self._write("open") as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            if _max_version(conn) is None:
                conn.execute("INSERT INTO promptkit_schema (version) VALUES (?)", (SCHEMA_VERSION,))
            self._check_schema(conn)

    def _check_schema(self, conn: "_Guarded") -> None:
        version = _max_version(conn)
        if version is not None and version > SCHEMA_VERSION:
            raise StoreFormatError(
                f"SQLite store {self.path} has schema version {version}, written by a newer promptkit; "
                f"this promptkit reads schema version {SCHEMA_VERSION} (format {FORMAT_VERSION}): upgrade promptkit"
            )

    @staticmethod
    def _drop(conn: "_Guarded", conversation_id: str) -> None:
        conn.execute("DELETE FROM promptkit_turns WHERE conversation_id = ?", (conversation_id,))
        conn.execute("DELETE FROM promptkit_conversations WHERE id = ?", (conversation_id,))

    # -- the protocol -----------------------------------------------------------------
    def load(self, conversation_id: str) -> Optional[StoredConversation]:
        """Read a conversation in one read transaction; ``None`` when it is missing or expired.

        See :meth:`ConversationStore.load <promptkit.stores.ConversationStore.load>`.
        """
        check_id(conversation_id)
        now = self._clock()
        with self._read("load") as conn:
            row = conn.execute(
                "SELECT meta, turn_count, expires_at FROM promptkit_conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if row is None or (row[2] is not None and row[2] <= now):
                return None
            rows = conn.execute(
                "SELECT data FROM promptkit_turns WHERE conversation_id = ? ORDER BY idx", (conversation_id,)
            ).fetchall()
        if len(rows) != row[1]:
            raise StoreError(
                f"{self.description}: load failed: conversation {conversation_id} has {len(rows)} turn rows, "
                f"expected {row[1]}",
                store=self.description,
                operation="load",
            )
        try:
            return StoredConversation(
                id=conversation_id,
                meta=ConversationMeta.from_json(row[0]),
                turns=[StoredTurn.from_json(r[0]) for r in rows],
            )
        except StoreFormatError as error:
            reason = str(error)
        raise StoreFormatError(f"{self.description}: load failed: {reason}", store=self.description, operation="load")

    def append_turn(self, conversation_id: str, turn: StoredTurn, *, index: int, meta: ConversationMeta) -> None:
        """Append ``turn`` as turn ``index`` in one IMMEDIATE transaction.

        See :meth:`ConversationStore.append_turn <promptkit.stores.ConversationStore.append_turn>`.

        Raises:
            StoreConflictError: the store holds a different number of turns than ``index``.
        """
        check_id(conversation_id)
        check_index(index)
        check_turn(turn, meta)
        turn_json = turn.to_json()
        with self._write("append") as conn:
            now = self._clock()
            expires_at = None if self.ttl is None else now + self.ttl
            row = conn.execute(
                "SELECT turn_count, expires_at FROM promptkit_conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if row is not None and row[1] is not None and row[1] <= now:
                self._drop(conn, conversation_id)  # expired: the id starts afresh
                row = None
            stored = 0 if row is None else row[0]
            if stored != index:
                raise StoreConflictError(conversation_id, index, stored)
            if row is None:
                conn.execute(
                    "INSERT INTO promptkit_conversations (id, meta, turn_count, updated_at, expires_at)"
                    " VALUES (?, ?, 1, ?, ?)",
                    (conversation_id, meta.to_json(), now, expires_at),
                )
            else:
                conn.execute(
                    "UPDATE promptkit_conversations SET turn_count = turn_count + 1, updated_at = ?, expires_at = ?"
                    " WHERE id = ?",
                    (now, expires_at, conversation_id),
                )
            conn.execute(
                "INSERT INTO promptkit_turns (conversation_id, idx, data) VALUES (?, ?, ?)",
                (conversation_id, index, turn_json),
            )

    def acquire(self, conversation_id: str, owner: str, ttl: Optional[float] = None) -> bool:
        """Take or renew the turn lock. See :class:`~promptkit.stores.ConversationStore`."""
        check_id(conversation_id)
        seconds = self.lock_ttl if ttl is None else check_seconds("ttl", ttl)
        with self._write("acquire") as conn:
            now = self._clock()
            row = conn.execute(
                "SELECT owner, expires_at FROM promptkit_locks WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO promptkit_locks (conversation_id, owner, expires_at) VALUES (?, ?, ?)",
                (conversation_id, owner, now + seconds),
            )
            return True

    def release(self, conversation_id: str, owner: str) -> None:
        """Release the turn lock if ``owner`` holds it. See :class:`~promptkit.stores.ConversationStore`."""
        check_id(conversation_id)
        with self._write("release") as conn:
            conn.execute(
                "DELETE FROM promptkit_locks WHERE conversation_id = ? AND owner = ?", (conversation_id, owner)
            )

    def list_ids(self) -> List[str]:
        """The ids of every unexpired conversation, sorted."""
        now = self._clock()
        with self._read("list") as conn:
            rows = conn.execute(
                "SELECT id FROM promptkit_conversations WHERE expires_at IS NULL OR expires_at > ? ORDER BY id", (now,)
            ).fetchall()
        return [r[0] for r in rows]

    def delete(self, conversation_id: str) -> bool:
        """Delete a conversation; ``True`` when it existed (and had not expired)."""
        check_id(conversation_id)
        with self._write("delete") as conn:
            row = conn.execute(
                "SELECT expires_at FROM promptkit_conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            self._drop(conn, conversation_id)
        return row is not None and (row[0] is None or row[0] > self._clock())

    def purge_expired(self) -> int:
        """Delete every expired conversation and lock now; returns how many conversations went."""
        with self._write("purge") as conn:
            now = self._clock()
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM promptkit_conversations WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
                ).fetchall()
            ]
            for conversation_id in ids:
                self._drop(conn, conversation_id)
            conn.execute("DELETE FROM promptkit_locks WHERE expires_at <= ?", (now,))
        return len(ids)

    def close(self) -> None:
        """Close every thread's connection; later calls raise :class:`~promptkit.stores.StoreError`. Idempotent."""
        with self._conns_lock:
            self._closed = True
            conns = [conn for _, conn in self._conns.values()]
            self._conns.clear()
        for conn in conns:
            conn.close()


class _Guarded:
    """The connection as a transaction's body sees it: a ``sqlite3`` error is raised as a StoreError.

    The error is built here, outside any ``except`` block, so it does not
    carry the driver's exception along as its ``__context__``.
    """

    __slots__ = ("_store", "_conn", "_operation")

    def __init__(self, store: SQLiteStore, conn: sqlite3.Connection, operation: str) -> None:
        self._store, self._conn, self._operation = store, conn, operation

    def execute(self, sql: str, params: Tuple[object, ...] = ()) -> "_Rows":
        try:
            rows = self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            cause = self._store._cause(exc)
        else:
            return _Rows(rows)
        raise self._store._error(self._operation, cause)


class _Rows:
    """A statement's rows, all fetched while the error handling was in place."""

    __slots__ = ("_rows",)

    def __init__(self, rows: List[Tuple[object, ...]]) -> None:
        self._rows = rows

    def fetchone(self) -> Optional[Tuple[Any, ...]]:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> List[Tuple[Any, ...]]:
        return self._rows


def _rollback(conn: sqlite3.Connection) -> None:
    # A failed ROLLBACK (a corrupt file) must not replace the error that led here.
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        logger.debug("ROLLBACK failed", exc_info=True)


def _max_version(conn: "_Guarded") -> Optional[int]:
    """The newest schema version recorded in the store, or ``None`` before the first."""
    row = conn.execute("SELECT MAX(version) FROM promptkit_schema").fetchone()
    return None if row is None else row[0]  # an aggregate always gives one row
