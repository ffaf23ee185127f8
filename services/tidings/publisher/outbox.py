"""The durable outbox: messages NATS could not take yet, on disk, in arrival order.

A SQLite database in WAL mode with ``synchronous=FULL``: a row is fsynced before the sidecar
answers ``202 queued``, so an accepted notification survives a crash or a power cut (a commit
costs well under a millisecond on local disk). Rows are fully built
:class:`~tidings.publishing.OutgoingMessage` s, replayed verbatim, so a replay carries the same
``Nats-Msg-Id`` and collapses in the stream's duplicate window.

All SQLite calls run on one dedicated thread: the event loop never blocks on disk, and the single
worker executes calls in submission order, which is the outbox's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import orjson

from tidings.errors import ConfigError, OutboxFull
from tidings.publishing import OutgoingMessage

T = TypeVar("T")

DB_NAME = "outbox.sqlite3"
LOCK_NAME = "outbox.lock"
SCHEMA_VERSION = 1
_DIR_VAR = "TIDINGS_PUBLISHER_OUTBOX_DIR"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    pos     INTEGER PRIMARY KEY AUTOINCREMENT,
    id      TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    headers BLOB    NOT NULL,
    payload BLOB    NOT NULL,
    size    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
    pos       INTEGER PRIMARY KEY,
    id        TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    headers   BLOB    NOT NULL,
    payload   BLOB    NOT NULL,
    size      INTEGER NOT NULL,
    reason    TEXT    NOT NULL,
    failed_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""


def message_size(msg: OutgoingMessage) -> int:
    """Bytes a message costs against ``outbox_max_bytes``: what NATS will be sent."""
    header_bytes = sum(len(k) + len(v) for k, v in msg.headers.items())
    return len(msg.subject) + len(msg.payload) + header_bytes


@dataclass(frozen=True, slots=True)
class Entry:
    """One queued message and its position (the order it will be published in)."""

    pos: int
    message: OutgoingMessage
    size: int


class Outbox:
    """A bounded, durable FIFO of outgoing messages; one process owns a directory at a time."""

    def __init__(
        self,
        directory: Path,
        *,
        max_messages: int,
        max_bytes: int,
        retry_after: int,
    ) -> None:
        self.directory = directory
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.retry_after = retry_after
        self._db: sqlite3.Connection | None = None
        self._lock_file: IO[bytes] | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Counted in the event loop, including appends still being written: the relay's
        # "outbox non-empty" decision must see a message from the moment it is accepted.
        self._count = 0
        self._bytes = 0

    # -- state seen by the event loop -------------------------------------------------------

    @property
    def depth(self) -> int:
        """Messages accepted and not yet acknowledged by JetStream."""
        return self._count

    @property
    def size(self) -> int:
        return self._bytes

    @property
    def has_room(self) -> bool:
        return self._count < self.max_messages and self._bytes < self.max_bytes

    @property
    def is_open(self) -> bool:
        return self._db is not None

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> Outbox:
        """Create the directory and database if missing, lock it, and count what is pending."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tidings-outbox")
        try:
            self._count, self._bytes = await self._call(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise
        return self

    async def close(self) -> None:
        """Close the database and release the directory lock (idempotent)."""
        if self._executor is None:
            return
        try:
            await self._call(self._close_sync)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    @staticmethod
    def check_directory(directory: Path) -> None:
        """Create ``directory`` and check no other process holds it; :class:`ConfigError` if not.

        Lets start-up fail with a clear message before the server binds its port.
        """
        _lock_directory(directory).close()

    # -- queue operations ---------------------------------------------------------------------

    async def append(self, msgs: Sequence[OutgoingMessage]) -> None:
        """Store ``msgs`` durably, all or none; :class:`OutboxFull` when they do not fit."""
        sizes = [message_size(m) for m in msgs]
        total = sum(sizes)
        if self._count + len(msgs) > self.max_messages or self._bytes + total > self.max_bytes:
            raise OutboxFull(
                f"the outbox holds {self._count} messages ({self._bytes} bytes) of at most "
                f"{self.max_messages} ({self.max_bytes} bytes); NATS is not taking messages",
                retry_after=self.retry_after,
            )
        self._count += len(msgs)
        self._bytes += total
        try:
            await self._call(self._insert_sync, list(zip(msgs, sizes, strict=True)))
        except asyncio.CancelledError:
            raise  # the rows were written (see _call): they stay counted
        except BaseException:
            self._count -= len(msgs)
            self._bytes -= total
            raise

    async def peek(self, limit: int) -> list[Entry]:
        """The oldest ``limit`` messages, oldest first; they stay until :meth:`remove`."""
        return await self._call(self._peek_sync, limit)

    async def remove(self, entries: Sequence[Entry]) -> None:
        """Delete messages JetStream acknowledged (a prefix of the queue, as peeked)."""
        if not entries:
            return
        try:
            await self._call(self._delete_sync, [e.pos for e in entries])
        except asyncio.CancelledError:
            self._forget(entries)  # the rows were deleted (see _call)
            raise
        self._forget(entries)

    async def bury(self, entry: Entry, reason: str) -> None:
        """Move a message JetStream refuses for good to the ``dead`` table, out of the way."""
        try:
            await self._call(self._bury_sync, entry.pos, reason)
        except asyncio.CancelledError:
            self._forget([entry])
            raise
        self._forget([entry])

    async def dead_count(self) -> int:
        return await self._call(self._dead_count_sync)

    # -- the worker thread --------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` on the worker thread and always wait for it to finish.

        A cancelled caller cannot stop a write half-way, so the counters would drift from the
        table; instead the call completes, and ``CancelledError`` is raised only if it succeeded
        (a failure raises the failure).
        """
        if self._executor is None:
            raise RuntimeError("the outbox is not open")
        fut = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            await asyncio.wait([fut])
            failure = None if fut.cancelled() else fut.exception()
            if failure is not None:
                raise failure from None
            raise

    def _forget(self, entries: Sequence[Entry]) -> None:
        self._count -= len(entries)
        self._bytes -= sum(e.size for e in entries)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the outbox is not open")
        return self._db

    def _open_sync(self) -> tuple[int, int]:
        lock = _lock_directory(self.directory)
        try:
            db = sqlite3.connect(
                self.directory / DB_NAME, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            count, size = db.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM messages"
            ).fetchone()
        except sqlite3.Error as exc:
            lock.close()
            raise ConfigError(
                f"cannot open outbox {str(self.directory / DB_NAME)!r}: {exc}", field=_DIR_VAR
            ) from exc
        except BaseException:
            lock.close()
            raise
        self._db, self._lock_file = db, lock
        return int(count), int(size)

    def _close_sync(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()
        lock, self._lock_file = self._lock_file, None
        if lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
            lock.close()

    def _insert_sync(self, rows: list[tuple[OutgoingMessage, int]]) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO messages (id, subject, headers, payload, size) VALUES (?, ?, ?, ?, ?)",
                [(m.id, m.subject, orjson.dumps(m.headers), m.payload, n) for m, n in rows],
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _peek_sync(self, limit: int) -> list[Entry]:
        rows = self._conn().execute(
            "SELECT pos, id, subject, headers, payload, size FROM messages ORDER BY pos LIMIT ?",
            (limit,),
        )
        return [
            Entry(pos, OutgoingMessage(ident, subject, bytes(payload), orjson.loads(headers)), size)
            for pos, ident, subject, headers, payload, size in rows
        ]

    def _delete_sync(self, positions: list[int]) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        db.executemany("DELETE FROM messages WHERE pos = ?", [(p,) for p in positions])
        db.execute("COMMIT")

    def _bury_sync(self, pos: int, reason: str) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO dead (pos, id, subject, headers, payload, size, reason) "
            "SELECT pos, id, subject, headers, payload, size, ? FROM messages WHERE pos = ?",
            (reason, pos),
        )
        db.execute("DELETE FROM messages WHERE pos = ?", (pos,))
        db.execute("COMMIT")

    def _dead_count_sync(self) -> int:
        (count,) = self._conn().execute("SELECT count(*) FROM dead").fetchone()
        return int(count)


def _lock_directory(directory: Path) -> IO[bytes]:
    """Create and lock the outbox directory; the lock lives as long as the returned file."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = (directory / LOCK_NAME).open("ab")
    except OSError as exc:
        raise ConfigError(
            f"cannot use outbox directory {str(directory)!r}: {exc.strerror}", field=_DIR_VAR
        ) from exc
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise ConfigError(
            f"outbox directory {str(directory)!r} is in use by another publisher; "
            "give each sidecar its own directory",
            field=_DIR_VAR,
        ) from None
    return lock
