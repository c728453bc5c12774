"""A store presenting the union of several stores, the first one winning.

`JoinedStore` answers every read from the first of its stores that has the
key, and makes every write in the first store only: the others are never
modified through it. A write to a key that only a later store has copies
that key up into the first store (its data or metadata, whichever the write
does not replace), like a union mount.

Deleting removes the key from the first store that has it, whichever
that is (as in encore 0.8: the one exception to "writes go to the first
store"); a key in several stays visible, with the next store's value,
after it is deleted from the first. A member that cannot delete raises
``ReadOnlyStoreError``. A join's transaction covers the first store only,
so a delete from a later member is not rolled back with it.

The join emits its own events (``source`` is the join, keys as given to
it), including progress of long writes; the inner stores emit theirs on
their own event managers. A transaction on the join runs inside a
transaction of the first store, so it rolls back if that store can.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from encore.events.abstract_event_manager import BaseEventManager
from encore.storage._wrapping import (
    PassThroughTransactionContext,
    connect_stores,
    set_data_through,
    set_through,
    write_through,
)
from encore.storage.abstract_store import (
    AbstractReadOnlyStore,
    AbstractStore,
    ReadOnlyStoreError,
    Value,
    compile_glob,
)
from encore.storage.events import StoreDeleteEvent, StoreSetEvent, StoreUpdateEvent
from encore.storage.utils import DEFAULT_BUFFER_SIZE, check_metadata

__all__ = ["JoinedStore"]


class JoinedStore(AbstractStore):
    """A key-value store that joins together several other stores.

    Parameters
    ----------
    stores : sequence of stores
        The joined stores, highest priority first. The first one takes every
        write and must be writable; the others are only read.
    event_manager : BaseEventManager, optional
        Where the join's events go; the process-wide manager by default.

    Raises
    ------
    ValueError
        If ``stores`` is empty.
    TypeError
        If an element is not a store.
    """

    _transaction_context_class = PassThroughTransactionContext

    def __init__(
        self,
        stores: Sequence[AbstractReadOnlyStore],
        event_manager: BaseEventManager | None = None,
    ) -> None:
        stores = list(stores)
        if not stores:
            raise ValueError("a JoinedStore needs at least one store")
        for store in stores:
            if not isinstance(store, AbstractReadOnlyStore):
                raise TypeError(f"not a store: {store!r}")
        super().__init__(event_manager=event_manager)
        self.stores = stores
        self._connected = False
        self._connected_here: list[AbstractReadOnlyStore] = []

    # -- connection ------------------------------------------------------------

    def connect(self, credentials: Any = None) -> None:
        """Connect every joined store that is not connected yet.

        ``credentials`` are passed to each of those stores' ``connect``.
        Stores that were connected already are left as they are (and
        `disconnect` leaves them connected).

        Raises
        ------
        Whatever an inner ``connect`` raises; the stores connected so far
        are disconnected again.
        """
        self._connected_here = connect_stores(self.stores, credentials)
        self._connected = True

    def disconnect(self) -> None:
        """Disconnect the stores that `connect` connected."""
        connected, self._connected_here = self._connected_here, []
        self._connected = False
        for store in connected:
            store.disconnect()

    def is_connected(self) -> bool:
        """Whether `connect` was called and every joined store is connected."""
        return self._connected and all(s.is_connected() for s in self.stores)

    def info(self) -> dict[str, Any]:
        """Describe the join and its stores."""
        return {
            "type": "joined",
            "stores": [
                store.info() if hasattr(store, "info") else type(store).__name__
                for store in self.stores
            ],
        }

    def _transaction_stores(self) -> list[Any]:
        return [self.stores[0]]

    # -- lookup ------------------------------------------------------------------

    def _owner(self, key: str) -> AbstractReadOnlyStore | None:
        """The first store that has ``key``, or None."""
        for store in self.stores:
            if store.exists(key):
                return store
        return None

    def _read(self, method: str, key: str, *args: Any) -> Any:
        """Call ``method`` for ``key`` on each store until one has the key.

        Raises
        ------
        KeyError
            If every joined store raised ``KeyError``.
        """
        for store in self.stores:
            try:
                return getattr(store, method)(key, *args)
            except KeyError:
                continue
        raise KeyError(key)

    # -- reads --------------------------------------------------------------------

    def get(self, key: str) -> Value:
        """Return the value of ``key`` from the first store that has it.

        Raises
        ------
        KeyError
            If no joined store has the key.
        """
        return self._read("get", key)

    def get_data(self, key: str) -> Any:
        """Return a stream of ``key``'s data from the first store having it.

        Raises
        ------
        KeyError
            If no joined store has the key.
        """
        return self._read("get_data", key)

    def get_metadata(self, key: str, select: Iterable[str] | None = None) -> dict:
        """Return ``key``'s metadata from the first store that has it.

        Raises
        ------
        KeyError
            If no joined store has the key.
        """
        if select is not None:
            select = list(select)
        return self._read("get_metadata", key, select)

    def exists(self, key: str) -> bool:
        """Whether any joined store has ``key``."""
        return any(store.exists(key) for store in self.stores)

    def query(
        self, select: Iterable[str] | None = None, **kwargs: Any
    ) -> list[tuple[str, dict]]:
        """Return ``(key, metadata)`` for visible keys matching ``kwargs``.

        A key is judged by the value that the join shows for it: a key that
        an earlier store holds is never answered from a later one, whether
        or not the earlier value matches.
        """
        if select is not None:
            select = list(select)
        result: list[tuple[str, dict]] = []
        shadowed: set[str] = set()
        last = len(self.stores) - 1
        for position, store in enumerate(self.stores):
            for key, metadata in store.query(select, **kwargs):
                if key not in shadowed:
                    result.append((key, metadata))
            if position < last:
                shadowed.update(store.query_keys())
        return result

    def query_keys(self, **kwargs: Any) -> list[str]:
        """Return the visible keys whose metadata matches ``kwargs``."""
        result: list[str] = []
        shadowed: set[str] = set()
        last = len(self.stores) - 1
        for position, store in enumerate(self.stores):
            matching = list(store.query_keys(**kwargs))
            result.extend(key for key in matching if key not in shadowed)
            if position < last:
                shadowed.update(store.query_keys() if kwargs else matching)
        return result

    def glob(self, pattern: str) -> list[str]:
        """Return the keys of all stores matching the glob ``pattern``."""
        match = compile_glob(pattern)
        seen: set[str] = set()
        result = []
        for store in self.stores:
            for key in store.glob(pattern):
                if key not in seen and match(key):
                    seen.add(key)
                    result.append(key)
        return result

    # -- writes ---------------------------------------------------------------------

    @property
    def _first(self) -> AbstractStore:
        return self.stores[0]  # type: ignore[return-value]

    def _write(
        self, key: str, stream: Any, metadata: dict, size: Any, buffer_size: int
    ) -> None:
        """Set ``key`` in the first store through a progress reader."""
        write_through(self, self._first, key, key, stream, metadata, size, buffer_size)

    def set(self, key: str, value: Any, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        """Store ``value`` at ``key`` in the first store.

        Emits `StoreSetEvent` (and progress events for long values).

        Raises
        ------
        ValueError
            If the metadata is not JSON-representable (nothing is written).
        TypeError
            If ``value`` is not a value.
        """
        set_through(self, self._first, key, key, value, buffer_size)

    def set_data(
        self, key: str, data: Any, buffer_size: int = DEFAULT_BUFFER_SIZE
    ) -> None:
        """Replace ``key``'s data in the first store.

        A key only a later store has is copied up with that store's
        metadata; a new key gets ``{}``. Emits `StoreSetEvent`.
        """
        set_data_through(
            self, self._first, key, key, data, buffer_size, self.get_metadata
        )

    def set_metadata(self, key: str, metadata: dict) -> None:
        """Replace ``key``'s metadata in the first store.

        A key only a later store has is copied up with that store's data.
        Emits `StoreSetEvent`.

        Raises
        ------
        ValueError
            If the metadata is not JSON-representable (nothing is written).
        """
        metadata = check_metadata(metadata)
        with self._lock:
            owner = self._owner(key)
            if owner is None or owner is self._first:
                self._first.set_metadata(key, metadata)
            else:
                self._copy_up(owner, key, metadata)
        self._emit([StoreSetEvent(source=self, key=key, metadata=dict(metadata))])

    def _copy_up(self, owner: Any, key: str, metadata: dict) -> None:
        value = owner.get(key)
        with value.data as stream:
            self._write(key, stream, metadata, value.size, DEFAULT_BUFFER_SIZE)

    def update_metadata(self, key: str, metadata: dict) -> None:
        """Merge ``metadata`` into ``key``'s metadata, in the first store.

        Emits `StoreUpdateEvent`.

        Raises
        ------
        KeyError
            If no joined store has the key.
        ValueError
            If the result is not JSON-representable (nothing is written).
        """
        metadata = check_metadata(metadata)
        with self._lock:
            owner = self._owner(key)
            if owner is None:
                raise KeyError(key)
            merged = owner.get_metadata(key)
            merged.update(metadata)
            if owner is self._first:
                self._first.update_metadata(key, metadata)
            else:
                self._copy_up(owner, key, merged)
        self._emit([StoreUpdateEvent(source=self, key=key, metadata=merged)])

    def delete(self, key: str) -> None:
        """Delete ``key`` from the first joined store that has it.

        Emits `StoreDeleteEvent`. If a later store has the key too, its value
        becomes visible.

        Raises
        ------
        KeyError
            If no joined store has the key.
        ReadOnlyStoreError
            If the store that has it cannot delete (a read-only store).
        """
        with self._lock:
            owner = self._owner(key)
            if owner is None:
                raise KeyError(key)
            if not isinstance(owner, AbstractStore):
                raise ReadOnlyStoreError(
                    f"{key!r} is in a read-only member of the JoinedStore "
                    f"(store {self.stores.index(owner)}), which cannot delete it"
                )
            metadata = owner.get_metadata(key)
            owner.delete(key)
        self._emit([StoreDeleteEvent(source=self, key=key, metadata=metadata)])
