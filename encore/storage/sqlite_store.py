"""A key-value store in a SQLite database.

Layout (``T`` is the table name)::

    T          (key TEXT PRIMARY KEY, metadata TEXT, data BLOB,
                blob_id INTEGER, size INTEGER, created REAL, modified REAL)
    T__chunks  (blob_id INTEGER, offset INTEGER, data BLOB)
    T__pending (blob_id INTEGER, pid INTEGER, started REAL)

Metadata is stored as JSON text (never pickle). Small data (one buffer) is
stored inline in ``T.data``; longer data is streamed into ``T__chunks`` rows
of at most 1 MiB, so neither writing nor reading a value ever holds more
than one chunk in memory. (A single blob could not hold large values
anyway: SQLite's default maximum blob length is 10^9 bytes.)

Queries: ``query(name=value)`` filters in SQL on
``json_extract(metadata, '$.name')`` for scalar values, backed by an
expression index ``T__md_name``; the result is then checked in Python so
the semantics are exactly those of ``DictMemoryStore``. With
``index='dynamic'`` an index is created the first time a name is queried;
with explicit ``index_columns`` only those names are indexed (at
``connect``); ``index=None`` creates none.

Concurrency: the database is opened in WAL mode with a busy timeout; every
write runs in a ``BEGIN IMMEDIATE`` transaction, which takes the write lock
up front, so two processes writing the same database wait for each other
instead of deadlocking. A transaction (``with store.transaction()``) is
one SQLite transaction. Outside a transaction, a long value is staged: its
chunk rows are written in short transactions under a new blob id recorded
in ``T__pending``, and one last short transaction points the key at it, so
a slow or large copy does not hold the write lock; blobs staged by a
process that died are deleted at the next ``connect``. A stream of a
chunked value that is replaced while being read raises ``StoreError``
rather than mixing old and new bytes.

Identifiers: the table name and index names must be identifiers
(``[A-Za-z_][A-Za-z0-9_]*``) and are quoted as well; values are always
bound parameters.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from ._streams import ReadStream
from .abstract_store import (
    AbstractStore,
    StoreError,
    Value,
    _range_start,
    as_stream,
    compile_glob,
    metadata_matches,
    unpack_value,
)
from .events import StoreDeleteEvent, StoreSetEvent, StoreUpdateEvent
from .utils import (
    DEFAULT_BUFFER_SIZE,
    SimpleTransactionContext,
    check_metadata,
    copy_stream,
    select_metadata,
)
from .values import BytesValue

__all__ = ["SqliteStore", "SQLiteStore"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Largest chunk row, and largest value stored inline.
CHUNK_SIZE = 1048576
#: Bytes of chunk rows written per short transaction when staging: large
#: enough that commits and checkpoints stay cheap, small enough that other
#: writers wait a fraction of a second at most.
STAGE_BATCH = 32 * CHUNK_SIZE

logger = logging.getLogger(__name__)


def _identifier(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(
            f"{what} {name!r} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)"
        )
    return name


def _next_time(previous: float | None) -> float:
    now = time.time()
    if previous is not None and now <= previous:
        now = math.nextafter(previous, math.inf)
    return now


def _dumps(metadata: dict) -> str:
    return json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))


class _ChunkStream(ReadStream):
    """Reads a chunked value, one chunk row at a time."""

    def __init__(
        self, store: SqliteStore, key: str, blob_id: int, start: int, end: int
    ):
        super().__init__()
        self._store = store
        self._key = key
        self._blob_id = blob_id
        self._position = start
        self._end = end
        self._chunk = b""
        self._chunk_offset = 0

    def readable(self) -> bool:
        return True

    def _load(self) -> None:
        rows = self._store._execute(
            f"SELECT offset, data FROM {self._store._chunks} "
            "WHERE blob_id = ? AND offset <= ? ORDER BY offset DESC LIMIT 1",
            (self._blob_id, self._position),
        ).fetchall()
        if not rows or rows[0][0] + len(rows[0][1]) <= self._position:
            raise StoreError(
                f"the value of {self._key!r} was replaced or deleted while it "
                "was being read"
            )
        self._chunk_offset, self._chunk = rows[0]

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("read from a closed stream")
        if size is None or size < 0:
            parts = []
            while part := self.read(CHUNK_SIZE):
                parts.append(part)
            return b"".join(parts)
        size = min(size, self._end - self._position)
        if size <= 0:
            return b""
        offset = self._position - self._chunk_offset
        if not (0 <= offset < len(self._chunk)):
            self._load()
            offset = self._position - self._chunk_offset
        part = self._chunk[offset : offset + size]
        self._position += len(part)
        return part

    def close(self) -> None:
        self._chunk = b""
        super().close()


class SqliteValue(Value):
    """A value whose data lives in chunk rows of a ``SqliteStore``."""

    def __init__(self, store, key, blob_id, metadata, size, created, modified):
        self._store = store
        self._key = key
        self._blob_id = blob_id
        self.metadata = metadata
        self.size = size
        self.created = created
        self.modified = modified

    @property
    def data(self) -> _ChunkStream:
        """A new stream over the data."""
        return _ChunkStream(self._store, self._key, self._blob_id, 0, self.size)

    def range(self, start: int | None = None, end: int | None = None) -> _ChunkStream:
        """A stream of bytes ``start`` to ``end`` (exclusive)."""
        start = _range_start(start, end)
        end = self.size if end is None else min(end, self.size)
        return _ChunkStream(self._store, self._key, self._blob_id, min(start, end), end)


class SqliteStore(AbstractStore):
    """Store keys, metadata (JSON) and data in a SQLite database.

    Parameters
    ----------
    location : str
        Path of the database file, or ``':memory:'``.
    table : str
        Name of the table (an identifier).
    index : {'dynamic', 'static', None}
        ``'dynamic'``: index each metadata name the first time it is
        queried; ``'static'`` or explicit ``index_columns``: index only
        ``index_columns``; ``None``: no indexes.
    index_columns : iterable of str, optional
        Metadata names to index (identifiers).
    event_manager : BaseEventManager, optional
        Where events are emitted (default: the process-wide manager).
    timeout : float
        Seconds to wait for another connection's write lock before failing.

    Raises
    ------
    ValueError
        If ``table`` or an index column is not an identifier, or ``index``
        is not one of the accepted values.
    """

    _transaction_context_class = SimpleTransactionContext

    def __init__(
        self,
        location: str = ":memory:",
        table: str = "store",
        index: str | None = "dynamic",
        index_columns: Iterable[str] | None = None,
        *,
        event_manager: Any = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(event_manager)
        if index not in ("dynamic", "static", None, "none"):
            raise ValueError(
                f"index must be 'dynamic', 'static' or None, not {index!r}"
            )
        self.location = location
        self.table = _identifier(table, "table name")
        self.index = None if index == "none" else index
        self.index_columns = (
            None
            if index_columns is None
            else [_identifier(name, "index column") for name in index_columns]
        )
        self.timeout = timeout
        self._table = f'"{self.table}"'
        self._chunks = f'"{self.table}__chunks"'
        self._pending = f'"{self.table}__pending"'
        self._connection: sqlite3.Connection | None = None
        self._in_transaction = False
        self._indexed: set[str] = set()

    # -- connection --------------------------------------------------------------

    def connect(self, credentials: Any = None) -> None:
        """Open the database, creating the tables if needed.

        ``credentials`` are ignored (SQLite has no authentication).

        Raises
        ------
        StoreError
            If the database cannot be opened or has an incompatible table.
        """
        if self._connection is not None:
            return
        try:
            connection = sqlite3.connect(
                self.location,
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as error:
            raise StoreError(f"cannot open {self.location!r}: {error}") from error
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._table} ("
                    "key TEXT PRIMARY KEY NOT NULL, metadata TEXT NOT NULL, "
                    "data BLOB, blob_id INTEGER, size INTEGER NOT NULL, "
                    "created REAL NOT NULL, modified REAL NOT NULL)"
                )
                connection.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._chunks} ("
                    "blob_id INTEGER NOT NULL, offset INTEGER NOT NULL, "
                    "data BLOB NOT NULL, PRIMARY KEY (blob_id, offset))"
                )
                connection.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._pending} ("
                    "blob_id INTEGER PRIMARY KEY, pid INTEGER NOT NULL, "
                    "started REAL NOT NULL)"
                )
                self._drop_orphans(connection)
                columns = {
                    row[1]
                    for row in connection.execute(f"PRAGMA table_info({self._table})")
                }
                expected = {"key", "metadata", "data", "blob_id", "size", "created"}
                if not expected <= columns:
                    raise StoreError(
                        f"table {self.table!r} in {self.location!r} exists but is "
                        f"not a store table (columns {sorted(columns)})"
                    )
                for name in self.index_columns or ():
                    self._create_index(connection, name)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            prefix = f"{self.table}__md_"
            self._indexed = {
                row[0][len(prefix) :]
                for row in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND "
                    "tbl_name = ? AND substr(name, 1, ?) = ?",
                    (self.table, len(prefix), prefix),
                )
            }
        except sqlite3.Error as error:
            connection.close()
            raise StoreError(f"cannot set up {self.location!r}: {error}") from error
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def disconnect(self) -> None:
        """Close the database connection."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()

    def is_connected(self) -> bool:
        """Whether the database connection is open."""
        return self._connection is not None

    # -- low level ---------------------------------------------------------------

    def _execute(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:
        connection = self._connection
        if connection is None:
            raise StoreError("the SqliteStore is not connected: call connect() first")
        try:
            with self._lock:
                return connection.execute(sql, parameters)
        except sqlite3.Error as error:
            raise StoreError(f"SQLite error on {self.location!r}: {error}") from error

    def _create_index(self, connection: sqlite3.Connection, name: str) -> None:
        # ``name`` matched _IDENTIFIER, so it is safe inside the literal.
        connection.execute(
            f'CREATE INDEX IF NOT EXISTS "{self.table}__md_{name}" '
            f"ON {self._table}(json_extract(metadata, '$.{name}'))"
        )
        self._indexed.add(name)

    class _Write:
        """Runs a block in a write transaction (or the current one)."""

        def __init__(self, store: SqliteStore) -> None:
            self.store = store
            self.own = False

        def __enter__(self) -> SqliteStore._Write:
            store = self.store
            store._lock.acquire()
            if not store._in_transaction:
                try:
                    store._execute("BEGIN IMMEDIATE")
                except BaseException:
                    store._lock.release()
                    raise
                self.own = True
            return self

        def __exit__(self, exc_type, exc, tb) -> bool:
            store = self.store
            try:
                if self.own:
                    if exc_type is None:
                        try:
                            store._execute("COMMIT")
                        except BaseException:
                            # A COMMIT that fails for a full disk (or I/O
                            # error) has rolled back already; a second
                            # ROLLBACK would hide the real error.
                            if store._connection.in_transaction:
                                store._connection.execute("ROLLBACK")
                            raise
                    elif store._connection.in_transaction:
                        store._connection.execute("ROLLBACK")
            finally:
                store._lock.release()
            return False

    def _row(self, key: str, columns: str) -> tuple | None:
        return self._execute(
            f"SELECT {columns} FROM {self._table} WHERE key = ?", (key,)
        ).fetchone()

    def _write_data(self, key: str, stream: Any, buffer_size: int, metadata) -> tuple:
        """Copy ``stream`` into the database; return (data, blob_id, size).

        Data that fits in one buffer is returned for inline storage; longer
        data goes to chunk rows under a new blob id as it is read. Outside
        a transaction the chunks are written in short transactions of
        their own, the blob registered as pending, so that a slow or large
        copy does not keep other writers waiting; the caller then points
        the key at the blob in one short transaction. Inside a transaction
        everything is part of it.
        """
        buffer_size = min(buffer_size or CHUNK_SIZE, CHUNK_SIZE)
        insert = f"INSERT INTO {self._chunks} (blob_id, offset, data) VALUES (?, ?, ?)"
        staged = not self._in_transaction
        first: bytes | None = None
        blob_id: int | None = None
        offset = 0
        batch: list[tuple] = []
        batched = 0

        def flush() -> None:
            nonlocal batched
            if batch:
                with self._Write(self):
                    for row in batch:
                        self._execute(insert, row)
                batch.clear()
                batched = 0

        def put(chunk: bytes) -> None:
            nonlocal offset, batched
            for start in range(0, len(chunk), CHUNK_SIZE):
                piece = bytes(chunk[start : start + CHUNK_SIZE])
                if staged:
                    batch.append((blob_id, offset, piece))
                    batched += len(piece)
                else:
                    self._execute(insert, (blob_id, offset, piece))
                offset += len(piece)
            if batched >= STAGE_BATCH:
                flush()

        def write(chunk: bytes) -> None:
            nonlocal first, blob_id
            if blob_id is None:
                if first is None:
                    first = bytes(chunk)
                    return
                blob_id = secrets.randbits(62)
                if staged:
                    with self._Write(self):
                        self._execute(
                            f"INSERT INTO {self._pending} (blob_id, pid, started) "
                            "VALUES (?, ?, ?)",
                            (blob_id, os.getpid(), time.time()),
                        )
                put(first)
                first = None
            put(chunk)

        try:
            size = copy_stream(
                stream,
                write,
                buffer_size,
                store=self,
                key=key,
                metadata=metadata,
                message=f"Storing {key!r}",
            )
            if blob_id is not None:
                flush()
        except BaseException:
            if blob_id is not None and staged:
                self._discard_staged(blob_id)
            raise
        if blob_id is None:
            return first or b"", None, size
        return None, blob_id, size

    def _discard_staged(self, blob_id: int) -> None:
        """Remove a staged blob that will not be used (best effort)."""
        try:
            with self._Write(self):
                self._drop_blob(blob_id)
                self._execute(
                    f"DELETE FROM {self._pending} WHERE blob_id = ?", (blob_id,)
                )
        except StoreError:
            logger.warning(
                "could not remove staged blob %d of %s", blob_id, self.location
            )

    def _drop_orphans(self, connection: sqlite3.Connection) -> None:
        """Delete blobs staged by processes that died before using them."""
        rows = connection.execute(
            f"SELECT blob_id, pid FROM {self._pending}"
        ).fetchall()
        for blob_id, pid in rows:
            if pid != os.getpid() and not _pid_alive(pid):
                connection.execute(
                    f"DELETE FROM {self._chunks} WHERE blob_id = ?", (blob_id,)
                )
                connection.execute(
                    f"DELETE FROM {self._pending} WHERE blob_id = ?", (blob_id,)
                )

    def _drop_blob(self, blob_id: int | None) -> None:
        if blob_id is not None:
            self._execute(f"DELETE FROM {self._chunks} WHERE blob_id = ?", (blob_id,))

    # -- reading -------------------------------------------------------------------

    def get(self, key: str) -> Value:
        """Return the value of ``key`` (``KeyError`` if absent)."""
        row = self._row(key, "metadata, data, blob_id, size, created, modified")
        if row is None:
            raise KeyError(key)
        metadata, data, blob_id, size, created, modified = row
        metadata = json.loads(metadata)
        if blob_id is None:
            return BytesValue(data or b"", metadata, created, modified)
        return SqliteValue(self, key, blob_id, metadata, size, created, modified)

    def get_data(self, key: str) -> Any:
        """Return a stream of the data of ``key`` (``KeyError`` if absent)."""
        row = self._row(key, "data, blob_id, size")
        if row is None:
            raise KeyError(key)
        data, blob_id, size = row
        if blob_id is None:
            return io.BytesIO(data or b"")
        return _ChunkStream(self, key, blob_id, 0, size)

    def get_metadata(self, key: str, select: Iterable[str] | None = None) -> dict:
        """Return the metadata of ``key`` (``KeyError`` if absent)."""
        row = self._row(key, "metadata")
        if row is None:
            raise KeyError(key)
        return select_metadata(json.loads(row[0]), select)

    def exists(self, key: str) -> bool:
        """Whether ``key`` is in the store."""
        return self._row(key, "1") is not None

    def _select(self, columns: str, criteria: dict) -> tuple[list, dict]:
        """Run a query; return rows and the criteria left for Python."""
        clauses = []
        parameters = []
        remaining = {}
        for name, value in criteria.items():
            if _IDENTIFIER.match(name) and type(value) in (str, int, float, bool):
                if type(value) is float and not math.isfinite(value):
                    remaining[name] = value
                    continue
                if (
                    name not in self._indexed
                    and self.index == "dynamic"
                    and (self.index_columns is None)
                ):
                    with self._Write(self):
                        self._create_index(self._connection, name)
                clauses.append(f"json_extract(metadata, '$.{name}') = ?")
                parameters.append(value)
                # json_extract cannot tell 1 from true: check in Python too.
                remaining[name] = value
            else:
                remaining[name] = value
        sql = f"SELECT {columns} FROM {self._table}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return self._execute(sql, parameters).fetchall(), remaining

    def query(
        self, select: Iterable[str] | None = None, **kwargs: Any
    ) -> list[tuple[str, dict]]:
        """Return ``(key, metadata)`` for the keys whose metadata matches."""
        if select is not None:
            select = list(select)
        rows, remaining = self._select("key, metadata", kwargs)
        result = []
        for key, text in rows:
            metadata = json.loads(text)
            if remaining and not metadata_matches(metadata, remaining):
                continue
            result.append((key, select_metadata(metadata, select)))
        return result

    def query_keys(self, **kwargs: Any) -> list[str]:
        """Return the keys whose metadata matches ``kwargs`` (all if none)."""
        if not kwargs:
            return [row[0] for row in self._execute(f"SELECT key FROM {self._table}")]
        rows, remaining = self._select("key, metadata", kwargs)
        return [
            key
            for key, text in rows
            if not remaining or metadata_matches(json.loads(text), remaining)
        ]

    def glob(self, pattern: str) -> list[str]:
        """Return the keys matching the glob ``pattern`` (``fnmatch`` rules)."""
        match = compile_glob(pattern)
        return [
            row[0]
            for row in self._execute(f"SELECT key FROM {self._table}")
            if match(row[0])
        ]

    # -- writing -------------------------------------------------------------------

    def _store(
        self,
        key: str,
        stream: Any,
        metadata: dict | None,
        buffer_size: int,
    ) -> dict:
        """Write data (and metadata, unless None); return the metadata."""
        data, blob_id, size = self._write_data(key, stream, buffer_size, metadata)
        try:
            with self._Write(self):
                old = self._row(key, "metadata, blob_id, created, modified")
                if metadata is None:
                    metadata = {} if old is None else json.loads(old[0])
                modified = _next_time(None if old is None else old[3])
                created = modified if old is None else old[2]
                self._execute(
                    f"INSERT OR REPLACE INTO {self._table} "
                    "(key, metadata, data, blob_id, size, created, modified) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key, _dumps(metadata), data, blob_id, size, created, modified),
                )
                if old is not None:
                    self._drop_blob(old[1])
                if blob_id is not None:
                    self._execute(
                        f"DELETE FROM {self._pending} WHERE blob_id = ?", (blob_id,)
                    )
        except BaseException:
            if blob_id is not None and not self._in_transaction:
                self._discard_staged(blob_id)
            raise
        return metadata

    def set(self, key: str, value: Any, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        """Store ``value`` at ``key``; emits ``StoreSetEvent``.

        Raises
        ------
        ValueError
            If the metadata is not JSON-representable (nothing is written).
        StoreError
            If the database fails (the old value is kept).
        """
        _check_key(key)
        stream, metadata, owned = unpack_value(value)
        try:
            metadata = check_metadata(metadata)
            self._store(key, stream, metadata, buffer_size)
        finally:
            if owned:
                stream.close()
        self._emit([StoreSetEvent(source=self, key=key, metadata=metadata)])

    def set_data(
        self, key: str, data: Any, buffer_size: int = DEFAULT_BUFFER_SIZE
    ) -> None:
        """Replace the data of ``key`` (new keys get ``{}`` metadata)."""
        _check_key(key)
        stream, owned = as_stream(data)
        try:
            metadata = self._store(key, stream, None, buffer_size)
        finally:
            if owned:
                stream.close()
        self._emit([StoreSetEvent(source=self, key=key, metadata=metadata)])

    def set_metadata(self, key: str, metadata: dict) -> None:
        """Replace the metadata of ``key`` (new keys get empty data)."""
        _check_key(key)
        metadata = check_metadata(metadata)
        text = _dumps(metadata)
        with self._Write(self):
            old = self._row(key, "modified")
            if old is None:
                now = _next_time(None)
                self._execute(
                    f"INSERT INTO {self._table} "
                    "(key, metadata, data, blob_id, size, created, modified) "
                    "VALUES (?, ?, ?, NULL, 0, ?, ?)",
                    (key, text, b"", now, now),
                )
            else:
                self._execute(
                    f"UPDATE {self._table} SET metadata = ?, modified = ? "
                    "WHERE key = ?",
                    (text, _next_time(old[0]), key),
                )
        self._emit([StoreSetEvent(source=self, key=key, metadata=metadata)])

    def update_metadata(self, key: str, metadata: dict) -> None:
        """Update the metadata of ``key``; emits ``StoreUpdateEvent``.

        Raises
        ------
        KeyError
            If the key is not in the store.
        ValueError
            If the result is not JSON-representable (nothing is written).
        """
        update = check_metadata(metadata)
        with self._Write(self):
            old = self._row(key, "metadata, modified")
            if old is None:
                raise KeyError(key)
            merged = json.loads(old[0])
            merged.update(update)
            self._execute(
                f"UPDATE {self._table} SET metadata = ?, modified = ? WHERE key = ?",
                (_dumps(merged), _next_time(old[1]), key),
            )
        self._emit([StoreUpdateEvent(source=self, key=key, metadata=merged)])

    def delete(self, key: str) -> None:
        """Delete ``key``; emits ``StoreDeleteEvent`` (``KeyError`` if absent)."""
        with self._Write(self):
            old = self._row(key, "metadata, blob_id")
            if old is None:
                raise KeyError(key)
            self._execute(f"DELETE FROM {self._table} WHERE key = ?", (key,))
            self._drop_blob(old[1])
        self._emit(
            [StoreDeleteEvent(source=self, key=key, metadata=json.loads(old[0]))]
        )

    # -- transactions ----------------------------------------------------------

    def _begin_transaction(self) -> None:
        self._execute("BEGIN IMMEDIATE")
        self._in_transaction = True

    def _commit_transaction(self) -> None:
        self._in_transaction = False
        self._execute("COMMIT")

    def _rollback_transaction(self) -> None:
        self._in_transaction = False
        if self._connection is not None and self._connection.in_transaction:
            self._execute("ROLLBACK")


#: The spelling used in parts of the original documentation.
SQLiteStore = SqliteStore


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_key(key: Any) -> None:
    if type(key) is not str:
        raise TypeError(f"keys are str, not {type(key).__name__}")
