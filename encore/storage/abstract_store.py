"""The key-value store API: abstract base classes, ``Value`` and errors.

A store maps string keys to values; a value is a byte stream (``data``)
plus a dict of JSON-representable ``metadata``.

Writing a store
---------------
The base classes implement the whole API on top of a short list of
primitives, so a store overrides only what it can do better:

- read-only (``AbstractReadOnlyStore``): ``connect``, ``disconnect``,
  ``is_connected``, ``get``, ``get_metadata``, ``exists`` and ``query``;
- writable (``AbstractStore``), in addition: ``set``, ``set_metadata`` and
  ``delete``. ``set_data``, ``update_metadata``, ``from_file``,
  ``from_bytes`` and the ``multi*`` methods have defaults built on those.

A store with real transactions sets ``_transaction_context_class`` to
``SimpleTransactionContext`` and implements ``_begin_transaction``,
``_commit_transaction`` and ``_rollback_transaction``. A read-only store
that should still offer the writer methods (each raising
``ReadOnlyStoreError``) puts ``ReadOnlyWritersMixin`` before
``AbstractReadOnlyStore`` in its bases.

Events: a store builds its modification events and passes them to
``_emit(events)``, which holds them while the calling thread is inside a
transaction and emits them on ``event_manager`` otherwise. The defaults
built on the primitives emit nothing themselves: the primitives they call
do. ``encore.storage.testing`` checks a store against all of this.

Errors: a missing key raises ``KeyError``; everything else a store refuses
raises a ``StoreError`` subclass (``AuthorizationError``,
``AuthenticationError``, ``ReadOnlyStoreError``) or ``ValueError`` for bad
arguments (metadata that is not JSON-representable, for instance).
"""

from __future__ import annotations

import fnmatch
import io
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

from .utils import (
    DEFAULT_BUFFER_SIZE,
    BufferIteratorIO,
    DummyTransactionContext,
    buffer_iterator,
    copy_stream,
)

__all__ = [
    "StoreError",
    "AuthorizationError",
    "AuthenticationError",
    "ReadOnlyStoreError",
    "Value",
    "AbstractReadOnlyStore",
    "AbstractStore",
    "AbstractAuthorizingStore",
    "ReadOnlyWritersMixin",
    "unpack_value",
    "as_stream",
    "compile_glob",
    "metadata_matches",
]


class StoreError(Exception):
    """Base class of the errors a store raises (other than ``KeyError``)."""


class AuthorizationError(StoreError):
    """The user is not allowed to do this with this key or store."""


class AuthenticationError(StoreError):
    """The credentials given to ``connect`` were not accepted."""


class ReadOnlyStoreError(StoreError, NotImplementedError):
    """A write was attempted on a read-only store.

    Also a ``NotImplementedError``, which is what read-only stores
    traditionally raised for writes.
    """


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------


def _range_start(start: int | None, end: int | None) -> int:
    """Check the bounds of a ``Value.range`` request; return its start.

    ``None`` as ``start`` means 0. Shared by every ``range`` so that all
    values refuse the same requests with the same message.

    Raises
    ------
    ValueError
        If ``start`` is negative or ``end < start``.
    """
    start = 0 if start is None else start
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid range {start!r}..{end!r}")
    return start


class Value(ABC):
    """What ``get`` returns: a key's data stream, metadata and attributes.

    Attributes
    ----------
    size : int or None
        Number of bytes of data, ``None`` if unknown.
    created, modified : float or None
        Creation and last modification time of the key, UTC seconds since
        the epoch (``None`` if the store cannot tell).
    metadata : dict
        The key's metadata (a copy the caller may change freely).
    permissions : dict or None
        The key's permissions, for stores that have them.

    A value unpacks as ``(data, metadata)`` and indexes ``[0]`` / ``[1]``
    for compatibility with code that treats it as a 2-tuple. ``data``
    opens a new stream from the start on every access; close it (or use
    it in a ``with`` block) when done.
    """

    size: int | None = None
    created: float | None = None
    modified: float | None = None
    permissions: dict | None = None
    metadata: dict

    @property
    @abstractmethod
    def data(self) -> Any:
        """A new readable binary stream over the data (a context manager)."""

    def range(self, start: int | None = None, end: int | None = None) -> Any:
        """Return a stream of the bytes from ``start`` to ``end`` (exclusive).

        ``None`` means the beginning or the end of the data. The default
        reads and discards the first ``start`` bytes (or seeks, when the
        stream can); stores override it with something direct.
        """
        start = _range_start(start, end)
        stream = self.data
        if start:
            if getattr(stream, "seekable", lambda: False)():
                stream.seek(start)
            else:
                remaining = start
                while remaining > 0:
                    skipped = stream.read(min(remaining, DEFAULT_BUFFER_SIZE))
                    if not skipped:
                        break
                    remaining -= len(skipped)
        max_bytes = None if end is None else end - start
        return BufferIteratorIO(_closing_iterator(stream, max_bytes))

    def iterdata(
        self, buffer_size: int = DEFAULT_BUFFER_SIZE, progress: Any = None
    ) -> Iterator[bytes]:
        """Iterate over the data in buffers of ``buffer_size`` bytes.

        ``progress``, if given, is called as ``progress(step=bytes_so_far)``.
        """
        stream = self.data
        try:
            yield from buffer_iterator(stream, buffer_size, progress)
        finally:
            stream.close()

    def __iter__(self) -> Iterator[Any]:
        yield self.data
        yield self.metadata

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return tuple(self)[index]
        if index in (0, -2):
            return self.data
        if index in (1, -1):
            return self.metadata
        raise IndexError("a Value has two items: (data, metadata)")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} size={self.size!r} metadata={self.metadata!r}>"


def _closing_iterator(stream: Any, max_bytes: int | None) -> Iterator[bytes]:
    try:
        yield from buffer_iterator(stream, DEFAULT_BUFFER_SIZE, None, max_bytes)
    finally:
        stream.close()


def unpack_value(value: Any) -> tuple[Any, Any, bool]:
    """Split what ``set`` received into ``(stream, metadata, owned)``.

    ``value`` is a ``Value``, or a ``(data, metadata)`` pair whose data is a
    readable binary file-like object or a bytes-like object. ``owned`` says
    whether the stream was opened here (the caller must then close it).

    Raises
    ------
    TypeError
        If ``value`` is none of those.
    """
    if type(value) is not tuple and isinstance(value, Value):
        return value.data, value.metadata, True
    try:
        data, metadata = value
    except (TypeError, ValueError):
        raise TypeError(
            "a value must be a Value or a (data, metadata) pair, not "
            f"{type(value).__name__}"
        ) from None
    if type(data) is io.BytesIO:
        return data, metadata, False
    if isinstance(data, (bytes, bytearray, memoryview)):
        return io.BytesIO(data), metadata, True
    if data is None:
        return io.BytesIO(b""), metadata, True
    if not callable(getattr(data, "read", None)):
        raise TypeError(
            f"the data of a value must be readable, not {type(data).__name__}"
        )
    return data, metadata, False


def as_stream(data: Any) -> tuple[Any, bool]:
    """Return ``(stream, owned)`` for data given to ``set_data``.

    Raises
    ------
    TypeError
        If ``data`` is neither readable nor bytes-like.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        return io.BytesIO(data), True
    if not callable(getattr(data, "read", None)):
        raise TypeError(f"data must be readable, not {type(data).__name__}")
    return data, False


def compile_glob(pattern: str):
    """Return a function telling whether a key matches a glob pattern.

    ``fnmatch`` rules, always case-sensitive (keys are case-sensitive on
    every platform).
    """
    return re.compile(fnmatch.translate(pattern), re.DOTALL).match


_MISSING = object()


def metadata_matches(metadata: dict, criteria: dict) -> bool:
    """Whether ``metadata`` has every ``name: value`` of ``criteria``."""
    for name, value in criteria.items():
        found = metadata.get(name, _MISSING)
        if found is _MISSING or found != value:
            return False
    return True


# --------------------------------------------------------------------------
# Stores
# --------------------------------------------------------------------------


class AbstractReadOnlyStore(ABC):
    """Abstract base class of read-only key-value stores.

    Parameters
    ----------
    event_manager : BaseEventManager, optional
        Where the store emits its events; the process-wide manager
        (``encore.events.api.get_event_manager()``) by default. Available
        as the ``event_manager`` attribute.
    """

    def __init__(self, event_manager: Any = None) -> None:
        if event_manager is None:
            from encore.events.package_globals import get_event_manager

            event_manager = get_event_manager()
        self.event_manager = event_manager
        # One lock per store: writes and whole transactions hold it.
        self._lock = threading.RLock()
        self._transaction_context: DummyTransactionContext | None = None

    # -- events ----------------------------------------------------------------

    def _emit_now(self, event: Any) -> None:
        """Emit one event on the event manager now."""
        self.event_manager.emit(event)

    def _emit(self, events: list) -> None:
        """Emit modification events, or hold them inside a transaction."""
        context = self._transaction_context
        if context is not None and context.active:
            context.hold(events)
            return
        emit = self.event_manager.emit
        for event in events:
            emit(event)

    # -- primitives --------------------------------------------------------------

    @abstractmethod
    def connect(self, credentials: Any = None) -> None:
        """Connect to the store, allocating long-lived resources.

        Raises
        ------
        AuthenticationError
            If the store needs credentials and these are not accepted.
        """

    @abstractmethod
    def disconnect(self) -> None:
        """Disconnect from the store, releasing long-lived resources."""

    @abstractmethod
    def is_connected(self) -> bool:
        """Whether the store is connected."""

    @abstractmethod
    def get(self, key: str) -> Value:
        """Return the ``Value`` (data stream and metadata) of ``key``.

        Raises
        ------
        KeyError
            If the key is not in the store.
        """

    @abstractmethod
    def get_metadata(self, key: str, select: Iterable[str] | None = None) -> dict:
        """Return the metadata of ``key`` (only the names in ``select``).

        Names in ``select`` that the metadata does not have are left out.
        The result is a fresh dict.

        Raises
        ------
        KeyError
            If the key is not in the store.
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` is in the store."""

    @abstractmethod
    def query(
        self, select: Iterable[str] | None = None, **kwargs: Any
    ) -> Iterable[tuple[str, dict]]:
        """Return ``(key, metadata)`` pairs whose metadata matches ``kwargs``.

        A key matches when its metadata has every keyword's name with an
        equal (``==``) value. No keywords: every key. ``select`` restricts
        the returned metadata to those names.
        """

    # -- defaults built on the primitives ---------------------------------

    def get_data(self, key: str) -> Any:
        """Return a readable stream of the data of ``key``.

        Raises
        ------
        KeyError
            If the key is not in the store.
        """
        return self.get(key).data

    def get_data_range(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> Any:
        """Return a stream of bytes ``start`` to ``end`` (exclusive) of ``key``.

        Raises
        ------
        KeyError
            If the key is not in the store.
        ValueError
            If the range is invalid (negative, or ``end < start``).
        """
        return self.get(key).range(start, end)

    def multiget(self, keys: Iterable[str]) -> Iterator[Value]:
        """Iterate over the values of ``keys``, in order.

        Raises
        ------
        KeyError
            When the iteration reaches a key that is not in the store.
        """
        for key in keys:
            yield self.get(key)

    def multiget_data(self, keys: Iterable[str]) -> Iterator[Any]:
        """Iterate over data streams of ``keys``, in order (``KeyError`` as get)."""
        for key in keys:
            yield self.get_data(key)

    def multiget_metadata(
        self, keys: Iterable[str], select: Iterable[str] | None = None
    ) -> Iterator[dict]:
        """Iterate over the metadata of ``keys`` (``KeyError`` as ``get``)."""
        if select is not None:
            select = list(select)
        for key in keys:
            yield self.get_metadata(key, select)

    def query_keys(self, **kwargs: Any) -> Iterable[str]:
        """Return the keys whose metadata matches ``kwargs`` (all if none)."""
        return [key for key, _ in self.query(select=(), **kwargs)]

    def glob(self, pattern: str) -> Iterable[str]:
        """Return the keys matching the glob ``pattern`` (``fnmatch`` rules)."""
        match = compile_glob(pattern)
        return [key for key in self.query_keys() if match(key)]

    def to_file(
        self, key: str, path: str, buffer_size: int = DEFAULT_BUFFER_SIZE
    ) -> None:
        """Write the data of ``key`` to the file ``path``, in buffers.

        Long copies emit ``StoreProgress*`` events.

        Raises
        ------
        KeyError
            If the key is not in the store (``path`` is then not created).
        OSError
            If the file cannot be written.
        """
        value = self.get(key)
        with value.data as stream, open(path, "wb") as target:
            copy_stream(
                stream,
                target.write,
                buffer_size,
                store=self,
                key=key,
                metadata=value.metadata,
                size=value.size,
                message=f"Writing {key!r} to {path}",
            )

    def to_bytes(self, key: str, buffer_size: int = DEFAULT_BUFFER_SIZE) -> bytes:
        """Return the data of ``key`` as bytes.

        Raises
        ------
        KeyError
            If the key is not in the store.
        """
        value = self.get(key)
        parts: list[bytes] = []
        with value.data as stream:
            copy_stream(
                stream,
                parts.append,
                buffer_size,
                store=self,
                key=key,
                metadata=value.metadata,
                size=value.size,
                message=f"Reading {key!r}",
            )
        return b"".join(parts)


class AbstractStore(AbstractReadOnlyStore):
    """Abstract base class of writable key-value stores.

    Adds the primitives ``set``, ``set_metadata`` and ``delete`` and builds
    the other writers on them. ``transaction()`` returns the store's one
    transaction context (``_transaction_context_class``); by default it
    cannot roll back.
    """

    _transaction_context_class: type[DummyTransactionContext] = DummyTransactionContext

    # -- primitives --------------------------------------------------------------

    @abstractmethod
    def set(self, key: str, value: Any, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        """Store ``value`` (a ``Value`` or ``(data, metadata)``) at ``key``.

        The data is read in buffers of about ``buffer_size`` bytes. Emits
        ``StoreSetEvent`` (held inside a transaction) and, for long copies,
        ``StoreProgress*`` events.

        Raises
        ------
        ValueError
            If the metadata is not JSON-representable (nothing is written).
        TypeError
            If ``value`` is not a value.
        """

    @abstractmethod
    def set_metadata(self, key: str, metadata: dict) -> None:
        """Replace the metadata of ``key``, creating it with empty data if new.

        Emits ``StoreSetEvent``.

        Raises
        ------
        ValueError
            If the metadata is not JSON-representable (nothing is written).
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete ``key``. Emits ``StoreDeleteEvent``.

        Raises
        ------
        KeyError
            If the key is not in the store.
        """

    # -- defaults built on the primitives ---------------------------------

    def set_data(
        self, key: str, data: Any, buffer_size: int = DEFAULT_BUFFER_SIZE
    ) -> None:
        """Replace the data of ``key``, creating it with ``{}`` metadata if new.

        ``data`` is a readable binary stream or bytes. Emits
        ``StoreSetEvent``.
        """
        with self._lock:
            metadata = self.get_metadata(key) if self.exists(key) else {}
            self.set(key, (data, metadata), buffer_size)

    def update_metadata(self, key: str, metadata: dict) -> None:
        """Update the metadata of ``key`` like ``dict.update``.

        Raises
        ------
        KeyError
            If the key is not in the store.
        ValueError
            If the result is not JSON-representable (nothing is written).
        """
        with self._lock:
            merged = self.get_metadata(key)
            merged.update(metadata)
            self.set_metadata(key, merged)

    def multiset(
        self,
        keys: Iterable[str],
        values: Iterable[Any],
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        """Set several keys in one transaction (pairs as ``zip`` makes them)."""
        with self.transaction("multiset"):
            for key, value in zip(keys, values):
                self.set(key, value, buffer_size)

    def multiset_data(
        self,
        keys: Iterable[str],
        datas: Iterable[Any],
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        """Set the data of several keys in one transaction (``zip`` pairs)."""
        with self.transaction("multiset_data"):
            for key, data in zip(keys, datas):
                self.set_data(key, data, buffer_size)

    def multiset_metadata(self, keys: Iterable[str], metadatas: Iterable[dict]) -> None:
        """Set the metadata of several keys in one transaction (``zip`` pairs)."""
        with self.transaction("multiset_metadata"):
            for key, metadata in zip(keys, metadatas):
                self.set_metadata(key, metadata)

    def multiupdate_metadata(
        self, keys: Iterable[str], metadatas: Iterable[dict]
    ) -> None:
        """Update the metadata of several keys in one transaction."""
        with self.transaction("multiupdate_metadata"):
            for key, metadata in zip(keys, metadatas):
                self.update_metadata(key, metadata)

    def from_file(
        self, key: str, path: str, buffer_size: int = DEFAULT_BUFFER_SIZE
    ) -> None:
        """Set the data of ``key`` from the file ``path`` (metadata untouched).

        Raises
        ------
        OSError
            If the file cannot be read (the key is then unchanged).
        """
        with open(path, "rb") as stream:
            self.set_data(key, stream, buffer_size)

    def from_bytes(
        self, key: str, data: bytes, buffer_size: int = DEFAULT_BUFFER_SIZE
    ) -> None:
        """Set the data of ``key`` from a bytes object (metadata untouched)."""
        self.set_data(key, io.BytesIO(data), buffer_size)

    def transaction(self, notes: str | None = None) -> DummyTransactionContext:
        """Return the store's transaction context manager.

        Use as ``with store.transaction('notes'): ...``. Re-entrant: only
        the outermost block commits (or rolls back when it raises, for
        stores that can). Other threads wait while a transaction runs.
        """
        context = self._transaction_context
        if context is None:
            context = self._transaction_context = self._transaction_context_class(self)
        return context(notes)


class AbstractAuthorizingStore(AbstractStore):
    """Abstract base class of stores with per-key permissions.

    Permissions map a permission name (``'owned'`` is the one every store
    has) to the set of tags (users, groups, roles) granted it.
    ``user_tag`` is the tag of the connected user.
    """

    user_tag: str | None = None

    @abstractmethod
    def get_permissions(self, key: str) -> dict[str, set[str]]:
        """Return the permissions of ``key``.

        Raises
        ------
        KeyError
            If the key does not exist or the user may not see it.
        AuthorizationError
            If the user may see the key but does not own it.
        """

    @abstractmethod
    def set_permissions(self, key: str, permissions: dict[str, set[str]]) -> None:
        """Replace the permissions of a key the user owns.

        Raises
        ------
        KeyError
            If the key does not exist or the user may not see it.
        AuthorizationError
            If the user does not own the key.
        """

    @abstractmethod
    def update_permissions(self, key: str, permissions: dict[str, set[str]]) -> None:
        """Add tags to the permissions of a key the user owns.

        Raises
        ------
        KeyError
            If the key does not exist or the user may not see it.
        AuthorizationError
            If the user does not own the key.
        """


class ReadOnlyWritersMixin:
    """Writer methods that refuse: mix into a read-only store.

    Put it before ``AbstractReadOnlyStore`` in the bases to give a read-only
    store the whole writer API, each method raising ``ReadOnlyStoreError``.
    """

    def _refuse(self, operation: str) -> None:
        raise ReadOnlyStoreError(
            f"{type(self).__name__} is read-only: {operation} is not allowed"
        )

    def set(self, key, value, buffer_size=DEFAULT_BUFFER_SIZE):
        """Refuse: the store is read-only (``ReadOnlyStoreError``)."""
        self._refuse("set")

    def set_data(self, key, data, buffer_size=DEFAULT_BUFFER_SIZE):
        """Refuse: the store is read-only (``ReadOnlyStoreError``)."""
        self._refuse("set_data")

    def set_metadata(self, key, metadata):
        """Refuse: the store is read-only (``ReadOnlyStoreError``)."""
        self._refuse("set_metadata")

    def update_metadata(self, key, metadata):
        """Refuse: the store is read-only (``ReadOnlyStoreError``)."""
        self._refuse("update_metadata")

    def delete(self, key):
        """Refuse: the store is read-only (``ReadOnlyStoreError``)."""
        self._refuse("delete")

    def multiset(self, keys, values, buffer_size=DEFAULT_BUFFER_SIZE):
        """Refuse: the store is read-only (``ReadOnlyStoreError``)."""
        self._refuse("multiset")

    def multiset_data(self, keys, datas, buffer_size=DEFAULT_BUFFER_SIZE):
        """Refuse: the store is read-only (``ReadOnlyStoreError``)."""
        self._refuse("multiset_data")

    def multiset_metadata(self, keys, metadatas):
        """Refuse: the store is read-only (``ReadOnlyStoreError``)."""
        self._refuse("multiset_metadata")

    def multiupdate_metadata(self, keys, metadatas):
        """Refuse: the store is read-only (``ReadOnlyStoreError``)."""
        self._refuse("multiupdate_metadata")

    def from_file(self, key, path, buffer_size=DEFAULT_BUFFER_SIZE):
        """Refuse: the store is read-only (``ReadOnlyStoreError``)."""
        self._refuse("from_file")

    def from_bytes(self, key, data, buffer_size=DEFAULT_BUFFER_SIZE):
        """Refuse: the store is read-only (``ReadOnlyStoreError``)."""
        self._refuse("from_bytes")

    def transaction(self, notes=None):
        """Return a transaction context (nothing to commit in a read-only store)."""
        context = self._transaction_context
        if context is None:
            context = self._transaction_context = DummyTransactionContext(self)
        return context(notes)
