"""A store mounted at a key prefix over another, read-only, store.

`MountedStore(mount_point, mount_store, backing_store)` shows the keys of
``backing_store`` with ``mount_store`` laid over the part of the key space
that starts with ``mount_point``: key ``mount_point + k`` is ``k`` in the
mount store if it has it, else the full key in the backing store; every
other key is read from the backing store. The typical use is a local,
writable cache (the mount store) over part of a remote store (a
`StaticURLStore` or `DynamicURLStore`).

Writes go to the mount store only, and only for keys under the mount point;
anything else raises ``ReadOnlyStoreError``. A write to a mounted key that
only the backing store has copies that key into the mount store first (its
data or metadata, whichever the write does not replace). The backing store
is written by nothing but `MountedStore.push`, which moves a key from the
mount store into the backing store.

Deleting a mounted key removes it from the mount store; if the backing
store has the key too, its value becomes visible again (local changes are
discarded). A key only the backing store has cannot be deleted.

The mounted store emits its own events (``source`` is the mounted store,
keys as its users see them), progress of long writes included. Its
transactions run inside transactions of both inner stores.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    ReadOnlyWritersMixin,
    Value,
    compile_glob,
)
from encore.storage.events import StoreDeleteEvent, StoreSetEvent, StoreUpdateEvent
from encore.storage.utils import DEFAULT_BUFFER_SIZE, check_metadata

__all__ = ["MountedStore"]


class MountedStore(AbstractStore):
    """A key-value store that mounts another store at a key prefix.

    Parameters
    ----------
    mount_point : str
        The key prefix the mount store is mounted at (may be ``''``: the
        mount store then overlays every key).
    mount_store : AbstractStore
        The writable store mounted at ``mount_point``; it holds keys with
        the prefix removed.
    backing_store : AbstractReadOnlyStore
        The store mounted on; only `push` writes to it.
    event_manager : BaseEventManager, optional
        Where the mounted store's events go; the process-wide manager by
        default.

    Raises
    ------
    TypeError
        If ``mount_point`` is not a str or a store is not a store.
    """

    _transaction_context_class = PassThroughTransactionContext

    def __init__(
        self,
        mount_point: str,
        mount_store: AbstractStore,
        backing_store: AbstractReadOnlyStore,
        event_manager: BaseEventManager | None = None,
    ) -> None:
        if not isinstance(mount_point, str):
            raise TypeError(f"mount_point must be a str, not {mount_point!r}")
        for store in (mount_store, backing_store):
            if not isinstance(store, AbstractReadOnlyStore):
                raise TypeError(f"not a store: {store!r}")
        super().__init__(event_manager=event_manager)
        self.mount_point = mount_point
        self.mount_store = mount_store
        self.backing_store = backing_store
        self._connected = False
        self._connected_here: list[AbstractReadOnlyStore] = []

    # -- connection ------------------------------------------------------------

    def connect(self, credentials: Any = None) -> None:
        """Connect both stores if they are not connected yet.

        ``credentials`` are passed to each of those stores' ``connect``;
        stores connected already are left alone (and stay connected after
        `disconnect`).

        Raises
        ------
        Whatever an inner ``connect`` raises (the other store is then
        disconnected again if this call connected it).
        """
        self._connected_here = connect_stores(
            (self.mount_store, self.backing_store), credentials
        )
        self._connected = True

    def disconnect(self) -> None:
        """Disconnect the stores that `connect` connected."""
        connected, self._connected_here = self._connected_here, []
        self._connected = False
        for store in connected:
            store.disconnect()

    def is_connected(self) -> bool:
        """Whether `connect` was called and both stores are connected."""
        return (
            self._connected
            and self.mount_store.is_connected()
            and self.backing_store.is_connected()
        )

    def info(self) -> dict[str, Any]:
        """Describe the mount: its mount point and both stores."""

        def describe(store: Any) -> Any:
            return store.info() if hasattr(store, "info") else type(store).__name__

        return {
            "type": "mounted",
            "mount_point": self.mount_point,
            "mount_store": describe(self.mount_store),
            "backing_store": describe(self.backing_store),
        }

    def _transaction_stores(self) -> list[Any]:
        if isinstance(self.backing_store, ReadOnlyWritersMixin):
            # Nothing to commit there (push fails on it anyway): opening its
            # transaction would only lock it and emit empty transaction
            # events on its manager.
            return [self.mount_store]
        return [self.mount_store, self.backing_store]

    # -- key mapping ---------------------------------------------------------------

    def _local(self, key: str) -> str | None:
        """``key`` in the mount store, or None if outside the mount point."""
        if not isinstance(key, str):
            raise TypeError(f"keys are str, not {type(key).__name__}")
        if key.startswith(self.mount_point):
            return key[len(self.mount_point) :]
        return None

    def _writable(self, key: str, operation: str) -> str:
        local = self._local(key)
        if local is None:
            raise ReadOnlyStoreError(
                f"{operation} {key!r}: only keys starting with "
                f"{self.mount_point!r} can be written in this MountedStore"
            )
        return local

    def _mounted_keys(self) -> set[str]:
        return {self.mount_point + k for k in self.mount_store.query_keys()}

    def _read(self, method: str, key: str, *args: Any) -> Any:
        """Call ``method`` for ``key`` on the mount store, else the backing store.

        The mount store is asked (for the key without the prefix) only for
        keys under the mount point; its ``KeyError`` falls through to the
        backing store, whose ``KeyError`` propagates.
        """
        local = self._local(key)
        if local is not None:
            try:
                return getattr(self.mount_store, method)(local, *args)
            except KeyError:
                pass
        return getattr(self.backing_store, method)(key, *args)

    # -- reads ---------------------------------------------------------------------

    def get(self, key: str) -> Value:
        """Return the value of ``key`` (mount store first, under the prefix).

        Raises
        ------
        KeyError
            If neither store has the key.
        """
        return self._read("get", key)

    def get_data(self, key: str) -> Any:
        """Return a stream of ``key``'s data (``KeyError`` if absent)."""
        return self._read("get_data", key)

    def get_metadata(self, key: str, select: Iterable[str] | None = None) -> dict:
        """Return ``key``'s metadata (``KeyError`` if absent)."""
        if select is not None:
            select = list(select)
        return self._read("get_metadata", key, select)

    def exists(self, key: str) -> bool:
        """Whether ``key`` is visible in either store."""
        local = self._local(key)
        if local is not None and self.mount_store.exists(local):
            return True
        return self.backing_store.exists(key)

    def query(
        self, select: Iterable[str] | None = None, **kwargs: Any
    ) -> list[tuple[str, dict]]:
        """Return ``(key, metadata)`` for visible keys matching ``kwargs``.

        A mounted key is judged by the mount store's value alone when the
        mount store has it.
        """
        if select is not None:
            select = list(select)
        result = [
            (self.mount_point + key, metadata)
            for key, metadata in self.mount_store.query(select, **kwargs)
        ]
        shadowed = self._mounted_keys()
        result.extend(
            (key, metadata)
            for key, metadata in self.backing_store.query(select, **kwargs)
            if key not in shadowed
        )
        return result

    def query_keys(self, **kwargs: Any) -> list[str]:
        """Return the visible keys whose metadata matches ``kwargs``."""
        result = [self.mount_point + k for k in self.mount_store.query_keys(**kwargs)]
        shadowed = self._mounted_keys() if kwargs else set(result)
        result.extend(
            key
            for key in self.backing_store.query_keys(**kwargs)
            if key not in shadowed
        )
        return result

    def glob(self, pattern: str) -> list[str]:
        """Return the visible keys matching the glob ``pattern``."""
        match = compile_glob(pattern)
        mounted = self._mounted_keys()
        result = [key for key in mounted if match(key)]
        result.extend(
            key for key in self.backing_store.glob(pattern) if key not in mounted
        )
        return result

    # -- writes ----------------------------------------------------------------------

    def _write(
        self,
        key: str,
        local: str,
        stream: Any,
        metadata: dict,
        size: Any,
        buffer_size: int,
    ) -> None:
        """Set ``local`` in the mount store through a progress reader."""
        write_through(
            self, self.mount_store, local, key, stream, metadata, size, buffer_size
        )

    def set(self, key: str, value: Any, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        """Store ``value`` at a key under the mount point (in the mount store).

        Emits `StoreSetEvent` (and progress events for long values).

        Raises
        ------
        ReadOnlyStoreError
            If ``key`` is not under the mount point.
        ValueError
            If the metadata is not JSON-representable (nothing is written).
        TypeError
            If ``value`` is not a value.
        """
        local = self._writable(key, "set")
        set_through(self, self.mount_store, local, key, value, buffer_size)

    def set_data(
        self, key: str, data: Any, buffer_size: int = DEFAULT_BUFFER_SIZE
    ) -> None:
        """Replace the data of a key under the mount point.

        Keeps the visible metadata (copied from the backing store if only it
        has the key; ``{}`` for a new key). Emits `StoreSetEvent`.

        Raises
        ------
        ReadOnlyStoreError
            If ``key`` is not under the mount point.
        """
        local = self._writable(key, "set_data")
        set_data_through(
            self, self.mount_store, local, key, data, buffer_size, self.get_metadata
        )

    def set_metadata(self, key: str, metadata: dict) -> None:
        """Replace the metadata of a key under the mount point.

        A key only the backing store has is copied into the mount store with
        its data. Emits `StoreSetEvent`.

        Raises
        ------
        ReadOnlyStoreError
            If ``key`` is not under the mount point.
        ValueError
            If the metadata is not JSON-representable (nothing is written).
        """
        local = self._writable(key, "set_metadata")
        metadata = check_metadata(metadata)
        with self._lock:
            if self.mount_store.exists(local) or not self.backing_store.exists(key):
                self.mount_store.set_metadata(local, metadata)
            else:
                self._copy_in(key, local, metadata)
        self._emit([StoreSetEvent(source=self, key=key, metadata=dict(metadata))])

    def _copy_in(self, key: str, local: str, metadata: dict) -> None:
        value = self.backing_store.get(key)
        with value.data as stream:
            self._write(key, local, stream, metadata, value.size, DEFAULT_BUFFER_SIZE)

    def update_metadata(self, key: str, metadata: dict) -> None:
        """Merge ``metadata`` into the metadata of a key under the mount point.

        Emits `StoreUpdateEvent`.

        Raises
        ------
        ReadOnlyStoreError
            If ``key`` is not under the mount point.
        KeyError
            If the key is not visible.
        ValueError
            If the result is not JSON-representable (nothing is written).
        """
        local = self._writable(key, "update_metadata")
        metadata = check_metadata(metadata)
        with self._lock:
            if self.mount_store.exists(local):
                self.mount_store.update_metadata(local, metadata)
                merged = self.mount_store.get_metadata(local)
            else:
                merged = self.backing_store.get_metadata(key)  # KeyError if absent
                merged.update(metadata)
                self._copy_in(key, local, merged)
        self._emit([StoreUpdateEvent(source=self, key=key, metadata=merged)])

    def delete(self, key: str) -> None:
        """Delete a key under the mount point from the mount store.

        Emits `StoreDeleteEvent`. If the backing store has the key, its value
        becomes visible again.

        Raises
        ------
        ReadOnlyStoreError
            If ``key`` is not under the mount point, or only the backing
            store has it.
        KeyError
            If the key is not visible at all.
        """
        local = self._local(key)
        with self._lock:
            if local is not None and self.mount_store.exists(local):
                metadata = self.mount_store.get_metadata(local)
                self.mount_store.delete(local)
            elif self.backing_store.exists(key):
                raise ReadOnlyStoreError(
                    f"delete {key!r}: the key is in the backing store, which "
                    "this MountedStore never modifies"
                )
            else:
                raise KeyError(key)
        self._emit([StoreDeleteEvent(source=self, key=key, metadata=metadata)])

    def push(self, key: str) -> None:
        """Move a key from the mount store into the backing store.

        Writes the mount store's value (data and metadata) at the full key in
        the backing store, then deletes it from the mount store, both inside
        this store's transaction (so inside both inner stores' transactions).
        The visible value does not change, so the mounted store emits no
        modification event (the inner stores emit theirs).

        Raises
        ------
        KeyError
            If ``key`` is not under the mount point or the mount store does
            not have it.
        ReadOnlyStoreError
            If the backing store is read-only.
        """
        local = self._local(key)
        if local is None:
            raise KeyError(key)
        with self.transaction(f"push {key!r}"):
            value = self.mount_store.get(local)  # KeyError if absent
            with value.data as stream:
                self.backing_store.set(key, (stream, value.metadata))
            self.mount_store.delete(local)
