"""A key-value store that lives in a dictionary in memory.

The reference implementation of the API, and the fake store the rest of
the project tests against. Each ``DictMemoryStore`` has its own dictionary:
two instances never share data.

Unlike the original (which had no transactions), transactions here roll
back: the first write to a key inside a transaction remembers the key's
previous entry, and a rollback puts those entries back.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterable
from typing import Any

from .abstract_store import (
    AbstractStore,
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
    copy_metadata,
    copy_stream,
    select_metadata,
)
from .values import BytesValue

__all__ = ["DictMemoryStore"]

# An entry is an immutable tuple (data, metadata, created, modified); a
# write replaces the whole tuple, which makes undo records trivial and
# lets readers work without the lock.
_DATA, _METADATA, _CREATED, _MODIFIED = range(4)


def _next_time(previous: float | None) -> float:
    """Now, but strictly after ``previous`` so ``modified`` always moves."""
    now = time.time()
    if previous is not None and now <= previous:
        now = math.nextafter(previous, math.inf)
    return now


class DictMemoryStore(AbstractStore):
    """Dictionary-based in-memory store.

    Parameters
    ----------
    event_manager : BaseEventManager, optional
        Where events are emitted (default: the process-wide manager).
    """

    _transaction_context_class = SimpleTransactionContext

    def __init__(self, event_manager: Any = None) -> None:
        super().__init__(event_manager)
        self._entries: dict[str, tuple] = {}
        self._connected = False
        self._undo: dict[str, tuple | None] | None = None

    # -- connection --------------------------------------------------------------

    def connect(self, credentials: Any = None) -> None:
        """Connect (nothing to allocate; ``credentials`` are ignored)."""
        self._connected = True

    def disconnect(self) -> None:
        """Disconnect (the data stays)."""
        self._connected = False

    def is_connected(self) -> bool:
        """Whether ``connect`` was called more recently than ``disconnect``."""
        return self._connected

    # -- reading -------------------------------------------------------------------

    def _entry(self, key: str) -> tuple:
        try:
            return self._entries[key]
        except KeyError:
            raise KeyError(key) from None

    def get(self, key: str) -> BytesValue:
        """Return the value of ``key`` (``KeyError`` if absent)."""
        entry = self._entry(key)
        return BytesValue(
            entry[_DATA],
            copy_metadata(entry[_METADATA]),
            entry[_CREATED],
            entry[_MODIFIED],
        )

    def get_data(self, key: str) -> io.BytesIO:
        """Return a ``BytesIO`` of the data of ``key`` (``KeyError`` if absent)."""
        return io.BytesIO(self._entry(key)[_DATA])

    def get_data_range(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> io.BytesIO:
        """Return bytes ``start`` to ``end`` of ``key`` as a ``BytesIO``."""
        data = self._entry(key)[_DATA]
        return BytesValue(data).range(start, end)

    def get_metadata(self, key: str, select: Iterable[str] | None = None) -> dict:
        """Return a copy of the metadata of ``key`` (``KeyError`` if absent)."""
        metadata = self._entry(key)[_METADATA]
        if select is None:
            return copy_metadata(metadata)
        return copy_metadata(select_metadata(metadata, select))

    def exists(self, key: str) -> bool:
        """Whether ``key`` is in the store."""
        return key in self._entries

    def query(
        self, select: Iterable[str] | None = None, **kwargs: Any
    ) -> list[tuple[str, dict]]:
        """Return ``(key, metadata)`` for the keys whose metadata matches."""
        if select is not None:
            select = list(select)
        result = []
        for key, entry in list(self._entries.items()):
            metadata = entry[_METADATA]
            if kwargs and not metadata_matches(metadata, kwargs):
                continue
            result.append((key, copy_metadata(select_metadata(metadata, select))))
        return result

    def query_keys(self, **kwargs: Any) -> list[str]:
        """Return the keys whose metadata matches ``kwargs`` (all if none)."""
        if not kwargs:
            return list(self._entries)
        return [
            key
            for key, entry in list(self._entries.items())
            if metadata_matches(entry[_METADATA], kwargs)
        ]

    def glob(self, pattern: str) -> list[str]:
        """Return the keys matching the glob ``pattern``."""
        match = compile_glob(pattern)
        return [key for key in list(self._entries) if match(key)]

    def to_bytes(self, key: str, buffer_size: int = DEFAULT_BUFFER_SIZE) -> bytes:
        """Return the data of ``key`` (``KeyError`` if absent)."""
        return self._entry(key)[_DATA]

    # -- writing -------------------------------------------------------------------

    def _put(self, key: str, entry: tuple | None) -> None:
        """Install ``entry`` (or remove the key); caller holds the lock."""
        undo = self._undo
        if undo is not None and key not in undo:
            undo[key] = self._entries.get(key)
        if entry is None:
            del self._entries[key]
        else:
            self._entries[key] = entry

    def _read_all(self, stream: Any, key: str, metadata: dict, buffer_size: int):
        parts: list[bytes] = []
        copy_stream(
            stream,
            parts.append,
            buffer_size,
            store=self,
            key=key,
            metadata=metadata,
            message=f"Storing {key!r}",
        )
        return b"".join(parts)

    def set(self, key: str, value: Any, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        """Store ``value`` at ``key``; emits ``StoreSetEvent``.

        Raises
        ------
        ValueError
            If the metadata is not JSON-representable (nothing is written).
        TypeError
            If ``key`` is not a str or ``value`` not a value.
        """
        _check_key(key)
        stream, metadata, owned = unpack_value(value)
        try:
            metadata = check_metadata(metadata)
            data = self._read_all(stream, key, metadata, buffer_size)
        finally:
            if owned:
                stream.close()
        with self._lock:
            old = self._entries.get(key)
            modified = _next_time(None if old is None else old[_MODIFIED])
            created = modified if old is None else old[_CREATED]
            self._put(key, (data, metadata, created, modified))
        self._emit(
            [StoreSetEvent(source=self, key=key, metadata=copy_metadata(metadata))]
        )

    def set_data(
        self, key: str, data: Any, buffer_size: int = DEFAULT_BUFFER_SIZE
    ) -> None:
        """Replace the data of ``key`` (new keys get ``{}`` metadata)."""
        _check_key(key)
        stream, owned = as_stream(data)
        try:
            content = self._read_all(stream, key, None, buffer_size)
        finally:
            if owned:
                stream.close()
        with self._lock:
            old = self._entries.get(key)
            if old is None:
                modified = _next_time(None)
                entry = (content, {}, modified, modified)
            else:
                modified = _next_time(old[_MODIFIED])
                entry = (content, old[_METADATA], old[_CREATED], modified)
            self._put(key, entry)
        self._emit(
            [
                StoreSetEvent(
                    source=self, key=key, metadata=copy_metadata(entry[_METADATA])
                )
            ]
        )

    def set_metadata(self, key: str, metadata: dict) -> None:
        """Replace the metadata of ``key`` (new keys get empty data)."""
        _check_key(key)
        metadata = check_metadata(metadata)
        with self._lock:
            old = self._entries.get(key)
            if old is None:
                modified = _next_time(None)
                entry = (b"", metadata, modified, modified)
            else:
                modified = _next_time(old[_MODIFIED])
                entry = (old[_DATA], metadata, old[_CREATED], modified)
            self._put(key, entry)
        self._emit(
            [StoreSetEvent(source=self, key=key, metadata=copy_metadata(metadata))]
        )

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
        with self._lock:
            old = self._entry(key)
            merged = dict(old[_METADATA])
            merged.update(update)
            entry = (old[_DATA], merged, old[_CREATED], _next_time(old[_MODIFIED]))
            self._put(key, entry)
        self._emit(
            [StoreUpdateEvent(source=self, key=key, metadata=copy_metadata(merged))]
        )

    def delete(self, key: str) -> None:
        """Delete ``key``; emits ``StoreDeleteEvent`` (``KeyError`` if absent)."""
        with self._lock:
            old = self._entry(key)
            self._put(key, None)
        self._emit([StoreDeleteEvent(source=self, key=key, metadata=old[_METADATA])])

    # -- transactions ----------------------------------------------------------

    def _begin_transaction(self) -> None:
        self._undo = {}

    def _commit_transaction(self) -> None:
        self._undo = None

    def _rollback_transaction(self) -> None:
        undo, self._undo = self._undo, None
        for key, entry in (undo or {}).items():
            if entry is None:
                self._entries.pop(key, None)
            else:
                self._entries[key] = entry


def _check_key(key: Any) -> None:
    if type(key) is not str:
        raise TypeError(f"keys are str, not {type(key).__name__}")
