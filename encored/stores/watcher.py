"""Watching a filesystem store's directory: outside changes become events.

Anyone may change the files of a store directory: an editor, ``cp``,
``rm``, another program.  :class:`StoreWatcher` turns those changes into
the store's own events, one per key and change:

* watchdog reports file events; each is mapped to the key its file belongs
  to (temporary and hidden files belong to none), and the key is marked
  *pending* with a short quiet period that every further event restarts.
  An editor's save (write a temporary file, rename it over ``k.data``)
  therefore settles into one decision, not three.
* a file open for writing is never decided (Linux: inotify reports each
  write and each close after writing).  A file created in place, or
  written to, counts as open until its writer closes it; only then does
  its quiet period begin, so a ``cp`` that runs for minutes gives one
  event, after it closed the file, and a writer that reopens the file
  within the quiet period (``>>`` in a loop) one event for the burst.
  A file renamed in, or hard-linked, is complete at once.  Without close
  events (other platforms) the quiet period alone decides.
* when a key's quiet period ends, its files' signature (inode, size and
  modification time of ``.data`` and ``.metadata``) is compared with the
  last one reported: a new or different signature is one
  ``StoreSetEvent``; a key whose data file is gone is one
  ``StoreDeleteEvent`` (after a second, longer look: editors move the
  old file aside before writing the new one) whether or not its
  ``.metadata`` file is left, which is not a key; an unchanged one nothing.
* the daemon's own writes are not reported twice: the store's own events
  update the signatures, and decisions wait while a write of the daemon is
  running (:meth:`StoreWatcher.own_write`), so the watcher then finds
  nothing new.
* if the kernel's event queue overflows, events were lost: the watcher
  rescans the whole directory, reports every difference as above, then
  emits a :class:`~encore_client._store_events.StoreResyncEvent`.  Closes
  may have been lost with the rest, so a rescan forgets which files were
  open for writing (a writer still at work is seen again at its next
  write).

The events each tool gives are listed in ``docs/service.md``.
"""

from __future__ import annotations

__all__ = ["StoreWatcher"]

import contextlib
import logging
import os
import stat
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import watchdog.events
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

try:  # Linux: the one observer that reports closes after writing
    from watchdog.observers.inotify import InotifyObserver
except ImportError:  # pragma: no cover - other platforms
    InotifyObserver = None  # type: ignore[assignment,misc]

from encore.storage.events import (
    StoreDeleteEvent,
    StoreModificationEvent,
    StoreSetEvent,
)
from encore.storage.filesystem_store import (
    DATA_SUFFIX,
    METADATA_SUFFIX,
    filename_to_key,
    key_to_stem,
)
from encore_client._store_events import StoreResyncEvent

logger = logging.getLogger("encored")

# Tracking open files needs "modified" to mean a write: watchdog versions
# without FileAttribEvent report chmod and utime as "modified" too, and a
# file would then wait for a close that never comes.
_CLOSES_TRACKABLE = InotifyObserver is not None and all(
    hasattr(watchdog.events, name) for name in ("FileAttribEvent", "FileClosedEvent")
)

#: Seconds without a new file event before a key's change is decided.
QUIET_PERIOD = float(os.environ.get("ENCORED_WATCH_QUIET", "0.15"))

#: A vanished key is declared deleted after this many quiet periods.
DELETE_GRACE = 4

_Signature = tuple[tuple[int, int, int] | None, tuple[int, int, int] | None]

# watchdog handles an inotify queue overflow internally and only logs it;
# this filter on its logger is the one place the news can be caught.
_live_watchers: weakref.WeakSet[StoreWatcher] = weakref.WeakSet()


class _OverflowFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if "overflow" in record.getMessage().lower():
            for watcher in list(_live_watchers):
                watcher.request_rescan("overflow")
        return True


_overflow_filter = _OverflowFilter()


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: StoreWatcher) -> None:
        super().__init__()
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        self._watcher.file_event(
            event.event_type,
            os.fsdecode(event.src_path),
            os.fsdecode(getattr(event, "dest_path", "") or ""),
        )

    def on_events_lost(self, event: FileSystemEvent) -> None:
        self._watcher.request_rescan("overflow")


class StoreWatcher:
    """Reports outside changes of a ``FileSystemStore``'s directory as events.

    Parameters
    ----------
    store : FileSystemStore
        A connected store; events are emitted on its ``event_manager`` with
        the store as ``source``.
    name : str
        The store's configured name (for the log).
    quiet : float
        Quiet period, in seconds, that settles a key's change.
    """

    def __init__(self, store: Any, name: str, quiet: float = QUIET_PERIOD) -> None:
        self.store = store
        self.name = name
        self.quiet = quiet
        self.path = store.path
        self._cond = threading.Condition()
        self._pending: dict[str, float] = {}
        #: key -> its file names that a writer has open (see file_event).
        self._writing: dict[str, set[str]] = {}
        #: Whether the observer reports closes after writing (inotify).
        self.closes = False
        self._graced: set[str] = set()
        self._known: dict[str, _Signature] = {}
        self._own_writes = 0
        self._rescan: str | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._observer: Any = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Scan the directory, then watch it.

        Raises ``OSError`` if the directory cannot be watched.
        """
        self._known = {}
        for key in self._scan_keys():
            signature = self._signature(key)
            if signature[0] is not None:
                self._known[key] = signature
        self.store.event_manager.connect(StoreModificationEvent, self._on_own_event)
        if _CLOSES_TRACKABLE:
            # Full events: a file renamed in from elsewhere is a move (it
            # is complete), not a creation (a writer has it open).
            observer = InotifyObserver(generate_full_events=True)
            self.closes = True
        else:  # pragma: no cover - other platforms, old watchdog
            observer = Observer()
        observer.schedule(_Handler(self), self.path, recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._thread = threading.Thread(
            target=self._loop, name=f"encored-watch-{self.name}", daemon=True
        )
        self._thread.start()
        _live_watchers.add(self)
        inotify_logger = logging.getLogger("watchdog.observers.inotify_c")
        if _overflow_filter not in inotify_logger.filters:
            inotify_logger.addFilter(_overflow_filter)
        logger.info("watching %s for store %r", self.path, self.name)

    def stop(self) -> None:
        """Stop watching (pending changes are dropped)."""
        _live_watchers.discard(self)
        try:
            self.store.event_manager.disconnect(
                StoreModificationEvent, self._on_own_event
            )
        except (KeyError, ValueError):
            pass
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
            self._observer = None
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # -- inputs -----------------------------------------------------------------------

    @contextlib.contextmanager
    def own_write(self) -> Iterator[None]:
        """Mark a write of the daemon's own: decisions wait until it ends."""
        with self._cond:
            self._own_writes += 1
        try:
            yield
        finally:
            with self._cond:
                self._own_writes -= 1
                self._cond.notify_all()

    def _key_of(self, path: str) -> str | None:
        if not path or os.path.dirname(path) != self.path:
            return None
        name = os.path.basename(path)
        if name.startswith("."):
            return None  # the magic file, journal, temporary and undo files
        return filename_to_key(name, self.path, self.store._case_insensitive)

    def file_event(self, kind: str, path: str, dest: str = "") -> None:
        """A watchdog event of type ``kind`` for ``path`` (``dest`` if moved).

        Called by watchdog's thread.  Tracks which files a writer has open:
        ``created`` (a new regular file with one link: made by ``open``)
        and ``modified`` open one, ``closed`` (after writing), ``deleted``
        and moving it away close it; a move carries the state to the new
        name, so a writer that renames its open file is still waited for.
        """
        key = self._key_of(path)
        dest_key = self._key_of(dest) if kind == "moved" else None
        if key is None and dest_key is None:
            return
        name = os.path.basename(path)
        opened = False
        if self.closes and key is not None:
            if kind == "modified":
                opened = True
            elif kind == "created":
                try:
                    st = os.lstat(path)
                except OSError:
                    pass  # gone already: its deletion follows
                else:
                    # A hard link or symlink is complete; only a regular
                    # file with one link was made by a writer's open().
                    opened = stat.S_ISREG(st.st_mode) and st.st_nlink == 1
        deadline = time.monotonic() + self.quiet
        with self._cond:
            if key is not None:
                names = self._writing.get(key, set())
                was_open = name in names
                if opened:
                    names.add(name)
                    self._writing[key] = names
                elif kind != "attrib":
                    names.discard(name)
                    if not names:
                        self._writing.pop(key, None)
                self._pending[key] = deadline
            else:
                was_open = False
            if dest_key is not None:
                # The file moved in replaces whatever had that name (the
                # writer of a replaced file may never be heard of again).
                names = self._writing.get(dest_key, set())
                names.discard(os.path.basename(dest))
                if was_open:
                    names.add(os.path.basename(dest))
                if names:
                    self._writing[dest_key] = names
                else:
                    self._writing.pop(dest_key, None)
                self._pending[dest_key] = deadline
            self._cond.notify_all()

    def writing(self) -> dict[str, set[str]]:
        """Keys whose files a writer has open, with those file names."""
        with self._cond:
            return {key: set(names) for key, names in self._writing.items()}

    def request_rescan(self, reason: str = "requested") -> None:
        """Rescan the whole directory soon and emit a resync event."""
        with self._cond:
            self._rescan = reason
            self._cond.notify_all()

    def _on_own_event(self, event: Any) -> None:
        if event.source is not self.store:
            return
        key = getattr(event, "key", None)
        if not isinstance(key, str):
            return
        signature = self._signature(key)
        with self._cond:
            if signature[0] is None:
                self._known.pop(key, None)
            else:
                self._known[key] = signature

    # -- deciding ---------------------------------------------------------------------

    def _stat(self, stem: str, suffix: str) -> tuple[int, int, int] | None:
        try:
            st = os.stat(os.path.join(self.path, stem + suffix))
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _signature(self, key: str) -> _Signature:
        stem = key_to_stem(key, self.store._case_insensitive)
        return (self._stat(stem, DATA_SUFFIX), self._stat(stem, METADATA_SUFFIX))

    def _scan_keys(self) -> set[str]:
        keys: set[str] = set()
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                key = filename_to_key(
                    entry.name, self.path, self.store._case_insensitive
                )
                if key is not None:
                    keys.add(key)
        return keys

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    if self._own_writes == 0:
                        if self._rescan is not None:
                            reason, self._rescan = self._rescan, None
                            due: list[str] | None = None
                            break
                        # A key with a file open for writing waits for
                        # its close, which sets a new deadline.
                        due = [
                            k
                            for k, t in self._pending.items()
                            if t <= now and k not in self._writing
                        ]
                        if due:
                            for key in due:
                                del self._pending[key]
                            break
                    wait = (
                        min(
                            (
                                t
                                for k, t in self._pending.items()
                                if k not in self._writing
                            ),
                            default=now + 1.0,
                        )
                        - now
                    )
                    self._cond.wait(max(0.01, wait))
            try:
                if due is None:
                    self._do_rescan(reason)
                else:
                    for key in due:
                        self._decide(key)
            except Exception:
                logger.exception("watcher of store %r failed; rescanning", self.name)
                self.request_rescan("error")

    def _decide(self, key: str, grace: bool = True) -> str | None:
        """Compare a key's files with what was reported; emit the difference.

        A key is there while its data file is; a ``.metadata`` file left
        alone is not a key.  A key whose data file just vanished gets a
        second, longer look before it is reported deleted: editors that
        move the old file aside and write a new one must not look like a
        delete followed by a set.
        """
        with self.store._locked():
            signature = self._signature(key)
            gone = signature[0] is None
            with self._cond:
                known = self._known.get(key)
                if signature == known or (known is None and gone):
                    self._graced.discard(key)
                    return None
                if gone and grace and key not in self._graced:
                    self._graced.add(key)
                    self._pending[key] = time.monotonic() + DELETE_GRACE * self.quiet
                    self._cond.notify_all()
                    return None
                self._graced.discard(key)
                if gone:
                    del self._known[key]
                else:
                    self._known[key] = signature
            if gone:
                event: Any = StoreDeleteEvent(source=self.store, key=key, metadata=None)
            else:
                try:
                    metadata = self.store.get_metadata(key)
                except (KeyError, ValueError, OSError):
                    metadata = {}
                event = StoreSetEvent(source=self.store, key=key, metadata=metadata)
        logger.debug(
            "store %r: outside change of %r (%s)", self.name, key, event.action
        )
        self.store.event_manager.emit(event)
        return event.action

    def _do_rescan(self, reason: str) -> None:
        with self._cond:
            self._pending.clear()
            self._writing.clear()  # their closes may be among the lost events
            keys = set(self._known)
        keys |= self._scan_keys()
        changed: list[str] = []
        deleted: list[str] = []
        for key in sorted(keys):
            action = self._decide(key, grace=False)
            if action == "set":
                changed.append(key)
            elif action == "delete":
                deleted.append(key)
        logger.warning(
            "store %r rescanned (%s): %d changed, %d deleted",
            self.name,
            reason,
            len(changed),
            len(deleted),
        )
        self.store.event_manager.emit(
            StoreResyncEvent(
                source=self.store, reason=reason, changed=changed, deleted=deleted
            )
        )
