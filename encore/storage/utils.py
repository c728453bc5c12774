"""Utilities for key-value stores.

File-like helpers
    ``buffer_iterator`` turns a readable file-like object into an iterator of
    byte buffers (memory-bounded streaming); ``BufferIteratorIO`` turns such
    an iterator back into a readable file-like object; ``tee`` clones a
    stream; ``add_context_manager_support`` makes any file-like usable in a
    ``with`` statement.

Transactions
    ``DummyTransactionContext`` for stores with no rollback, and
    ``SimpleTransactionContext`` for stores with begin/commit/rollback. Both
    are re-entrant (only the outermost context acts), exclusive across
    threads (they hold the store's lock for the whole transaction) and hold
    the store's modification events until the end, as the events module
    describes.

Events
    ``StoreProgressManager``: a ``ProgressManager`` that emits the
    ``StoreProgress*`` events.

Metadata
    ``check_metadata`` validates and copies a metadata dict; every store in
    this package calls it before it writes anything.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from encore.events.progress_events import ProgressManager

from ._streams import ReadStream
from .events import (
    StoreProgressEndEvent,
    StoreProgressStartEvent,
    StoreProgressStepEvent,
    StoreTransactionEndEvent,
    StoreTransactionStartEvent,
)

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "BufferIteratorIO",
    "buffer_iterator",
    "tee",
    "add_context_manager_support",
    "DummyTransactionContext",
    "SimpleTransactionContext",
    "StoreProgressManager",
    "check_metadata",
    "copy_metadata",
    "select_metadata",
    "copy_stream",
]

#: Default number of bytes moved at a time when streaming (1 MiB).
DEFAULT_BUFFER_SIZE = 1048576


# --------------------------------------------------------------------------
# File-like helpers
# --------------------------------------------------------------------------


def buffer_iterator(
    filelike: Any,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    progress: Callable[..., Any] | None = None,
    max_bytes: int | None = None,
) -> Iterator[bytes]:
    """Return an iterator of byte buffers read from ``filelike``.

    Parameters
    ----------
    filelike : file-like
        Anything with a ``read(n)`` method returning bytes.
    buffer_size : int
        The number of bytes to ask for at a time.
    progress : callable, optional
        Called as ``progress(step=n)`` after every buffer, ``n`` being the
        total number of bytes read so far (a ``StoreProgressManager`` inside
        its ``with`` block fits).
    max_bytes : int, optional
        Stop after this many bytes.

    Raises
    ------
    ValueError
        If ``buffer_size`` is not positive.
    """
    if buffer_size <= 0:
        raise ValueError(f"buffer_size must be positive, not {buffer_size!r}")
    return _buffer_iterator(filelike, buffer_size, progress, max_bytes)


def _buffer_iterator(filelike, buffer_size, progress, max_bytes):
    total = 0
    while True:
        want = buffer_size
        if max_bytes is not None:
            want = min(want, max_bytes - total)
            if want <= 0:
                return
        chunk = filelike.read(want)
        if not chunk:
            return
        total += len(chunk)
        if progress is not None:
            progress(step=total)
        yield chunk


class BufferIteratorIO(ReadStream):
    """A readable file-like object over an iterator of byte buffers.

    Uses less memory than a ``BytesIO`` of the whole stream: at most one
    buffer of the iterator is held at a time. ``read()`` with no argument
    reads to the end, like a regular file (the original documentation's
    default of 1 MiB would silently truncate callers that expect a whole
    file); ``read(n)`` reads at most ``n`` bytes.

    Parameters
    ----------
    iterator : iterable of bytes
        The buffers, in order.
    """

    def __init__(self, iterator: Iterable[bytes]) -> None:
        super().__init__()
        self._iterator = iter(iterator)
        self._buffer = b""
        self._offset = 0

    def readable(self) -> bool:
        """Return True: this object is readable."""
        return True

    def _fill(self) -> bool:
        while self._offset >= len(self._buffer):
            try:
                self._buffer = bytes(next(self._iterator))
            except StopIteration:
                self._buffer = b""
                self._offset = 0
                return False
            self._offset = 0
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Read at most ``size`` bytes (all remaining bytes if negative).

        Raises
        ------
        ValueError
            If the stream is closed.
        """
        if self.closed:
            raise ValueError("read from a closed BufferIteratorIO")
        if size is None or size < 0:
            parts = []
            while self._fill():
                parts.append(self._buffer[self._offset :])
                self._offset = len(self._buffer)
            return b"".join(parts)
        if size == 0 or not self._fill():
            return b""
        chunk = self._buffer[self._offset : self._offset + size]
        self._offset += len(chunk)
        return chunk

    def close(self) -> None:
        """Close the stream and drop the iterator."""
        self._iterator = iter(())
        self._buffer = b""
        super().close()


def tee(
    filelike: Any, n: int = 2, buffer_size: int = DEFAULT_BUFFER_SIZE
) -> list[BufferIteratorIO]:
    """Clone a readable stream into ``n`` parallel streams.

    Built on ``itertools.tee``: buffers are kept only until every clone has
    read them, so the clones should be read at about the same pace.

    Raises
    ------
    ValueError
        If ``n`` is less than 1 or ``buffer_size`` not positive.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n!r}")
    iterators = itertools.tee(buffer_iterator(filelike, buffer_size), n)
    return [BufferIteratorIO(iterator) for iterator in iterators]


class _ContextManagerProxy:
    """Delegates everything to a file-like object and closes it on exit."""

    def __init__(self, filelike: Any) -> None:
        self._filelike = filelike

    def __getattr__(self, name: str) -> Any:
        return getattr(self._filelike, name)

    def __iter__(self):
        return iter(self._filelike)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> bool:
        close = getattr(self._filelike, "close", None)
        if close is not None:
            close()
        return False


def add_context_manager_support(obj: Any) -> Any:
    """Return ``obj`` usable in a ``with`` statement that closes it on exit.

    An object whose type already is a context manager is returned as is;
    anything else is wrapped in a proxy that forwards every attribute to it.
    (Special methods are looked up on the type, so setting ``__enter__`` on
    an instance would not work.)
    """
    kind = type(obj)
    if hasattr(kind, "__enter__") and hasattr(kind, "__exit__"):
        return obj
    return _ContextManagerProxy(obj)


# --------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------


def _normalize(value: Any, where: str) -> Any:
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"metadata value at {where} is {value!r}, not JSON")
        return value
    if kind is dict or (kind is not list and isinstance(value, Mapping)):
        result = {}
        for name, item in value.items():
            if type(name) is not str:
                raise ValueError(
                    f"metadata key {name!r} at {where} is a "
                    f"{type(name).__name__}, only str keys can be stored"
                )
            result[name] = _normalize(item, f"{where}[{name!r}]")
        return result
    if kind is list or kind is tuple:
        return [_normalize(item, f"{where}[{i}]") for i, item in enumerate(value)]
    # Subclasses of the JSON scalars (IntEnum, numpy scalars that subclass
    # float, ...) are stored as their plain base type.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _normalize(float(value), where)
    if isinstance(value, str):
        return str(value)
    raise ValueError(
        f"metadata value at {where} of type {kind.__name__} cannot be stored: "
        "metadata must be JSON-representable (dict with str keys, list, str, "
        "int, float, bool, None)"
    )


def check_metadata(metadata: Any) -> dict[str, Any]:
    """Validate metadata and return a deep, normalized copy of it.

    Metadata must be JSON-representable: a mapping with ``str`` keys whose
    values are ``None``, ``bool``, ``int``, finite ``float``, ``str``,
    lists (tuples are stored as lists) or such mappings. Every store in this
    package stores exactly this normalized copy, so all stores give back
    the same thing.

    Raises
    ------
    ValueError
        With the location of the first offending value, if the metadata
        cannot be stored. Nothing has been written when this is raised.
    """
    if type(metadata) is not dict and not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a dict, not {type(metadata).__name__}")
    try:
        return _normalize(metadata, "metadata")
    except RecursionError:
        raise ValueError(
            "metadata is nested too deeply (or refers to itself)"
        ) from None


def copy_metadata(metadata: dict) -> dict:
    """Return a deep copy of metadata that ``check_metadata`` produced.

    Much faster than ``copy.deepcopy`` because it only has to handle the
    JSON types.
    """
    result = dict(metadata)
    for name, value in result.items():
        kind = type(value)
        if kind is dict:
            result[name] = copy_metadata(value)
        elif kind is list:
            result[name] = _copy_list(value)
    return result


def _copy_list(items: list) -> list:
    result = list(items)
    for i, value in enumerate(result):
        kind = type(value)
        if kind is dict:
            result[i] = copy_metadata(value)
        elif kind is list:
            result[i] = _copy_list(value)
    return result


def select_metadata(metadata: dict, select: Iterable[str] | None) -> dict:
    """Return the items of ``metadata`` named in ``select`` (all if None).

    Names absent from ``metadata`` are left out. The result is a new dict;
    its values are shared with ``metadata`` (callers pass a fresh copy).
    """
    if select is None:
        return metadata
    if isinstance(select, str):
        select = (select,)
    return {name: metadata[name] for name in select if name in metadata}


# --------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------


class StoreProgressManager(ProgressManager):
    """A ``ProgressManager`` that emits ``StoreProgress*`` events.

    Pass ``key=`` and ``metadata=`` as extra keyword arguments so that every
    event carries them.
    """

    StartEventType = StoreProgressStartEvent
    StepEventType = StoreProgressStepEvent
    EndEventType = StoreProgressEndEvent

    def __init__(
        self,
        event_manager: Any = None,
        source: Any = None,
        operation_id: Any = None,
        message: str = "Performing operation",
        steps: int = -1,
        **kwargs: Any,
    ) -> None:
        super().__init__(event_manager, source, operation_id, message, steps, **kwargs)


def copy_stream(
    source: Any,
    write: Callable[[bytes], Any],
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    *,
    store: Any = None,
    key: str | None = None,
    metadata: dict | None = None,
    size: int | None = None,
    message: str = "Copying data",
) -> int:
    """Copy ``source`` to ``write`` in buffers; return the number of bytes.

    A copy longer than one buffer is a "long copy": it is reported with
    ``StoreProgressStartEvent``, one ``StoreProgressStepEvent`` per buffer
    (``step`` = bytes so far, ``steps`` = ``size`` or -1) and
    ``StoreProgressEndEvent`` on ``store.event_manager`` with ``store`` as
    the source. A copy that fits in one buffer emits nothing, so small
    writes stay cheap.

    Raises
    ------
    Whatever ``source.read`` or ``write`` raise; a long copy then ends its
    progress with ``exit_state='exception'``.
    """
    if buffer_size is None or buffer_size <= 0:
        buffer_size = DEFAULT_BUFFER_SIZE
    read = source.read
    first = read(buffer_size)
    if not first:
        return 0
    write(first)
    total = len(first)
    second = read(buffer_size)
    if not second:
        return total
    manager = None if store is None else store.event_manager
    if manager is None:
        write(second)
        total += len(second)
        while chunk := read(buffer_size):
            write(chunk)
            total += len(chunk)
        return total
    with StoreProgressManager(
        manager,
        store,
        None,
        message,
        -1 if size is None else size,
        key=key,
        metadata=metadata,
    ) as progress:
        progress.step(step=total)
        chunk = second
        while chunk:
            write(chunk)
            total += len(chunk)
            progress.step(step=total)
            chunk = read(buffer_size)
    return total


# --------------------------------------------------------------------------
# Transactions
# --------------------------------------------------------------------------


class DummyTransactionContext:
    """Transaction context for stores that cannot roll back.

    There is one context per store (``store.transaction()`` returns the same
    object every time). Entering it emits ``StoreTransactionStartEvent``,
    takes the store's lock (so other threads wait) and holds the store's
    modification events; leaving the outermost level emits
    ``StoreTransactionEndEvent`` and then the held events. Writes made in
    the block are not undone if it raises, so their events are emitted in
    that case too (with ``committed=False`` on the end event).

    Parameters
    ----------
    store : AbstractStore
        The store this context belongs to.
    """

    #: Whether leaving with an exception undoes the writes.
    can_rollback = False

    def __init__(self, store: Any) -> None:
        self.store = store
        self.notes: str | None = None
        self._depth = 0
        self._held: list | None = None
        self._owner: int | None = None

    # -- hooks for subclasses ------------------------------------------------

    def begin(self) -> None:
        """Start the underlying transaction (nothing here)."""

    def commit(self) -> None:
        """Commit the underlying transaction (nothing here)."""

    def rollback(self) -> None:
        """Roll the underlying transaction back (nothing here)."""

    # -- machinery -------------------------------------------------------------

    def __call__(self, notes: str | None = None) -> DummyTransactionContext:
        if self._depth == 0:
            self.notes = notes
        return self

    @property
    def active(self) -> bool:
        """Whether the calling thread is inside this transaction."""
        return self._depth > 0 and self._owner == threading.get_ident()

    def hold(self, events: list) -> None:
        """Keep ``events`` to emit them after the transaction ends."""
        self._held.extend(events)

    def __enter__(self) -> DummyTransactionContext:
        lock = self.store._lock
        lock.acquire()
        if self._depth == 0:
            begun = False
            try:
                self._owner = threading.get_ident()
                self._held = []
                # Begin first: if it fails, no start event is left unpaired.
                self.begin()
                begun = True
                self.store._emit_now(
                    StoreTransactionStartEvent(source=self.store, notes=self.notes)
                )
            except BaseException:
                try:
                    if begun:
                        self.rollback()
                finally:
                    self._owner = None
                    self._held = None
                    lock.release()
                raise
        self._depth += 1
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        lock = self.store._lock
        self._depth -= 1
        if self._depth > 0:
            lock.release()
            return False
        held, self._held = self._held, None
        self._owner = None
        committed = False
        try:
            if exc_type is None:
                try:
                    self.commit()
                    committed = True
                except BaseException:
                    self.rollback()
                    raise
            else:
                self.rollback()
        finally:
            lock.release()
            notes, self.notes = self.notes, None
            emit = self.store._emit_now
            emit(
                StoreTransactionEndEvent(
                    source=self.store, notes=notes, committed=committed
                )
            )
            if committed or not self.can_rollback:
                for event in held:
                    emit(event)
        return False


class SimpleTransactionContext(DummyTransactionContext):
    """Transaction context for stores with begin/commit/rollback.

    The outermost ``with`` calls the store's ``_begin_transaction()``, then
    ``_commit_transaction()`` if the block succeeds or
    ``_rollback_transaction()`` if it raises (or if the commit fails).
    Nested contexts only count levels. Held modification events are
    emitted after ``StoreTransactionEndEvent`` on commit and dropped on
    rollback. Override ``begin``/``commit``/``rollback`` to do something
    else than call the store.

    Parameters
    ----------
    store : AbstractStore
        The store this context belongs to.
    """

    can_rollback = True

    def begin(self) -> None:
        """Call the store's ``_begin_transaction``."""
        self.store._begin_transaction()

    def commit(self) -> None:
        """Call the store's ``_commit_transaction``."""
        self.store._commit_transaction()

    def rollback(self) -> None:
        """Call the store's ``_rollback_transaction``."""
        self.store._rollback_transaction()
