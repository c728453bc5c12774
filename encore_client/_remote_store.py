"""RemoteStore: a store hosted by ``encored``, used from any process.

A :class:`RemoteStore` is a complete ``AbstractStore`` whose every call
travels to the daemon (``store.*`` operations, see ``docs/store_calls.md``)
and runs there on the real store.  What it adds to a plain call:

* **Streaming.**  Values larger than ``INLINE_LIMIT`` move in chunks of
  ``chunk_size`` bytes, one request per chunk, in both directions: a 1 GiB
  ``set`` or ``get`` never holds more than a chunk or two in this process
  or in the daemon.  Small values travel inside one request.
* **Transactions as one batch.**  Inside ``with store.transaction():`` writes
  are collected here and sent together when the block ends; the daemon runs
  them inside the real store's ``transaction()``.  Reads of keys written in
  the block see the block's writes (``exists``, ``get``, ``get_metadata``);
  ``query`` and ``glob`` see the store as it was.  A block that raises sends
  an empty batch marked *abort*, so the store still emits its transaction
  start and end (``committed=False``) events and changes nothing.  Values
  too large for the batch message are uploaded first and kept aside by the
  daemon until the batch refers to them.
* **The same errors.**  ``KeyError``, ``AuthorizationError``,
  ``AuthenticationError``, ``ReadOnlyStoreError``, ``StoreError``,
  ``ValueError``, ``TypeError``, ``OSError`` come back as themselves;
  :class:`UnknownStoreError` for a store the daemon does not host;
  :class:`~encore_client.DaemonUnavailableError` (a ``TimeoutError``) when no
  answer came within ``timeout``, after which the proxy is still usable; at
  once, without waiting, while no daemon has answered this proxy yet and
  none runs (no socket file, or one nobody listens on).  Once one has
  answered, a missing daemon is taken for one restarting and waited for.
* **Events.**  The store's events are the daemon's store events: they
  reach a process through a :class:`~encore_client.BusBridge` on its event
  manager, and their ``source`` is this process's own ``RemoteStore`` for
  that store (the most recently created one of that name).  The proxy
  emits no store events of its own, except the ``StoreProgress*`` events
  of the copies the base class makes (``to_file``, ``to_bytes``).
"""

from __future__ import annotations

__all__ = ["RemoteStore", "RemoteValue", "list_stores", "check_metadata"]

import io
import math
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import msgpack
import zmq

from encore.storage.abstract_store import (
    AbstractStore,
    StoreError,
    Value,
    as_stream,
    unpack_value,
)
from encore.storage.utils import DEFAULT_BUFFER_SIZE

from . import _codec
from ._paths import no_daemon_reason
from ._transport import Reply, Transport, ZmqTransport
from .wire.errors import DaemonUnavailableError, TransferError
from .wire.limits import (
    CHUNK_SIZE,
    ENVELOPE_DATA,
    INLINE_LIMIT,
    MAX_CLIENT_CHUNK,
    MIN_CHUNK,
)
from .wire.sources import SOURCE_KIND

#: Largest total of inline data frames in one transaction batch; larger
#: values of a batch are staged (uploaded ahead) instead.
BATCH_INLINE_TOTAL = 8 * 1024 * 1024


# -- metadata checks ----------------------------------------------------------------


def _check_json(value: Any, path: str) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"metadata {path} is {value!r}, which JSON cannot hold")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise ValueError(f"metadata {path} has a non-string key {k!r}")
            _check_json(item, f"{path}[{k!r}]")
        return
    raise ValueError(
        f"metadata {path} is a {type(value).__name__}, which JSON cannot hold"
    )


def check_metadata(metadata: Any) -> dict:
    """Return ``metadata`` if it is a JSON-representable dict.

    Raises ``ValueError`` saying what is wrong otherwise (nothing is sent).
    """
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a dict, not {type(metadata).__name__}")
    _check_json(metadata, "value")
    return metadata


def _check_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"keys are strings, not {type(key).__name__}")
    return key


def _read_up_to(stream: Any, size: int) -> bytes:
    """Read ``size`` bytes from a client's stream, fewer only at its end."""
    parts = []
    have = 0
    while have < size:
        data = stream.read(size - have)
        if not data:
            break
        parts.append(data)
        have += len(data)
    return b"".join(parts) if len(parts) != 1 else bytes(parts[0])


def _first_data(reply: Reply) -> bytes:
    if reply.frames:
        return reply.frames[0]
    data = reply.result.get("data", b"")
    if not isinstance(data, bytes):
        raise TransferError("the daemon sent data that is not bytes")
    return data


# -- values and streams ----------------------------------------------------------------


class _RemoteReader(io.RawIOBase):
    """A data stream read chunk by chunk from the daemon."""

    def __init__(self, store: RemoteStore, stream_id: str | None, first: bytes) -> None:
        super().__init__()
        self._store = store
        self._id = stream_id
        self._chunk: bytes | memoryview = first
        self._received = len(first)
        self._eof = stream_id is None
        self._gc = False

    def readable(self) -> bool:
        return True

    def _fetch(self) -> None:
        reply = self._store._call(
            "store.read",
            {
                "stream": self._id,
                "offset": self._received,
                "size": self._store.chunk_size,
            },
            with_store=False,
        )
        data = reply.frames[0] if reply.frames else b""
        self._received += len(data)
        self._chunk = data
        if reply.result.get("eof", True):
            self._eof = True
            self._id = None

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all that is left when negative)."""
        if self.closed:
            raise ValueError("I/O operation on closed stream")
        if size is None or size < 0:
            return self.readall()
        if not self._chunk and not self._eof:
            self._fetch()
        chunk = self._chunk
        if size >= len(chunk):
            self._chunk = b""
            return chunk if isinstance(chunk, bytes) else bytes(chunk)
        view = memoryview(chunk)
        self._chunk = view[size:]
        return bytes(view[:size])

    def readall(self) -> bytes:
        """Read to the end."""
        parts = []
        while True:
            data = self.read(self._store.chunk_size)
            if not data:
                return b"".join(parts)
            parts.append(data)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Close the stream; tell the daemon if it was not read to the end."""
        if not self.closed and self._id is not None and not self._gc:
            stream_id, self._id = self._id, None
            try:
                self._store._call(
                    "store.close_stream", {"stream": stream_id}, with_store=False
                )
            except Exception:
                pass  # the daemon forgets idle streams by itself
        self._chunk = b""
        super().close()

    def __del__(self) -> None:
        # Never talk to the daemon from a garbage collection (it may run
        # inside another call holding the transport); it expires the stream.
        self._gc = True
        super().__del__()


class RemoteValue(Value):
    """A value read through a :class:`RemoteStore`.

    The first ``data`` access streams the bytes fetched with the value; a
    later access (or ``range``) asks the daemon again for the key's data.
    """

    def __init__(
        self,
        store: RemoteStore,
        key: str,
        result: dict[str, Any],
        first: bytes,
    ) -> None:
        self._store = store
        self._key = key
        self.metadata = result.get("metadata") or {}
        self.size = result.get("size")
        self.created = result.get("created")
        self.modified = result.get("modified")
        permissions = result.get("permissions")
        self.permissions = (
            {k: set(v) for k, v in permissions.items()}
            if permissions is not None
            else None
        )
        self._first: tuple[str | None, bytes] | None = (result.get("stream"), first)
        self._inline = first if result.get("stream") is None else None

    @property
    def data(self) -> Any:
        """A new readable stream over the data."""
        if self._inline is not None:
            return io.BytesIO(self._inline)
        if self._first is not None:
            stream_id, first = self._first
            self._first = None
            return _RemoteReader(self._store, stream_id, first)
        return self._store.get_data_range(self._key)

    def range(self, start: int | None = None, end: int | None = None) -> Any:
        """A stream of bytes ``start`` to ``end`` (exclusive)."""
        if self._inline is not None:
            start = 0 if start is None else start
            if start < 0 or (end is not None and end < start):
                raise ValueError(f"invalid range {start!r}..{end!r}")
            return io.BytesIO(self._inline[start:end])
        return self._store.get_data_range(self._key, start, end)


class _LocalValue(Value):
    """A value written earlier in the current transaction batch."""

    def __init__(
        self, store: RemoteStore, key: str, data: bytes | None, metadata: dict
    ) -> None:
        self._store = store
        self._key = key
        self._data = data
        self.metadata = _copy(metadata)
        self.size = len(data) if data is not None else None

    @property
    def data(self) -> Any:
        if self._data is None:
            raise StoreError(
                f"the data of {self._key!r} was set in this transaction from a large "
                "stream and can be read only after the transaction commits"
            )
        return io.BytesIO(self._data)


def _copy(metadata: dict) -> dict:
    return msgpack.unpackb(msgpack.packb(metadata), raw=False, strict_map_key=False)


_UNCHANGED = object()


class _Batch:
    """The writes of a transaction, waiting to be sent as one request."""

    def __init__(self, notes: str | None) -> None:
        self.notes = notes
        self.ops: list[dict[str, Any]] = []
        self.frames: list[bytes] = []
        self.inline = 0
        self.staged: list[str] = []
        # key -> (data bytes / None when staged / _UNCHANGED, metadata /
        # _UNCHANGED) or None for deleted
        self.overlay: dict[str, tuple[Any, Any] | None] = {}


class _RemoteTransaction:
    """The transaction context of a RemoteStore (re-entrant, one owner)."""

    def __init__(self, store: RemoteStore) -> None:
        self._store = store
        self._notes: str | None = None
        self.depth = 0
        self.batch: _Batch | None = None
        self.owner: int | None = None

    def __call__(self, notes: str | None = None) -> _RemoteTransaction:
        self._notes = notes
        return self

    @property
    def active(self) -> bool:
        return self.depth > 0 and self.owner == threading.get_ident()

    def __enter__(self) -> _RemoteTransaction:
        self._store._lock.acquire()
        if self.depth == 0:
            self.batch = _Batch(self._notes)
            self.owner = threading.get_ident()
        self.depth += 1
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.depth -= 1
        try:
            if self.depth == 0:
                batch, self.batch, self.owner = self.batch, None, None
                assert batch is not None
                if exc_type is None:
                    self._store._send_batch(batch, abort=False)
                else:
                    try:
                        self._store._send_batch(batch, abort=True)
                    except Exception:
                        pass  # the block's own exception is the one to report
        finally:
            self._store._lock.release()


# -- the store ------------------------------------------------------------------------


_proxies: dict[str, list[weakref.ref[RemoteStore]]] = {}
_proxies_lock = threading.Lock()


def _encode_source(obj: object) -> dict[str, Any] | None:
    # The class's MRO, not isinstance: an ABC check on every store event
    # the daemon publishes (its stores are never RemoteStores) costs more.
    if RemoteStore in type(obj).__mro__:
        return {"kind": SOURCE_KIND, "name": obj.name, "pid": os.getpid()}
    return None


def _decode_source(descriptor: dict[str, Any]) -> object:
    name = descriptor.get("name")
    if not isinstance(name, str):
        raise ValueError("store source without a name")
    with _proxies_lock:
        refs = _proxies.get(name, [])
        for ref in reversed(refs):
            proxy = ref()
            if proxy is not None:
                return proxy
    # No proxy for it here yet: make one (it connects only when used).
    return RemoteStore(name)


_codec.register_source_adapter(SOURCE_KIND, _encode_source, _decode_source)


class RemoteStore(AbstractStore):
    """A store hosted by ``encored``, with the whole ``AbstractStore`` API.

    See the module documentation for streaming, transactions, errors and
    events.

    Parameters
    ----------
    name : str
        The store's name in the daemon's configuration (``default`` and
        ``memory`` with the embedded configuration).
    runtime_dir : path, optional
        Where the daemon's sockets are (default: ``ENCORE_RUNTIME_DIR``,
        else ``$XDG_RUNTIME_DIR/encored``).
    timeout : float
        Seconds a call may take, retries included, before
        ``DaemonUnavailableError`` is raised.
    event_manager : EventManager, optional
        Where the proxy's own progress events go, and where a bridge
        delivers the store's events (default: the process-wide manager).
    chunk_size : int
        Bytes per chunk of a streamed value.
    transport : Transport, optional
        Replaces the ZeroMQ transport (tests).

    Nothing is sent until the first call; ``connect()`` checks at once
    that the daemon hosts the store (and logs in, with credentials, to
    stores that check them).
    """

    def __init__(
        self,
        name: str,
        runtime_dir: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        *,
        event_manager: Any = None,
        chunk_size: int = CHUNK_SIZE,
        transport: Transport | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a store name is a non-empty string")
        super().__init__(event_manager)
        self.name = name
        self.runtime_dir = runtime_dir
        self.timeout = timeout
        self.chunk_size = max(MIN_CHUNK, min(int(chunk_size), MAX_CLIENT_CHUNK))
        self._transport = transport
        self._own_transport = transport is None
        self._session: str | None = None
        self._max_message: int | None = None
        self._connected = transport is not None
        #: A daemon has answered this proxy: from then on a missing daemon
        #: is one restarting, waited for (retried) up to ``timeout``.
        self._answered = False
        self._transaction_context = None
        self._tx = _RemoteTransaction(self)
        with _proxies_lock:
            refs = [r for r in _proxies.get(name, []) if r() is not None]
            refs.append(weakref.ref(self))
            _proxies[name] = refs

    def __repr__(self) -> str:
        return f"RemoteStore({self.name!r})"

    # -- calls -----------------------------------------------------------------

    def _get_transport(self) -> Transport:
        transport = self._transport
        if transport is None:
            with self._lock:
                if self._transport is None:
                    self._transport = ZmqTransport(
                        self.runtime_dir,
                        timeout=self.timeout,
                        context=zmq.Context.instance(),
                    )
                    self._connected = True
                transport = self._transport
        return transport

    def _call(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        frames: Sequence[bytes] = (),
        *,
        with_store: bool = True,
        timeout: float | None = None,
    ) -> Reply:
        # Callers pass a dict of their own making: add to it, no copy.
        if args is None:
            args = {}
        if with_store:
            args["store"] = self.name
            if self._session is not None:
                args["session"] = self._session
        transport = self._get_transport()
        if not self._answered:
            if self._own_transport:
                _fail_if_no_daemon(transport)
            reply = transport.request(op, args, frames, timeout)
            self._answered = True
            return reply
        return transport.request(op, args, frames, timeout)

    def _in_tx(self) -> _Batch | None:
        tx = self._tx
        if tx.active:
            return tx.batch
        if tx.depth:
            # Another thread's transaction is open: wait for its end, so
            # that its batch is not interleaved with this call.
            with self._lock:
                pass
        return None

    # -- connection ------------------------------------------------------------

    def connect(self, credentials: Any = None) -> None:
        """Check the daemon hosts the store; log in with ``credentials``.

        Raises
        ------
        UnknownStoreError
            If the daemon hosts no such store.
        AuthenticationError
            If the store checks credentials and refuses these.
        DaemonUnavailableError
            If the daemon does not answer within ``timeout``.
        """
        if credentials is not None and not isinstance(credentials, dict):
            raise TypeError("credentials must be a dict")
        self._session = None
        reply = self._call("store.connect", {"credentials": credentials})
        self._session = reply.result.get("session")
        self._connected = True

    def disconnect(self) -> None:
        """Log out and release the connection (the next call reconnects)."""
        session, self._session = self._session, None
        if session is not None and self._transport is not None:
            try:
                self._call("store.disconnect", {"session": session}, with_store=False)
            except Exception:
                pass  # the daemon forgets sessions of vanished clients anyway
        transport, self._transport = self._transport, None
        self._max_message = None
        if transport is not None and self._own_transport:
            transport.close()
        self._connected = False

    def is_connected(self) -> bool:
        """Whether the proxy has a connection (it reconnects when used)."""
        return self._connected

    # -- reads -----------------------------------------------------------------

    def exists(self, key: str) -> bool:
        """Whether ``key`` is in the store."""
        _check_key(key)
        batch = self._in_tx()
        if batch is not None and key in batch.overlay:
            return batch.overlay[key] is not None
        return bool(self._call("store.exists", {"key": key}).result)

    def get(self, key: str) -> RemoteValue | Value:
        """Return the value of ``key``; its data streams from the daemon.

        Raises ``KeyError`` if the key is not in the store.
        """
        _check_key(key)
        batch = self._in_tx()
        if batch is not None and key in batch.overlay:
            return self._overlay_value(batch, key)
        reply = self._call("store.get", {"key": key, "chunk": self.chunk_size})
        return RemoteValue(self, key, reply.result, _first_data(reply))

    def _overlay_value(self, batch: _Batch, key: str) -> Value:
        entry = batch.overlay[key]
        if entry is None:
            raise KeyError(key)
        data, metadata = entry
        if data is _UNCHANGED:
            data = self._committed_bytes(key)
        if metadata is _UNCHANGED:
            metadata = self._call("store.get_metadata", {"key": key}).result
        return _LocalValue(self, key, data, metadata)

    def _committed_bytes(self, key: str) -> bytes | None:
        try:
            with self._plain_get(key).data as stream:
                return stream.read()
        except KeyError:
            return b""

    def _plain_get(self, key: str) -> RemoteValue:
        reply = self._call("store.get", {"key": key, "chunk": self.chunk_size})
        return RemoteValue(self, key, reply.result, _first_data(reply))

    def get_data_range(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> Any:
        """A stream of bytes ``start`` to ``end`` (exclusive) of ``key``.

        Raises ``KeyError`` (missing key) or ``ValueError`` (bad range).
        """
        _check_key(key)
        batch = self._in_tx()
        if batch is not None and key in batch.overlay:
            return self._overlay_value(batch, key).range(start, end)
        reply = self._call(
            "store.get_range",
            {"key": key, "start": start, "end": end, "chunk": self.chunk_size},
        )
        return _RemoteReader(self, reply.result.get("stream"), _first_data(reply))

    def get_metadata(self, key: str, select: Iterable[str] | None = None) -> dict:
        """The metadata of ``key`` (only the names in ``select``).

        Raises ``KeyError`` if the key is not in the store.
        """
        _check_key(key)
        if select is not None:
            select = list(select)
        batch = self._in_tx()
        if batch is not None and key in batch.overlay:
            metadata = self._overlay_value(batch, key).metadata
            if select is not None:
                metadata = {k: metadata[k] for k in select if k in metadata}
            return metadata
        return self._call("store.get_metadata", {"key": key, "select": select}).result

    def multiget_metadata(
        self, keys: Iterable[str], select: Iterable[str] | None = None
    ) -> Iterator[dict]:
        """The metadata of several keys, in one call (``KeyError`` as get)."""
        keys = [_check_key(k) for k in keys]
        if select is not None:
            select = list(select)
        if self._in_tx() is not None:
            return iter([self.get_metadata(k, select) for k in keys])
        return iter(
            self._call(
                "store.multiget_metadata", {"keys": keys, "select": select}
            ).result
        )

    def query(
        self, select: Iterable[str] | None = None, **kwargs: Any
    ) -> list[tuple[str, dict]]:
        """``(key, metadata)`` pairs whose metadata matches ``kwargs``."""
        if select is not None:
            select = list(select)
        result = self._call(
            "store.query", {"select": select, "criteria": kwargs}
        ).result
        return [(key, metadata) for key, metadata in result]

    def query_keys(self, **kwargs: Any) -> list[str]:
        """The keys whose metadata matches ``kwargs`` (all if none)."""
        return list(self._call("store.query_keys", {"criteria": kwargs}).result)

    def glob(self, pattern: str) -> list[str]:
        """The keys matching the glob ``pattern`` (``fnmatch`` rules)."""
        if not isinstance(pattern, str):
            raise TypeError("a glob pattern is a string")
        return list(self._call("store.glob", {"pattern": pattern}).result)

    # -- writes ----------------------------------------------------------------

    def set(
        self,
        key: str,
        value: Any,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Store ``value`` (a ``Value`` or ``(data, metadata)``) at ``key``.

        Large data streams to the daemon in chunks; ``progress``, if given,
        is called with the number of bytes sent so far.  If reading the
        data fails, the upload is abandoned and the old value stays.

        Raises
        ------
        ValueError
            If the metadata is not JSON-representable (nothing is sent).
        TypeError
            If ``key`` is not a string or ``value`` not a value.
        """
        _check_key(key)
        stream, metadata, owned = unpack_value(value)
        try:
            check_metadata(metadata)
            self._write(key, "set", stream, metadata, buffer_size, progress)
        finally:
            if owned:
                stream.close()

    def set_data(
        self,
        key: str,
        data: Any,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Replace the data of ``key`` (created with ``{}`` metadata if new)."""
        _check_key(key)
        stream, owned = as_stream(data)
        try:
            self._write(key, "set_data", stream, None, buffer_size, progress)
        finally:
            if owned:
                stream.close()

    def _write(
        self,
        key: str,
        mode: str,
        stream: Any,
        metadata: dict | None,
        buffer_size: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        batch = self._in_tx()
        first = _read_up_to(stream, INLINE_LIMIT + 1)
        if batch is not None:
            self._batch_write(batch, key, mode, first, stream, metadata)
            return
        args = {"key": key, "mode": mode, "buffer_size": buffer_size}
        if mode == "set":
            args["metadata"] = metadata
        if len(first) <= ENVELOPE_DATA:
            args["data"] = first
            self._call("store.set", args)
            if progress is not None:
                progress(len(first))
            return
        if len(first) <= INLINE_LIMIT and len(first) < self._message_limit():
            self._call("store.set", args, [first])
            if progress is not None:
                progress(len(first))
            return
        self._upload(args, first, stream, progress)

    def _message_limit(self) -> int:
        """Largest data frame the daemon accepts in one request.

        Asked once (``hello``): libzmq drops a message far over the
        daemon's ``max_message_size`` without a reply, so the proxy must
        not send one.  Chunks are cut to fit.
        """
        if self._max_message is None:
            reply = self._call(
                "hello", {"name": f"RemoteStore {self.name}"}, with_store=False
            )
            limit = int(reply.result.get("max_message_size", 16 << 20))
            self._max_message = max(1024, limit - 8192)  # room for the envelope
            self.chunk_size = min(self.chunk_size, self._max_message)
        return self._max_message

    def _upload(
        self,
        args: dict[str, Any],
        first: bytes,
        stream: Any,
        progress: Callable[[int], None] | None,
    ) -> str | None:
        """Send a value in chunks; return the staged id for mode ``stage``."""
        self._message_limit()
        reply = self._call("store.upload_begin", args)
        upload = reply.result["upload"]
        seq = 0
        sent = 0
        pending = first
        try:
            while True:
                chunk = pending + _read_up_to(stream, self.chunk_size - len(pending))
                pending = b""
                if not chunk:
                    break
                seq = self._send_chunk(upload, seq, chunk)
                sent += len(chunk)
                if progress is not None:
                    progress(sent)
                if len(chunk) < self.chunk_size:
                    break
        except BaseException:
            # The source broke (or the store refused): abandon the upload
            # so the daemon's store call fails and the old value stays.
            try:
                self._call("store.upload_abort", {"upload": upload}, with_store=False)
            except Exception:
                pass
            raise
        end = self._call(
            "store.upload_end", {"upload": upload, "count": seq}, with_store=False
        )
        if isinstance(end.result, dict):
            return end.result.get("staged")
        return None

    def _send_chunk(self, upload: str, seq: int, chunk: bytes) -> int:
        """Send one chunk, in pieces the daemon accepts; return the next seq."""
        limit = self._message_limit()
        view = memoryview(chunk)
        for start in range(0, len(chunk), limit):
            piece = chunk if len(chunk) <= limit else bytes(view[start : start + limit])
            self._call(
                "store.upload_chunk",
                {"upload": upload, "seq": seq},
                [piece],
                with_store=False,
            )
            seq += 1
        return seq

    def _batch_write(
        self,
        batch: _Batch,
        key: str,
        mode: str,
        first: bytes,
        stream: Any,
        metadata: dict | None,
    ) -> None:
        op: dict[str, Any] = {"op": mode, "key": key}
        if mode == "set":
            op["metadata"] = _copy(metadata)
        data: bytes | None
        if len(first) <= INLINE_LIMIT and batch.inline + len(first) <= min(
            BATCH_INLINE_TOTAL, self._message_limit() // 2
        ):
            op["frame"] = len(batch.frames)
            batch.frames.append(first)
            batch.inline += len(first)
            data = first
        else:
            staged = self._upload({"mode": "stage"}, first, stream, None)
            op["staged"] = staged
            data = None
        if mode == "set":
            new_metadata: Any = op["metadata"]
        else:
            new_metadata = self._current_metadata(batch, key, missing={})
        batch.ops.append(op)
        batch.overlay[key] = (data, new_metadata)

    def _current_metadata(
        self, batch: _Batch, key: str, missing: Any = KeyError
    ) -> Any:
        if key in batch.overlay:
            entry = batch.overlay[key]
            if entry is not None:
                metadata = entry[1]
                if metadata is _UNCHANGED:
                    return self._call("store.get_metadata", {"key": key}).result
                return _copy(metadata)
        else:
            try:
                return self._call("store.get_metadata", {"key": key}).result
            except KeyError:
                pass
        if missing is KeyError:
            raise KeyError(key)
        return missing

    def set_metadata(self, key: str, metadata: dict) -> None:
        """Replace the metadata of ``key`` (created with empty data if new).

        Raises ``ValueError`` if the metadata is not JSON-representable.
        """
        _check_key(key)
        check_metadata(metadata)
        batch = self._in_tx()
        if batch is not None:
            batch.ops.append(
                {"op": "set_metadata", "key": key, "metadata": _copy(metadata)}
            )
            entry = batch.overlay.get(key, (_UNCHANGED, None))
            data = entry[0] if entry is not None else b""
            if key not in batch.overlay and not self.exists(key):
                data = b""
            batch.overlay[key] = (data, _copy(metadata))
            return
        self._call("store.set_metadata", {"key": key, "metadata": metadata})

    def update_metadata(self, key: str, metadata: dict) -> None:
        """Update the metadata of ``key`` like ``dict.update``.

        Raises ``KeyError`` if the key is missing, ``ValueError`` if the
        result is not JSON-representable.
        """
        _check_key(key)
        check_metadata(metadata)
        batch = self._in_tx()
        if batch is not None:
            merged = self._current_metadata(batch, key)
            merged.update(_copy(metadata))
            batch.ops.append(
                {"op": "update_metadata", "key": key, "metadata": _copy(metadata)}
            )
            entry = batch.overlay.get(key)
            batch.overlay[key] = (entry[0] if entry else _UNCHANGED, merged)
            return
        self._call("store.update_metadata", {"key": key, "metadata": metadata})

    def delete(self, key: str) -> None:
        """Delete ``key``.  Raises ``KeyError`` if it is not in the store."""
        _check_key(key)
        batch = self._in_tx()
        if batch is not None:
            if not self.exists(key):
                raise KeyError(key)
            batch.ops.append({"op": "delete", "key": key})
            batch.overlay[key] = None
            return
        self._call("store.delete", {"key": key})

    def transaction(self, notes: str | None = None) -> _RemoteTransaction:
        """A transaction: the block's writes are sent as one batch at its end.

        The daemon runs the batch inside the real store's ``transaction()``;
        on stores that can roll back, either all of it is applied or none.
        A block that raises applies nothing.  Re-entrant; other threads'
        writes through this proxy wait until the block ends.
        """
        return self._tx(notes)

    def _send_batch(self, batch: _Batch, abort: bool) -> None:
        args: dict[str, Any] = {"notes": batch.notes, "abort": abort}
        args["ops"] = [] if abort else batch.ops
        frames = [] if abort else batch.frames
        self._call("store.transaction", args, frames)

    # -- permissions -----------------------------------------------------------

    def _permissions(self, key: str, action: str, permissions: Any = None) -> Any:
        _check_key(key)
        args: dict[str, Any] = {"key": key, "action": action}
        if permissions is not None:
            args["permissions"] = {k: sorted(v) for k, v in permissions.items()}
        return self._call("store.permissions", args).result

    def get_permissions(self, key: str) -> dict[str, set[str]]:
        """The permissions of ``key`` on an authorizing store.

        Raises ``NotImplementedError`` on stores without permissions,
        ``KeyError`` or ``AuthorizationError`` as the store decides.
        """
        result = self._permissions(key, "get")
        return {k: set(v) for k, v in (result or {}).items()}

    def set_permissions(self, key: str, permissions: dict[str, set[str]]) -> None:
        """Replace the permissions of ``key`` (see ``get_permissions``)."""
        self._permissions(key, "set", permissions)

    def update_permissions(self, key: str, permissions: dict[str, set[str]]) -> None:
        """Add tags to the permissions of ``key`` (see ``get_permissions``)."""
        self._permissions(key, "update", permissions)

    def check_permissions(self, key: str) -> set[str]:
        """What the connected user may do with ``key`` (simple_auth stores)."""
        _check_key(key)
        return set(self._call("store.check_permissions", {"key": key}).result)


def _fail_if_no_daemon(transport: Any) -> None:
    """Raise at once when certainly no daemon serves ``transport``'s socket.

    A missing socket file or one that refuses connections is known in a
    fraction of a millisecond (``encore_client._paths.no_daemon_reason``),
    where asking would wait out the whole timeout: the same answer the
    ``encore`` command gives.
    """
    where = getattr(transport, "endpoints", None)
    if where is None:
        return
    reason = no_daemon_reason(where)
    if reason is not None:
        raise DaemonUnavailableError(
            f"encored is not running on {where.runtime_dir}: {reason}"
        )


def list_stores(
    runtime_dir: str | os.PathLike[str] | None = None, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """The stores a daemon hosts: ``[{"name", "type", "writable", "watched"}]``.

    Raises ``DaemonUnavailableError`` if no daemon answers in time.
    """
    with ZmqTransport(
        runtime_dir, timeout=timeout, context=zmq.Context.instance()
    ) as t:
        _fail_if_no_daemon(t)
        return list(t.request("store.list", {}).result)
