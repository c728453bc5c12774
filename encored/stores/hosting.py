"""Building the configured stores and keeping them while the daemon runs.

:class:`StoreHost` turns the validated ``[stores.*]`` tables into live
``encore.storage`` stores, all emitting on the daemon's event manager (so
their events reach the bus), connects them, starts a watcher for each
filesystem store with ``watch = true``, and closes everything at shutdown.
A postgres store's DSN (``dsn`` or the private ``dsn_file``) is never
logged: it can hold a password.
Composite stores (joined, mounted, simple_auth) are built after the stores
they name and share those very objects, so a write through a composite is
seen through its parts at once.
"""

from __future__ import annotations

__all__ = ["StoreHost", "StoreBuildError"]

import logging
import os
import weakref
from collections.abc import Callable
from typing import Any

from encore.storage.abstract_store import AbstractReadOnlyStore
from encore_client import _codec
from encore_client._events import RemoteSource
from encore_client._store_protocol import SOURCE_KIND

from .._config import Config, StoreConfig, store_references

logger = logging.getLogger("encored")


class StoreBuildError(RuntimeError):
    """A configured store could not be built or connected.

    The message names the store and says why; the daemon refuses to start.
    """


class StoreHost:
    """The daemon's live stores, by configured name.

    Parameters
    ----------
    config : Config
        A validated configuration.
    event_manager : EventManager
        The daemon's manager: every store emits its events there.
    watch : bool
        Start the filesystem watchers (tests of the hosting alone may not
        want them).

    Raises
    ------
    StoreBuildError
        If a store cannot be built or connected (everything built so far is
        closed again first).
    """

    def __init__(self, config: Config, event_manager: Any, watch: bool = True) -> None:
        self.config = config
        self.event_manager = event_manager
        self.stores: dict[str, AbstractReadOnlyStore] = {}
        self.types: dict[str, str] = {}
        #: Builders of a fresh instance for stores whose ``connect`` keeps
        #: per-user state (simple_auth): each client session gets its own.
        self.session_factories: dict[str, Callable[[], AbstractReadOnlyStore]] = {}
        self.watchers: dict[str, Any] = {}
        #: Password encoders of the simple_auth stores (for ``add_user``).
        self.encoders: dict[str, Callable[[str], Any]] = {}
        self._names: weakref.WeakKeyDictionary[object, str] = (
            weakref.WeakKeyDictionary()
        )
        # Source descriptors by id() of the store, with a weak reference to
        # tell a reused id apart: every store event the daemon publishes
        # asks for one, and a WeakKeyDictionary lookup (plus os.getpid())
        # was a visible part of a small set.
        self._descriptors: dict[int, tuple[weakref.ref[object], dict[str, Any]]] = {}
        self._pid = os.getpid()
        try:
            for name in self._build_order():
                self._build(config.stores[name])
            if watch:
                self._start_watchers()
        except BaseException:
            self.close()
            raise
        _codec.register_source_adapter(
            SOURCE_KIND, self._encode_source, self._decode_source
        )

    # -- building -------------------------------------------------------------------

    def _build_order(self) -> list[str]:
        order: list[str] = []
        done: set[str] = set()

        def visit(name: str) -> None:
            if name in done:
                return
            done.add(name)
            for ref in store_references(self.config.stores[name]):
                visit(ref)
            order.append(name)

        for name in self.config.stores:
            visit(name)
        return order

    def _build(self, spec: StoreConfig) -> None:
        try:
            store = self._make(spec)
            if spec.type != "simple_auth":
                # A simple_auth store is connected per client session, with
                # that client's credentials (see StoreService.h_connect).
                store.connect()
        except Exception as exc:
            raise StoreBuildError(
                f"store {spec.name!r} ({spec.type}) cannot be opened: {exc}"
            ) from exc
        self.stores[spec.name] = store
        self.types[spec.name] = spec.type
        self._names[store] = spec.name
        logger.info("store %r (%s) ready", spec.name, spec.type)

    def _make(self, spec: StoreConfig) -> AbstractReadOnlyStore:
        o = spec.options
        em = self.event_manager
        kind = spec.type
        if kind == "memory":
            from encore.storage.dict_memory_store import DictMemoryStore

            return DictMemoryStore(event_manager=em)
        if kind == "sqlite":
            from encore.storage.sqlite_store import SqliteStore

            location = o.get("location", ":memory:")
            if location != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(location)), exist_ok=True)
            index = o.get("index", "dynamic")
            return SqliteStore(
                location,
                table=o.get("table", "store"),
                index=None if index == "none" else index,
                index_columns=o.get("index_columns"),
                event_manager=em,
            )
        if kind == "filesystem":
            from encore.storage.filesystem_store import (
                FileSystemStore,
                init_shared_store,
            )

            path = o["path"]
            magic = o.get("magic_fname", ".FSStore")
            if o.get("create", False) and not os.path.exists(os.path.join(path, magic)):
                os.makedirs(path, mode=0o700, exist_ok=True)
                init_shared_store(path, magic)
            return FileSystemStore(path, magic, event_manager=em)
        if kind == "static_url":
            from encore.storage.static_url_store import StaticURLStore

            return StaticURLStore(
                o["root_url"],
                o["data_path"],
                o["query_path"],
                poll=o.get("poll", 300),
                event_manager=em,
            )
        if kind == "dynamic_url":
            from encore.storage.dynamic_url_store import DynamicURLStore

            extra = {k: o[k] for k in ("url_format", "url_format_no_part") if k in o}

            def fresh_rest() -> AbstractReadOnlyStore:
                return DynamicURLStore(
                    o["base_url"], o["query_url"], event_manager=em, **extra
                )

            # A client that logs in gets its own instance (its own HTTP
            # session and user tag); the shared one is anonymous.
            self.session_factories[spec.name] = fresh_rest
            return fresh_rest()
        if kind == "joined":
            from encore.storage.joined_store import JoinedStore

            return JoinedStore([self.stores[n] for n in o["stores"]], event_manager=em)
        if kind == "mounted":
            from encore.storage.mounted_store import MountedStore

            return MountedStore(
                o["mount_point"],
                self.stores[o["mount_store"]],
                self.stores[o["backing_store"]],
                event_manager=em,
            )
        if kind == "simple_auth":
            return self._simple_auth(spec)
        if kind == "postgres":
            return self._postgres(spec)
        raise StoreBuildError(f"unknown store type {kind!r}")  # pragma: no cover

    def _simple_auth(self, spec: StoreConfig) -> AbstractReadOnlyStore:
        from encore.storage._password import make_encoder, sha1_hasher
        from encore.storage.simple_auth_store import SimpleAuthStore

        o = spec.options
        if o.get("encoder", "pbkdf2") == "sha1":
            encoder: Callable[[str], Any] = sha1_hasher
        else:
            # The salt must stay the same for stored records to keep
            # matching: the store's name is stable and needs no extra file.
            encoder = make_encoder(salt="encored:" + spec.name)
        inner = self.stores[o["store"]]
        user_store = self.stores[o["user_key_store"]] if "user_key_store" in o else None
        path = o.get("user_key_path", ".user_")

        def fresh() -> AbstractReadOnlyStore:
            return SimpleAuthStore(
                inner, encoder, path, user_store, event_manager=self.event_manager
            )

        self.session_factories[spec.name] = fresh
        self.encoders[spec.name] = encoder
        return fresh()

    def _postgres(self, spec: StoreConfig) -> AbstractReadOnlyStore:
        from .._config_check import dsn_problem, read_dsn_file

        o = spec.options
        if "dsn" in o:
            dsn = o["dsn"]
        else:
            # Read when the store is built, checked again as the check did:
            # the file may have changed since.
            dsn = read_dsn_file(o["dsn_file"])
        problem = dsn_problem(dsn)
        if problem:
            raise StoreBuildError(f"dsn: {problem}")
        from encore.storage.postgres_store import PostgresStore

        return PostgresStore(
            dsn, table=o.get("table", "encore_store"), event_manager=self.event_manager
        )

    def connection_states(self) -> dict[str, dict[str, Any]]:
        """Each postgres store's connection: ``state`` and ``reconnections``.

        ``state`` is ``connected``, ``reconnecting`` (the server was lost and
        the store is trying again) or ``disconnected``.
        """
        found = {}
        for name, kind in list(self.types.items()):
            store = self.stores.get(name)
            if kind == "postgres" and store is not None:
                found[name] = {
                    "state": store.connection_state,
                    "reconnections": store.reconnections,
                }
        return found

    def _start_watchers(self) -> None:
        from .watcher import StoreWatcher

        for name, spec in self.config.stores.items():
            if spec.type == "filesystem" and spec.options.get("watch", False):
                watcher = StoreWatcher(self.stores[name], name)
                watcher.start()
                self.watchers[name] = watcher

    # -- use ----------------------------------------------------------------------

    def name_of(self, store: object) -> str | None:
        """The configured name of a hosted store object (``None`` if not ours)."""
        try:
            return self._names.get(store)
        except TypeError:
            return None

    def watchers_of(self, store: object) -> list[Any]:
        """The watchers of a store and of every store it is built on.

        A write through a joined or mounted store lands in its members: the
        members' watchers must know it is the daemon's own.
        """
        if not self.watchers:
            return []
        name = self.name_of(store)
        if name is None:
            return []
        found: list[Any] = []
        seen: set[str] = set()
        todo = [name]
        while todo:
            current = todo.pop()
            if current in seen or current not in self.config.stores:
                continue
            seen.add(current)
            if current in self.watchers:
                found.append(self.watchers[current])
            todo.extend(store_references(self.config.stores[current]))
        return found

    def register_session_store(self, store: AbstractReadOnlyStore, name: str) -> None:
        """Give a per-session store instance the name of its configured store."""
        self._names[store] = name

    def _encode_source(self, obj: object) -> dict[str, Any] | None:
        entry = self._descriptors.get(id(obj))
        if entry is not None and entry[0]() is obj:
            return entry[1]  # packed at once by the codec, never changed
        name = self.name_of(obj)
        if name is None:
            return None
        descriptor = {"kind": SOURCE_KIND, "name": name, "pid": self._pid}
        try:
            ref = weakref.ref(obj)
        except TypeError:
            return descriptor
        if len(self._descriptors) > 4096:
            # Session stores come and go; drop the dead ones.
            self._descriptors = {
                k: v for k, v in self._descriptors.items() if v[0]() is not None
            }
        self._descriptors[id(obj)] = (ref, descriptor)
        return descriptor

    def _decode_source(self, descriptor: dict[str, Any]) -> object:
        # An event a client emitted with one of its proxies as source: on
        # the daemon that source is the hosted store itself.
        store = self.stores.get(descriptor.get("name"))  # type: ignore[arg-type]
        if store is None:
            return RemoteSource(
                "encore_client.RemoteStore",
                repr(descriptor.get("name")),
                None,
                descriptor,
            )
        return store

    def close(self) -> None:
        """Stop the watchers and disconnect every store (errors are logged)."""
        for name, watcher in list(self.watchers.items()):
            try:
                watcher.stop()
            except Exception:
                logger.exception("stopping the watcher of %r failed", name)
        self.watchers.clear()
        for name in reversed(list(self.stores)):
            try:
                self.stores[name].disconnect()
            except Exception:
                logger.exception("disconnecting store %r failed", name)
