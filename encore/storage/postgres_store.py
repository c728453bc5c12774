"""A key-value store in a PostgreSQL (15+) database, with change events.

Needs psycopg 3 (``pip install 'encore[postgres]'``); importing this module
without it raises an ``ImportError`` that names the extra. The rest of
``encore.storage`` never imports psycopg.

Layout (``T`` is the table name)::

    T          (key bytea PRIMARY KEY, meta text, meta_index jsonb,
                data bytea, blob_id bigint, size bigint,
                created float8, modified float8)
    T__chunks  (blob_id bigint, seq int, data bytea, PRIMARY KEY (blob_id, seq))

Keys are their UTF-8 bytes (PostgreSQL text cannot hold NUL, keys can), so
the primary key's btree orders keys bytewise and ``glob`` reads only the
key range of the pattern's literal prefix, then filters with ``fnmatch``.

Metadata: ``meta`` is the exact JSON text the caller gave (jsonb would
reorder keys and cannot hold ``\\u0000``); ``meta_index`` is its jsonb copy
(NUL characters replaced by U+FFFD) under a GIN ``jsonb_path_ops`` index
made with ``fastupdate = off`` (the default pending list of new entries is
scanned by every query: 4.4 ms of a query over 100k fresh keys).
``query(name=value)`` selects candidates with ``meta_index @> {name:
value}`` from that index and then checks them in Python, so the results
are exactly those of ``DictMemoryStore`` (``@>`` also accepts supersets of
lists and dicts; ``1`` and ``True`` are tried both ways because Python
calls them equal).

Values: data of at most one buffer is stored inline in ``T.data``; longer
data is written by binary ``COPY`` into ``T__chunks`` rows of 1 MiB
(storage ``EXTERNAL``: no compression of data that is usually already
compressed, and no CPU spent trying) and read back one row at a time, so
memory stays flat whatever the size. Chunk rows were chosen over large
objects because they are ordinary rows: they go with ``DELETE``, are
covered by the table's permissions and need no ``lo_unlink`` clean-up
when a writer dies.

Atomicity: every write is one transaction (``set`` of a 1 GiB value too:
chunks and the key's row commit together), so readers see the old or the
new value and a writer killed mid-way leaves nothing behind. Writers of
one key are serialized by its row lock, and for a key not yet in the
table by an advisory lock on (table, key), so concurrent writers of a new
key leave only the last value's chunks.
``transaction()`` is one PostgreSQL transaction; each write inside it runs
in a savepoint, so a write that fails leaves the rest of the transaction
usable. A stream of a chunked value that is replaced while being read
raises ``StoreError`` rather than mixing old and new bytes.

Change events: every write sends ``NOTIFY`` on the channel
``T__changes`` inside its transaction (so only committed changes are
announced, in commit order). The payload is JSON ``{"n": counter, "a":
action, "k": key, "m": metadata}`` (``m`` left out when it would not fit
in PostgreSQL's 8000-byte payload; the metadata is then read back). Each
store runs a listener thread on a second connection that LISTENs to the
channel and emits ``StoreSetEvent``/``StoreUpdateEvent``/
``StoreDeleteEvent`` for notifications from other backends; its own
writes are emitted locally (once) and recognised by the backend pid of its
main connection. When the listener's connection is lost it reconnects by
itself with exponential backoff and then emits ``StoreChangesMissedEvent``:
changes committed while it was away produced no event. The store caches
nothing, so there is nothing else to re-read. The main connection is
re-opened on the next call after it broke; a read that fails on a broken
connection is retried once on the new one.

Identifiers: the table name must match ``[A-Za-z_][A-Za-z0-9_]{0,40}`` and
is quoted with ``psycopg.sql.Identifier`` as well; values are always bound
parameters.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Iterable
from typing import Any

try:
    import psycopg
    from psycopg import sql
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "PostgresStore needs psycopg 3: install the 'postgres' extra "
        "(pip install 'encore[postgres]')"
    ) from error

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
from .events import (
    StoreChangesMissedEvent,
    StoreDeleteEvent,
    StoreSetEvent,
    StoreUpdateEvent,
)
from .utils import (
    DEFAULT_BUFFER_SIZE,
    SimpleTransactionContext,
    check_metadata,
    copy_stream,
    select_metadata,
)
from .values import BytesValue

__all__ = ["PostgresStore", "PostgresValue", "CHUNK_SIZE"]

logger = logging.getLogger(__name__)

#: Table names: short enough that ``T__chunks_pkey`` and friends stay
#: under PostgreSQL's 63-byte identifier limit.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}\Z")
#: Size of a chunk row.
CHUNK_SIZE = 1048576
#: NOTIFY payloads must be shorter than 8000 bytes.
_PAYLOAD_LIMIT = 7900
_ACTIONS = {
    "set": StoreSetEvent,
    "update": StoreUpdateEvent,
    "delete": StoreDeleteEvent,
}


def _identifier(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(
            f"{what} {name!r} is not an identifier ([A-Za-z_][A-Za-z0-9_]*, "
            "at most 41 characters)"
        )
    return name


def _check_key(key: Any) -> bytes:
    if type(key) is not str:
        raise TypeError(f"keys are str, not {type(key).__name__}")
    return key.encode("utf-8", "surrogatepass")


def _key_text(raw: bytes) -> str:
    return bytes(raw).decode("utf-8", "surrogatepass")


def _dumps(metadata: dict) -> str:
    return json.dumps(metadata, separators=(",", ":"))


def _index_copy(metadata: Any) -> Any:
    """The metadata as jsonb can hold it: NUL in strings becomes U+FFFD."""
    kind = type(metadata)
    if kind is str:
        return metadata.replace("\x00", "\ufffd")
    if kind is dict:
        return {
            name.replace("\x00", "\ufffd"): _index_copy(value)
            for name, value in metadata.items()
        }
    if kind is list:
        return [_index_copy(value) for value in metadata]
    return metadata


def _next_time(previous: float | None) -> float:
    now = time.time()
    if previous is not None and now <= previous:
        now = math.nextafter(previous, math.inf)
    return now


def _prefix_range(pattern: str) -> tuple[bytes, bytes | None]:
    """The key range ``[low, high)`` every match of a glob pattern is in."""
    literal = re.match(r"[^*?\[]*", pattern).group(0)
    low = literal.encode("utf-8", "surrogatepass")
    high = bytearray(low)
    while high and high[-1] == 0xFF:
        high.pop()
    if not high:
        return low, None
    high[-1] += 1
    return low, bytes(high)


class _ChunkStream(ReadStream):
    """Reads a chunked value, one chunk row at a time."""

    def __init__(self, store: PostgresStore, key: str, blob_id: int, start, end):
        super().__init__()
        self._store = store
        self._key = key
        self._blob_id = blob_id
        self._position = start
        self._end = end
        self._chunk = b""
        self._chunk_offset = -1

    def readable(self) -> bool:
        return True

    def _load(self) -> None:
        seq = self._position // CHUNK_SIZE
        rows = self._store._fetch(
            self._store._sql(
                "SELECT data FROM {chunks} WHERE blob_id = %s AND seq = %s"
            ),
            (self._blob_id, seq),
        )
        if not rows:
            raise StoreError(
                f"the value of {self._key!r} was replaced or deleted while it "
                "was being read"
            )
        self._chunk = rows[0][0]
        self._chunk_offset = seq * CHUNK_SIZE

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
        if self._chunk_offset < 0 or not (0 <= offset < len(self._chunk)):
            self._load()
            offset = self._position - self._chunk_offset
        part = bytes(self._chunk[offset : offset + size])
        self._position += len(part)
        return part

    def close(self) -> None:
        self._chunk = b""
        super().close()


class PostgresValue(Value):
    """A value whose data lives in chunk rows of a ``PostgresStore``."""

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


class PostgresStore(AbstractStore):
    """Store keys, metadata and data in a PostgreSQL table; hear others' changes.

    Parameters
    ----------
    dsn : str
        A libpq connection string or URI.
    table : str
        Name of the table (an identifier); its chunk table is
        ``<table>__chunks`` and its NOTIFY channel ``<table>__changes``.
    event_manager : BaseEventManager, optional
        Where events are emitted (default: the process-wide manager).
    listen : bool
        Run the listener thread that turns other connections' changes into
        events (default ``True``).
    connect_timeout : float
        Seconds to wait for the server when connecting.
    reconnect_max : float
        Longest pause between two reconnection attempts of the listener.

    Attributes
    ----------
    connection_state : str
        ``'disconnected'``, ``'connected'`` or ``'reconnecting'`` (the
        listener lost the server and is trying again).

    Raises
    ------
    ValueError
        If ``table`` is not an identifier.
    """

    _transaction_context_class = SimpleTransactionContext

    def __init__(
        self,
        dsn: str,
        table: str = "encore_store",
        *,
        event_manager: Any = None,
        listen: bool = True,
        connect_timeout: float = 10.0,
        reconnect_max: float = 5.0,
    ) -> None:
        super().__init__(event_manager)
        if not isinstance(dsn, str):
            raise TypeError(f"dsn must be a str, not {type(dsn).__name__}")
        self.dsn = dsn
        self.table = _identifier(table, "table name")
        self.channel = f"{self.table}__changes"
        self.listen = listen
        self.connect_timeout = connect_timeout
        self.reconnect_max = reconnect_max
        self._table = sql.Identifier(self.table)
        self._chunks = sql.Identifier(f"{self.table}__chunks")
        self._statements: dict[str, str] = {}
        self._connection: psycopg.Connection | None = None
        self._connected = False
        self._transaction: Any = None
        # Backend pids of every main connection this store has had: their
        # notifications are this store's own writes, already emitted.
        self._own_pids: set[int] = set()
        self._counter = 0
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self._listening = threading.Event()
        self.connection_state = "disconnected"
        #: Number of times the listener lost its connection.
        self.reconnections = 0

    def _sql(self, template: str) -> str:
        """``template`` with ``{table}``/``{chunks}`` filled in, as plain text.

        The hot statements are built once per store: a ``sql.Composed``
        is rendered again on every execute, a visible part of a small
        ``set``. The names are checked identifiers, so double quotes quote
        them exactly.
        """
        statement = self._statements.get(template)
        if statement is None:
            statement = template.format(
                table=f'"{self.table}"', chunks=f'"{self.table}__chunks"'
            )
            self._statements[template] = statement
        return statement

    # -- connection --------------------------------------------------------------

    def _open(self) -> psycopg.Connection:
        try:
            connection = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=int(self.connect_timeout)
            )
        except psycopg.Error as error:
            raise StoreError(f"cannot connect to PostgreSQL: {error}") from error
        return connection

    def connect(self, credentials: Any = None) -> None:
        """Connect, create the tables if needed, start the listener.

        ``credentials`` are ignored: they belong in the DSN.

        Raises
        ------
        StoreError
            If the server cannot be reached or the table exists with
            another layout.
        """
        with self._lock:
            if self._connected:
                return
            connection = self._open()
            try:
                self._setup(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
            self._own_pids.add(connection.info.backend_pid)
            self._connected = True
            self.connection_state = "connected"
        if self.listen:
            self._stop.clear()
            self._listening.clear()
            self._listener = threading.Thread(
                target=self._listen_loop,
                name=f"PostgresStore-listener-{self.table}",
                daemon=True,
            )
            self._listener.start()
            # Changes committed after connect() returns must be heard.
            if not self._listening.wait(self.connect_timeout + 5):
                self.disconnect()
                raise StoreError("the PostgresStore listener could not LISTEN")

    def _setup(self, connection: psycopg.Connection) -> None:
        table, chunks = self._table, self._chunks
        statements = [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (key bytea PRIMARY KEY, "
                "meta text NOT NULL, meta_index jsonb NOT NULL, data bytea, "
                "blob_id bigint, size bigint NOT NULL, created float8 NOT NULL, "
                "modified float8 NOT NULL)"
            ).format(table),
            sql.SQL("ALTER TABLE {} ALTER COLUMN data SET STORAGE EXTERNAL").format(
                table
            ),
            # fastupdate off: with the default, new entries wait in a
            # pending list that every query scans (4.4 ms of a 4.6 ms query
            # over 100k fresh keys, 0.02 ms once cleaned); a write updates
            # the index at once instead.
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} USING gin "
                "(meta_index jsonb_path_ops) WITH (fastupdate = off)"
            ).format(sql.Identifier(f"{self.table}__meta"), table),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (blob_id bigint NOT NULL, "
                "seq integer NOT NULL, data bytea NOT NULL, "
                "PRIMARY KEY (blob_id, seq))"
            ).format(chunks),
            sql.SQL("ALTER TABLE {} ALTER COLUMN data SET STORAGE EXTERNAL").format(
                chunks
            ),
        ]
        expected = {"key", "meta", "meta_index", "data", "blob_id", "size"}
        try:
            with connection.transaction():
                # Two stores creating the same table at once would collide
                # on the catalog; a transaction-level advisory lock on the
                # table name serializes them.
                connection.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (self.table,)
                )
                connection.execute(statements[0])
                columns = {
                    row[0]
                    for row in connection.execute(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = %s AND table_schema = current_schema()",
                        (self.table,),
                    )
                }
                if not expected <= columns:
                    raise StoreError(
                        f"table {self.table!r} exists but is not a store table "
                        f"(columns {sorted(columns)})"
                    )
                for statement in statements[1:]:
                    connection.execute(statement)
                self._no_pending_list(connection)
        except psycopg.Error as error:
            raise StoreError(f"cannot set up table {self.table!r}: {error}") from error

    def _no_pending_list(self, connection: psycopg.Connection) -> None:
        """Turn fastupdate off on an index made before it was (once)."""
        index = f"{self.table}__meta"
        row = connection.execute(
            "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relname = %s "
            "AND n.nspname = current_schema()",
            (index,),
        ).fetchone()
        if row is None or "fastupdate=off" in (row[0] or []):
            return
        connection.execute(
            sql.SQL("ALTER INDEX {} SET (fastupdate = off)").format(
                sql.Identifier(index)
            )
        )
        # What waits in the pending list still slows every query.
        connection.execute(
            "SELECT gin_clean_pending_list(%s::regclass)",
            (sql.Identifier(index).as_string(connection),),
        )

    def disconnect(self) -> None:
        """Stop the listener and close the connections."""
        self._stop.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.join(30)
        with self._lock:
            connection, self._connection = self._connection, None
            self._connected = False
            self.connection_state = "disconnected"
            if connection is not None:
                connection.close()

    def is_connected(self) -> bool:
        """Whether ``connect`` was called (and not ``disconnect``)."""
        return self._connected

    # -- low level ---------------------------------------------------------------

    def _live_connection(self) -> psycopg.Connection:
        if not self._connected:
            raise StoreError("the PostgresStore is not connected: call connect() first")
        connection = self._connection
        if connection is None or connection.closed or connection.broken:
            if self._transaction is not None:
                raise StoreError(
                    "the connection to PostgreSQL was lost mid-transaction"
                )
            if connection is not None:
                connection.close()
            self._connection = None
            connection = self._open()
            self._connection = connection
            self._own_pids.add(connection.info.backend_pid)
        return connection

    def _fetch(self, query: Any, parameters: Any = (), retry: bool = True) -> list:
        """Run a read and return its rows; retried once on a fresh connection."""
        with self._lock:
            connection = self._live_connection()
            try:
                return connection.execute(query, parameters, binary=True).fetchall()
            except psycopg.OperationalError as error:
                if retry and self._transaction is None and connection.broken:
                    return self._fetch(query, parameters, retry=False)
                raise StoreError(f"PostgreSQL error: {error}") from error
            except psycopg.Error as error:
                raise StoreError(f"PostgreSQL error: {error}") from error

    class _Write:
        """Runs a block in a transaction, a savepoint if one is running."""

        def __init__(self, store: PostgresStore) -> None:
            self.store = store
            self.transaction: Any = None

        def __enter__(self) -> psycopg.Connection:
            store = self.store
            store._lock.acquire()
            try:
                connection = store._live_connection()
                self.transaction = connection.transaction()
                try:
                    self.transaction.__enter__()
                except psycopg.OperationalError:
                    # A connection the server dropped (restart) is noticed
                    # only now; nothing was written: start over on a new one.
                    if not connection.broken or store._transaction is not None:
                        raise
                    connection = store._live_connection()
                    self.transaction = connection.transaction()
                    self.transaction.__enter__()
            except psycopg.Error as error:
                store._lock.release()
                raise StoreError(f"PostgreSQL error: {error}") from error
            except BaseException:
                store._lock.release()
                raise
            return connection

        def __exit__(self, exc_type, exc, tb) -> bool:
            try:
                self.transaction.__exit__(exc_type, exc, tb)
            except psycopg.Error as error:
                if exc is None:
                    raise StoreError(f"PostgreSQL error: {error}") from error
                # The block's own error is the one to report.
            finally:
                self.store._lock.release()
            if isinstance(exc, psycopg.Error):
                raise StoreError(f"PostgreSQL error: {exc}") from exc
            return False

    def _notify(self, connection, action: str, key: str, metadata: dict | None):
        """Queue the change's NOTIFY in the current transaction."""
        self._counter += 1
        payload = {"n": self._counter, "a": action, "k": key, "m": metadata}
        text = json.dumps(payload, separators=(",", ":"))
        if len(text.encode()) > _PAYLOAD_LIMIT:
            del payload["m"]
            text = json.dumps(payload, separators=(",", ":"))
            if len(text.encode()) > _PAYLOAD_LIMIT:
                # A key this long cannot be named: say only that it changed.
                text = json.dumps({"n": self._counter, "a": "unknown"})
        connection.execute("SELECT pg_notify(%s, %s)", (self.channel, text))

    # -- listener ------------------------------------------------------------------

    def _listen_loop(self) -> None:
        delay = 0.1
        first = True
        while not self._stop.is_set():
            try:
                connection = psycopg.connect(
                    self.dsn,
                    autocommit=True,
                    connect_timeout=int(self.connect_timeout),
                )
            except psycopg.Error as error:
                logger.warning("PostgresStore listener cannot connect: %s", error)
                self.connection_state = "reconnecting"
                self._stop.wait(delay)
                delay = min(delay * 2, self.reconnect_max)
                continue
            try:
                connection.execute(
                    sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))
                )
                delay = 0.1
                self._listening.set()
                if not first:
                    self.connection_state = "connected"
                    self._emit_now(
                        StoreChangesMissedEvent(
                            source=self,
                            reason="the connection to PostgreSQL was lost and "
                            "re-established; changes made meanwhile were not heard",
                        )
                    )
                first = False
                while not self._stop.is_set():
                    for notify in connection.notifies(timeout=0.25):
                        self._heard(notify)
            except psycopg.Error as error:
                if self._stop.is_set():
                    break
                logger.warning("PostgresStore listener lost PostgreSQL: %s", error)
                self.connection_state = "reconnecting"
                self.reconnections += 1
                self._stop.wait(delay)
                delay = min(delay * 2, self.reconnect_max)
            finally:
                connection.close()

    def _heard(self, notify: Any) -> None:
        if notify.pid in self._own_pids:
            return
        try:
            payload = json.loads(notify.payload)
            event_class = _ACTIONS[payload["a"]]
            key = payload["k"]
        except (ValueError, KeyError, TypeError):
            self._emit_now(
                StoreChangesMissedEvent(
                    source=self, reason="a change notification could not be read"
                )
            )
            return
        metadata = payload.get("m")
        if (
            metadata is None
            and "m" not in payload
            and event_class is not StoreDeleteEvent
        ):
            try:
                metadata = self.get_metadata(key)
            except (KeyError, StoreError):
                metadata = None
        self._emit_now(event_class(source=self, key=key, metadata=metadata))

    # -- reading -------------------------------------------------------------------

    def _row(self, raw: bytes, columns: str) -> tuple | None:
        rows = self._fetch(
            self._sql("SELECT " + columns + " FROM {table} WHERE key = %s"), (raw,)
        )
        return rows[0] if rows else None

    def get(self, key: str) -> Value:
        """Return the value of ``key`` (``KeyError`` if absent)."""
        row = self._row(_check_key(key), "meta, data, blob_id, size, created, modified")
        if row is None:
            raise KeyError(key)
        meta, data, blob_id, size, created, modified = row
        metadata = json.loads(meta)
        if blob_id is None:
            return BytesValue(data or b"", metadata, created, modified)
        return PostgresValue(self, key, blob_id, metadata, size, created, modified)

    def get_data(self, key: str) -> Any:
        """Return a stream of the data of ``key`` (``KeyError`` if absent)."""
        row = self._row(_check_key(key), "data, blob_id, size")
        if row is None:
            raise KeyError(key)
        data, blob_id, size = row
        if blob_id is None:
            return io.BytesIO(data or b"")
        return _ChunkStream(self, key, blob_id, 0, size)

    def get_metadata(self, key: str, select: Iterable[str] | None = None) -> dict:
        """Return the metadata of ``key`` (``KeyError`` if absent)."""
        row = self._row(_check_key(key), "meta")
        if row is None:
            raise KeyError(key)
        return select_metadata(json.loads(row[0]), select)

    def exists(self, key: str) -> bool:
        """Whether ``key`` is in the store."""
        return self._row(_check_key(key), "1") is not None

    def _candidates(self, criteria: dict) -> list:
        """Rows (key, meta) that may match: filtered by the GIN index."""
        clauses = []
        parameters: list = []
        for name, value in criteria.items():
            forms = [value]
            # Python: True == 1 == 1.0; jsonb: true is not 1.
            if type(value) is bool:
                forms.append(int(value))
            elif type(value) in (int, float) and value in (0, 1):
                forms.append(bool(value))
            alternatives = []
            for form in forms:
                alternatives.append("meta_index @> %s::jsonb")
                parameters.append(_dumps({name: _index_copy(form)}))
            clauses.append("(" + " OR ".join(alternatives) + ")")
        query = "SELECT key, meta FROM {table}"
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        return self._fetch(self._sql(query), parameters)

    def query(
        self, select: Iterable[str] | None = None, **kwargs: Any
    ) -> list[tuple[str, dict]]:
        """Return ``(key, metadata)`` for the keys whose metadata matches."""
        if select is not None:
            select = list(select)
        criteria = check_metadata(kwargs)
        result = []
        for raw, text in self._candidates(criteria):
            metadata = json.loads(text)
            if criteria and not metadata_matches(metadata, criteria):
                continue
            result.append((_key_text(raw), select_metadata(metadata, select)))
        return result

    def query_keys(self, **kwargs: Any) -> list[str]:
        """Return the keys whose metadata matches ``kwargs`` (all if none)."""
        if not kwargs:
            rows = self._fetch(sql.SQL("SELECT key FROM {}").format(self._table))
            return [_key_text(row[0]) for row in rows]
        return [key for key, _ in self.query(select=(), **kwargs)]

    def glob(self, pattern: str) -> list[str]:
        """Return the keys matching ``pattern`` (``fnmatch``), from the key index."""
        match = compile_glob(pattern)
        low, high = _prefix_range(pattern)
        if high is None:
            rows = self._fetch(
                sql.SQL("SELECT key FROM {} WHERE key >= %s").format(self._table),
                (low,),
            )
        else:
            rows = self._fetch(
                sql.SQL("SELECT key FROM {} WHERE key >= %s AND key < %s").format(
                    self._table
                ),
                (low, high),
            )
        keys = (_key_text(row[0]) for row in rows)
        return [key for key in keys if match(key)]

    # -- writing -------------------------------------------------------------------

    def _store(
        self, key: str, raw: bytes, stream: Any, metadata: dict | None, buffer_size
    ) -> dict:
        """Write data (and metadata, unless None) in one transaction."""
        buffer_size = buffer_size or DEFAULT_BUFFER_SIZE
        with self._Write(self) as connection:
            blob_id: int | None = None
            first: bytes | None = None
            pending = bytearray()
            seq = 0
            copy_context: Any = None
            copy: Any = None

            def flush(final: bool) -> None:
                nonlocal seq
                while len(pending) >= CHUNK_SIZE or (final and pending):
                    piece = bytes(pending[:CHUNK_SIZE])
                    del pending[:CHUNK_SIZE]
                    copy.write_row((blob_id, seq, piece))
                    seq += 1

            def write(chunk: bytes) -> None:
                nonlocal first, blob_id, copy_context, copy
                if blob_id is None:
                    if first is None:
                        first = bytes(chunk)
                        return
                    blob_id = secrets.randbits(62)
                    copy_context = connection.cursor().copy(
                        self._sql(
                            "COPY {chunks} (blob_id, seq, data) FROM STDIN "
                            "(FORMAT BINARY)"
                        )
                    )
                    copy = copy_context.__enter__()
                    copy.set_types(["int8", "int4", "bytea"])
                    pending.extend(first)
                    first = None
                pending.extend(chunk)
                flush(False)

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
                if copy is not None:
                    flush(True)
            except BaseException as error:
                if copy_context is not None:
                    try:
                        copy_context.__exit__(type(error), error, None)
                    except psycopg.Error:
                        pass
                raise
            if copy_context is not None:
                copy_context.__exit__(None, None, None)
            old = self._lock_row(connection, raw)
            if metadata is None:
                metadata = {} if old is None else json.loads(old[0])
            modified = _next_time(None if old is None else old[3])
            created = modified if old is None else old[2]
            data = None if blob_id is not None else (first or b"")
            connection.execute(
                self._sql(
                    "INSERT INTO {table} (key, meta, meta_index, data, blob_id, size, "
                    "created, modified) VALUES (%s, %s, %s::jsonb, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET meta = EXCLUDED.meta, "
                    "meta_index = EXCLUDED.meta_index, data = EXCLUDED.data, "
                    "blob_id = EXCLUDED.blob_id, size = EXCLUDED.size, "
                    "created = EXCLUDED.created, modified = EXCLUDED.modified"
                ),
                (
                    raw,
                    _dumps(metadata),
                    _dumps(_index_copy(metadata)),
                    data,
                    blob_id,
                    size,
                    created,
                    modified,
                ),
            )
            if old is not None and old[1] is not None:
                connection.execute(
                    self._sql("DELETE FROM {chunks} WHERE blob_id = %s"), (old[1],)
                )
            self._notify(connection, "set", key, metadata)
        return metadata

    def _lock_row(self, connection: psycopg.Connection, raw: bytes) -> tuple | None:
        """The key's row (meta, blob_id, created, modified), locked; or None.

        A key not yet in the table has no row to lock: a second writer of
        the same new key would find nothing either, wait on the first one's
        INSERT and overwrite its row without deleting its chunks (left
        behind for good). So for an absent key a transaction-level advisory
        lock on (table, key) is taken and the row looked up again: the
        second writer waits there, then finds and locks the first's row.
        """
        select = self._sql(
            "SELECT meta, blob_id, created, modified FROM {table} "
            "WHERE key = %s FOR UPDATE"
        )
        old = connection.execute(select, (raw,)).fetchone()
        if old is None:
            digest = hashlib.blake2b(raw, digest_size=4, person=b"encore-k").digest()
            connection.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s), %s)",
                (self.table, int.from_bytes(digest, "big", signed=True)),
            )
            old = connection.execute(select, (raw,)).fetchone()
        return old

    def set(self, key: str, value: Any, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        """Store ``value`` at ``key`` in one transaction; emits ``StoreSetEvent``.

        Raises
        ------
        ValueError
            If the metadata is not JSON-representable (nothing is written).
        StoreError
            If the database fails (the old value is kept).
        """
        raw = _check_key(key)
        stream, metadata, owned = unpack_value(value)
        try:
            metadata = check_metadata(metadata)
            self._store(key, raw, stream, metadata, buffer_size)
        finally:
            if owned:
                stream.close()
        self._emit([StoreSetEvent(source=self, key=key, metadata=metadata)])

    def set_data(
        self, key: str, data: Any, buffer_size: int = DEFAULT_BUFFER_SIZE
    ) -> None:
        """Replace the data of ``key`` (new keys get ``{}`` metadata)."""
        raw = _check_key(key)
        stream, owned = as_stream(data)
        try:
            metadata = self._store(key, raw, stream, None, buffer_size)
        finally:
            if owned:
                stream.close()
        self._emit([StoreSetEvent(source=self, key=key, metadata=metadata)])

    def set_metadata(self, key: str, metadata: dict) -> None:
        """Replace the metadata of ``key`` (new keys get empty data)."""
        raw = _check_key(key)
        metadata = check_metadata(metadata)
        now = _next_time(None)
        with self._Write(self) as connection:
            connection.execute(
                self._sql(
                    "INSERT INTO {table} AS t (key, meta, meta_index, data, blob_id, "
                    "size, created, modified) "
                    "VALUES (%s, %s, %s::jsonb, '', NULL, 0, %s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET meta = EXCLUDED.meta, "
                    "meta_index = EXCLUDED.meta_index, "
                    "modified = greatest(EXCLUDED.modified, t.modified + 1e-6)"
                ),
                (raw, _dumps(metadata), _dumps(_index_copy(metadata)), now, now),
            )
            self._notify(connection, "set", key, metadata)
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
        raw = _check_key(key)
        update = check_metadata(metadata)
        with self._Write(self) as connection:
            old = connection.execute(
                self._sql(
                    "SELECT meta, modified FROM {table} WHERE key = %s FOR UPDATE"
                ),
                (raw,),
            ).fetchone()
            if old is None:
                raise KeyError(key)
            merged = json.loads(old[0])
            merged.update(update)
            connection.execute(
                self._sql(
                    "UPDATE {table} SET meta = %s, meta_index = %s::jsonb, "
                    "modified = %s WHERE key = %s"
                ),
                (_dumps(merged), _dumps(_index_copy(merged)), _next_time(old[1]), raw),
            )
            self._notify(connection, "update", key, merged)
        self._emit([StoreUpdateEvent(source=self, key=key, metadata=merged)])

    def delete(self, key: str) -> None:
        """Delete ``key``; emits ``StoreDeleteEvent`` (``KeyError`` if absent)."""
        raw = _check_key(key)
        with self._Write(self) as connection:
            old = connection.execute(
                self._sql("DELETE FROM {table} WHERE key = %s RETURNING meta, blob_id"),
                (raw,),
            ).fetchone()
            if old is None:
                raise KeyError(key)
            if old[1] is not None:
                connection.execute(
                    self._sql("DELETE FROM {chunks} WHERE blob_id = %s"), (old[1],)
                )
            metadata = json.loads(old[0])
            self._notify(connection, "delete", key, metadata)
        self._emit([StoreDeleteEvent(source=self, key=key, metadata=metadata)])

    # -- transactions ----------------------------------------------------------

    def _begin_transaction(self) -> None:
        try:
            connection = self._live_connection()
            transaction = connection.transaction()
            transaction.__enter__()
        except psycopg.Error as error:
            raise StoreError(f"PostgreSQL error: {error}") from error
        self._transaction = transaction

    def _commit_transaction(self) -> None:
        transaction, self._transaction = self._transaction, None
        try:
            transaction.__exit__(None, None, None)
        except psycopg.Error as error:
            raise StoreError(f"PostgreSQL error: {error}") from error

    def _rollback_transaction(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is None:
            return
        try:
            transaction.__exit__(psycopg.Rollback, psycopg.Rollback(transaction), None)
        except psycopg.Error as error:
            logger.warning("PostgresStore rollback failed: %s", error)
