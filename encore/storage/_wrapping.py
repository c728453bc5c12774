"""Helpers for stores that wrap other stores.

Private to `encore.storage.joined_store`, `encore.storage.mounted_store` and
`encore.storage.simple_auth_store` (and `dynamic_url_store` for
`bytes_left`):

- `ProgressReader`: passes a data stream through to an inner store while
  reporting the copy as the wrapper's own ``StoreProgress*`` events;
- `PassThroughTransactionContext`: a wrapper's transaction that opens the
  transactions of the stores it writes to, and commits or rolls them back
  together;
- `data_length`, `bytes_left`: the number of bytes a value (or a stream)
  will provide, when cheap;
- `connect_stores`: connect the inner stores that are not connected yet;
- `write_through`, `set_through`, `set_data_through`: a wrapper's ``set``
  and ``set_data`` written into one inner store, with the wrapper's events.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable
from typing import Any

from encore.storage._streams import ReadStream
from encore.storage.abstract_store import Value, as_stream, unpack_value
from encore.storage.events import StoreSetEvent
from encore.storage.utils import (
    DummyTransactionContext,
    StoreProgressManager,
    check_metadata,
)

__all__ = [
    "ProgressReader",
    "PassThroughTransactionContext",
    "bytes_left",
    "connect_stores",
    "data_length",
    "set_data_through",
    "set_through",
    "write_through",
]

logger = logging.getLogger(__name__)


def data_length(value: Any) -> int | None:
    """Bytes left in the data of ``value`` (a `Value`, a pair or a stream).

    Returns None when only reading the data would tell.
    """
    if isinstance(value, Value):
        return value.size
    data = value
    if isinstance(value, tuple) and len(value) == 2:
        data = value[0]
    return bytes_left(data)


def bytes_left(data: Any) -> int | None:
    """Bytes left in ``data`` (a bytes-like object or a seekable stream).

    Returns None for anything else (an unseekable stream, an iterator) or
    when the stream fails to tell: only reading it would say.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        return memoryview(data).nbytes
    try:
        # A seekable stream (a file, a BytesIO): what is left from its
        # position to its end.
        if not data.seekable():
            return None
        position = data.tell()
        end = data.seek(0, io.SEEK_END)
        data.seek(position)
        return end - position
    except (AttributeError, OSError, ValueError):
        return None


class ProgressReader(ReadStream):
    """A stream passed to an inner store that reports the copy as progress.

    Emits nothing for data that fits in one read, as the stores of this
    package do for short copies. From the second non-empty read on, it emits
    ``StoreProgressStartEvent`` (source: the wrapper, key: the wrapper's
    key), then a ``StoreProgressStepEvent`` per read with the bytes so far;
    the end event comes at end of data, or from `finish` if the inner store
    fails.

    Parameters
    ----------
    stream : file-like
        The data being written.
    store : store
        The wrapper, source of the events (its ``event_manager`` is used).
    key : str
        The key as the wrapper's users know it.
    metadata : dict or None
        Metadata carried by the events.
    size : int or None
        Total bytes, the ``steps`` of the start event (-1 if unknown).
    message : str
        Human-readable description of the copy.
    """

    def __init__(
        self,
        stream: Any,
        store: Any,
        key: str,
        metadata: dict | None,
        size: int | None,
        message: str,
    ) -> None:
        super().__init__()
        self._stream = stream
        self._store = store
        self._key = key
        self._metadata = metadata
        self._size = size
        self._message = message
        self._reads = 0
        self._total = 0
        self._first = 0
        self._manager: StoreProgressManager | None = None
        self._ended = False

    def readable(self) -> bool:
        """Return True: this stream is readable."""
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Read from the wrapped stream, reporting progress."""
        chunk = self._stream.read(-1 if size is None else size)
        if not chunk:
            self.finish()
            return b""
        chunk = bytes(chunk)
        self._reads += 1
        self._total += len(chunk)
        if self._reads == 1:
            self._first = len(chunk)
            return chunk
        if self._manager is None and not self._ended:
            manager = StoreProgressManager(
                self._store.event_manager,
                self._store,
                None,
                self._message,
                -1 if self._size is None else self._size,
                key=self._key,
                metadata=self._metadata,
            )
            manager.start()
            manager.step(step=self._first)
            self._manager = manager
        if self._manager is not None and not self._ended:
            self._manager.step(step=self._total)
        return chunk

    def readall(self) -> bytes:
        """Read to the end of the wrapped stream."""
        parts = []
        while chunk := self.read(1048576):
            parts.append(chunk)
        return b"".join(parts)

    def finish(self, exc: BaseException | None = None) -> None:
        """End the progress report (once): normally, or with ``exc``."""
        if self._ended:
            return
        self._ended = True
        if self._manager is None:
            return
        if exc is None:
            self._manager.end()
        else:
            self._manager.end(message=str(exc), exit_state="exception")


class PassThroughTransactionContext(DummyTransactionContext):
    """A wrapper store's transaction, opening its inner stores' ones.

    Beginning enters ``store._transaction_stores()``'s own transactions (in
    order); committing leaves them without error (in reverse order), rolling
    back leaves them with one, so each inner store commits or rolls back its
    part. It can roll back only if every inner transaction can.

    There is no two-phase commit: if an inner commit fails after another
    inner store committed, the committed part stays (and the failure
    propagates; the remaining inner transactions are rolled back).
    """

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self._open: list[Any] = []

    def _inner_contexts(self) -> list[Any]:
        contexts = []
        for inner in self.store._transaction_stores():
            transaction = getattr(inner, "transaction", None)
            if transaction is not None:
                contexts.append(transaction(self.notes))
        return contexts

    @property
    def can_rollback(self) -> bool:  # type: ignore[override]
        """Whether every inner store can roll its part back."""
        return all(
            getattr(context, "can_rollback", False)
            for context in self._inner_contexts()
        )

    def begin(self) -> None:
        """Enter the inner stores' transactions."""
        for context in self._inner_contexts():
            try:
                context.__enter__()
            except BaseException as exc:
                self._leave_all(exc)
                raise
            self._open.append(context)

    def commit(self) -> None:
        """Commit the inner transactions, last opened first."""
        while self._open:
            # Popped first: a context whose commit fails has already left
            # (and rolled itself back); it must not be left twice.
            context = self._open.pop()
            context.__exit__(None, None, None)

    def rollback(self) -> None:
        """Roll back whatever inner transactions are still open."""
        self._leave_all(RuntimeError("transaction rolled back"))

    def _leave_all(self, exc: BaseException) -> None:
        while self._open:
            context = self._open.pop()
            try:
                context.__exit__(type(exc), exc, None)
            except Exception:
                # Keep rolling back the others; the outer error propagates.
                logger.exception("rolling back an inner transaction failed")


def connect_stores(stores: Iterable[Any], credentials: Any = None) -> list[Any]:
    """Connect each of ``stores`` that is not connected yet; return those.

    ``credentials`` are passed to each ``connect`` called. Stores connected
    already are left alone (and are not in the result, so a wrapper's
    ``disconnect`` leaves them connected).

    Raises
    ------
    Whatever an inner ``connect`` raises; the stores connected so far are
    disconnected again first.
    """
    connected: list[Any] = []
    try:
        for store in stores:
            if not store.is_connected():
                store.connect(credentials)
                connected.append(store)
    except BaseException:
        for store in connected:
            store.disconnect()
        raise
    return connected


def write_through(
    wrapper: Any,
    target: Any,
    target_key: str,
    key: str,
    stream: Any,
    metadata: dict,
    size: int | None,
    buffer_size: int,
) -> None:
    """Set ``target_key`` in ``target`` from ``stream``, through a `ProgressReader`.

    Progress is reported as ``wrapper``'s, for ``key`` (the key as the
    wrapper's users know it); a failure of ``target.set`` ends the progress
    report with the exception and propagates.
    """
    reader = ProgressReader(stream, wrapper, key, metadata, size, f"Writing {key!r}")
    try:
        target.set(target_key, (reader, metadata), buffer_size)
    except BaseException as exc:
        reader.finish(exc)
        raise
    reader.finish()


def set_through(
    wrapper: Any,
    target: Any,
    target_key: str,
    key: str,
    value: Any,
    buffer_size: int,
) -> None:
    """A wrapper's ``set``: write ``value`` into ``target``, emit the event.

    Writes with `write_through` under ``wrapper._lock``, closes a stream it
    opened, then emits `StoreSetEvent` (source: ``wrapper``, key: ``key``).

    Raises
    ------
    ValueError
        If the metadata is not JSON-representable (nothing is written).
    TypeError
        If ``value`` is not a value.
    """
    size = data_length(value)
    stream, metadata, owned = unpack_value(value)
    try:
        metadata = check_metadata(metadata)
        with wrapper._lock:
            write_through(
                wrapper, target, target_key, key, stream, metadata, size, buffer_size
            )
    finally:
        if owned:
            stream.close()
    wrapper._emit([StoreSetEvent(source=wrapper, key=key, metadata=dict(metadata))])


def set_data_through(
    wrapper: Any,
    target: Any,
    target_key: str,
    key: str,
    data: Any,
    buffer_size: int,
    current_metadata: Callable[[str], dict],
) -> None:
    """A wrapper's ``set_data``: replace the data, keep the metadata.

    The metadata kept is ``current_metadata(key)``, read under
    ``wrapper._lock`` (``{}`` if it raises ``KeyError``: a new key); the
    write goes through `write_through`, then `StoreSetEvent` is emitted.
    """
    size = data_length(data)
    stream, owned = as_stream(data)
    try:
        with wrapper._lock:
            try:
                metadata = current_metadata(key)
            except KeyError:
                metadata = {}
            write_through(
                wrapper, target, target_key, key, stream, metadata, size, buffer_size
            )
    finally:
        if owned:
            stream.close()
    wrapper._emit([StoreSetEvent(source=wrapper, key=key, metadata=metadata)])
