"""SIGHUP: read the configuration again and apply its stores while serving.

The reload is all or nothing.  The new file is validated as at start-up;
the stores it adds or changes are built (and connected) on a thread of
their own while the daemon keeps serving; only when every one of them has
been built are the hosted stores swapped, in one step on the daemon's I/O
thread, so no request ever sees half a configuration.  A file with any
mistake, or a store that cannot be opened, is rejected with the reasons
in the log and in ``encore status``, and the old configuration stays in
force.

* A store whose table did not change is kept as the very same object
  (a memory store keeps its data; watchers, sessions and open transfers
  on it are untouched), unless a store it is built on changed: then it is
  rebuilt too.
* A removed or changed store is closed after the swap; calls that name it
  from then on get ``NO_SUCH_STORE`` (removed) or reach its new instance
  (changed); sessions on it must connect again.
* Connected clients are never dropped: the sockets, the event bus and the
  replay buffer are not touched.  ``[daemon]`` and ``[listen]``/``[curve]``
  settings take effect at the next start (a warning says so), except the
  list of authorised CURVE client keys, which is read again.

systemd is told ``RELOADING=1`` at the start and ``READY=1`` at the end,
which is what ``Type=notify`` with ``ExecReload=`` expects.
"""

from __future__ import annotations

__all__ = ["ConfigReloader"]

import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._config import Config, ConfigError, StoreConfig, load_config, store_references
from ._notify import notify
from .stores.hosting import StoreBuildError, StoreHost

if TYPE_CHECKING:  # pragma: no cover
    from ._server import Daemon
    from .stores.wiring import RunningStores

logger = logging.getLogger("encored")


class _StagingHost(StoreHost):
    """A StoreHost that builds only the new stores, next to the kept ones.

    It starts from the kept store objects (so composites can be built on
    them) and builds the others in dependency order; nothing is started
    and the live host is not touched.
    """

    def __init__(
        self, config: Config, event_manager: Any, kept: dict[str, Any], live: StoreHost
    ) -> None:
        # StoreHost.__init__ builds everything and registers the source
        # adapter; a staging host must do neither.
        self.config = config
        self.event_manager = event_manager
        self.stores = dict(kept)
        self.types = {n: live.types[n] for n in kept}
        self.session_factories = {
            n: f for n, f in live.session_factories.items() if n in kept
        }
        self.watchers = {}
        self.encoders = {n: e for n, e in live.encoders.items() if n in kept}
        self._names = weakref.WeakKeyDictionary()
        self.built: list[str] = []

    def build_missing(self) -> None:
        """Build every configured store not kept, in dependency order."""
        for name in self._build_order():
            if name not in self.stores:
                self._build(self.config.stores[name])
                self.built.append(name)

    def discard(self) -> None:
        """Disconnect the stores built here (the reload is rejected)."""
        for name in reversed(self.built):
            try:
                self.stores[name].disconnect()
            except Exception:
                logger.exception("disconnecting store %r failed", name)


def _unchanged(old: dict[str, StoreConfig], new: dict[str, StoreConfig]) -> set[str]:
    """Names whose table is unchanged and whose every dependency is kept."""
    same = {n for n in new if n in old and old[n] == new[n]}
    changed = True
    while changed:
        changed = False
        for name in list(same):
            if any(ref not in same for ref in store_references(new[name])):
                same.discard(name)
                changed = True
    return same


class ConfigReloader:
    """Reloads the daemon's configuration on request (SIGHUP).

    Parameters
    ----------
    daemon : Daemon
    stores : RunningStores
        The live stores (their host is updated in place).
    config_path : str, optional
        The file to read again (``None``: the embedded default).

    Attributes
    ----------
    reloads, failures : int
        Reloads applied and rejected so far.
    last_error : list of str
        Why the latest reload was rejected (empty after a good one).
    """

    def __init__(
        self,
        daemon: Daemon,
        stores: RunningStores,
        config_path: str | None,
        notifier: Callable[..., bool] = notify,
    ) -> None:
        self.daemon = daemon
        self.running = stores
        self.config_path = config_path
        self.reloads = 0
        self.failures = 0
        self.last_error: list[str] = []
        self.last_time: float | None = None
        self.last_changes: dict[str, list[str]] = {}
        #: Called with the new configuration after a swap (CURVE keys).
        self.on_reload: list[Callable[[Config], None]] = []
        self._notify = notifier
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = False
        self._idle = threading.Event()
        self._idle.set()

    # -- requests -------------------------------------------------------------------

    def request(self) -> None:
        """Start a reload (from the signal handler; returns at once).

        A request that arrives while a reload runs starts one more after it,
        so the last file written is the one applied.
        """
        with self._lock:
            if self._thread is not None:
                self._again = True
                return
            self._idle.clear()
            self._thread = threading.Thread(
                target=self._run, name="encored-reload", daemon=True
            )
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no reload runs; return whether that happened in time."""
        return self._idle.wait(timeout)

    def describe(self) -> dict[str, Any]:
        """A summary for ``status``."""
        return {
            "config": self.config_path or "<embedded default>",
            "reloads": self.reloads,
            "failures": self.failures,
            "last_time": self.last_time,
            "last_error": list(self.last_error),
            "last_changes": dict(self.last_changes),
        }

    def _run(self) -> None:
        while True:
            try:
                self.reload_now()
            except Exception:
                logger.exception("configuration reload failed")
            with self._lock:
                if not self._again:
                    self._thread = None
                    self._idle.set()
                    return
                self._again = False

    # -- the reload -----------------------------------------------------------------

    def reload_now(self) -> bool:
        """Reload synchronously; return whether the new file was applied."""
        self._notify("RELOADING=1", "STATUS=reloading the configuration")
        try:
            applied = self._reload()
        finally:
            self._notify("READY=1", "STATUS=serving")
        self.last_time = time.time()
        return applied

    def _reject(self, errors: list[str]) -> bool:
        self.failures += 1
        self.last_error = errors
        for line in errors:
            logger.error("%s", line)
        logger.error(
            "configuration reload rejected (%d problem(s)); "
            "the previous configuration stays in force",
            len(errors),
        )
        return False

    def _reload(self) -> bool:
        logger.info("reloading the configuration from %s", self.config_path)
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            return self._reject(list(exc.errors))
        daemon = self.daemon
        old = daemon.config
        if new.daemon != old.daemon:
            logger.warning(
                "[daemon] settings changed: they take effect at the next start"
            )
        if getattr(new, "listen", None) != getattr(old, "listen", None):
            logger.warning(
                "[listen] settings changed: they take effect at the next start"
            )
        host = self.running.host
        kept_names = _unchanged(old.stores, new.stores)
        kept = {n: host.stores[n] for n in kept_names if n in host.stores}
        staging = _StagingHost(new, host.event_manager, kept, host)
        try:
            staging.build_missing()
        except StoreBuildError as exc:
            staging.discard()
            return self._reject([f"{new.source}: {exc}"])
        except Exception as exc:  # a bug, but never a reason to stop serving
            logger.exception("building the reloaded stores failed")
            staging.discard()
            return self._reject([f"{new.source}: {exc}"])
        gone = [n for n in old.stores if n not in kept_names]
        added = [n for n in staging.built if n not in old.stores]
        changed = [n for n in staging.built if n in old.stores]
        watchers = self._start_watchers(staging)
        applied = threading.Event()
        old_watchers: dict[str, Any] = {}
        old_stores: dict[str, Any] = {}

        def swap() -> None:
            # On the I/O thread: no request is being handled meanwhile.
            old_stores.update({n: host.stores[n] for n in gone if n in host.stores})
            for name in gone:
                if name in host.watchers:
                    old_watchers[name] = host.watchers.pop(name)
            host.stores = {n: staging.stores[n] for n in new.stores}
            host.types = {n: new.stores[n].type for n in new.stores}
            host.session_factories = dict(staging.session_factories)
            host.encoders = dict(staging.encoders)
            for name in staging.built:
                host._names[staging.stores[name]] = name
            host.watchers.update(watchers)
            host.config = new
            self.running.service.sessions.forget_stores(gone)
            daemon.config = _applied_config(old, new)
            applied.set()

        daemon.call_soon(swap)
        deadline = time.monotonic() + 30.0
        while not applied.wait(0.1):
            # A daemon that is stopping runs no more calls: do not hold up
            # its exit for the whole deadline.
            if daemon.stopping or time.monotonic() > deadline:
                break
        if not applied.is_set():
            # The loop did not run the swap: it is stopping or stuck.
            for watcher in watchers.values():
                watcher.stop()
            staging.discard()
            return self._reject(["the daemon loop did not apply the new stores"])
        for name, watcher in old_watchers.items():
            try:
                watcher.stop()
            except Exception:
                logger.exception("stopping the watcher of %r failed", name)
        for name, store in old_stores.items():
            try:
                store.disconnect()
            except Exception:
                logger.exception("disconnecting store %r failed", name)
        self.reloads += 1
        self.last_error = []
        self.last_changes = {"added": added, "removed": [], "changed": changed}
        self.last_changes["removed"] = [n for n in gone if n not in new.stores]
        for hook in self.on_reload:
            try:
                hook(new)
            except Exception:
                logger.exception("a reload hook failed")
        logger.info(
            "configuration reloaded: added %s, changed %s, removed %s",
            added or "none",
            changed or "none",
            self.last_changes["removed"] or "none",
        )
        return True

    @staticmethod
    def _start_watchers(staging: _StagingHost) -> dict[str, Any]:
        from .stores.watcher import StoreWatcher

        started: dict[str, Any] = {}
        for name in staging.built:
            spec = staging.config.stores[name]
            if spec.type == "filesystem" and spec.options.get("watch", False):
                watcher = StoreWatcher(staging.stores[name], name)
                watcher.start()
                started[name] = watcher
        return started


def _applied_config(old: Config, new: Config) -> Config:
    """The new stores under the old daemon-wide settings (those need a start)."""
    fields = {f.name for f in dataclasses.fields(Config)}
    values = {f: getattr(new, f) for f in fields}
    for name in fields - {"source", "stores"}:
        values[name] = getattr(old, name)
    return Config(**values)
