"""A file system store for a directory shared by several machines (encore 0.8).

``LockingFileSystemStore`` is a ``FileSystemStore`` (same layout, keys,
atomic writes and queries; see ``encore.storage.filesystem_store``) with
two additions for a directory that several clients use at once, each
with its own store object, in other processes or on other machines that
mount the directory (NFS, for instance):

Writes under a ``FileLock``
    Every write, and every transaction as a whole, holds the exclusive
    ``FileLock`` named ``<magic_fname>.write`` in the store directory (the
    file ``.FSStore.write.lock`` by default) as well as the store's local
    ``flock``. ``flock`` alone does not exclude writers on other machines
    on every network file system; the lock file does, since it is created
    by ``link``. A waiting writer breaks a lock that has stayed with one
    holder for ``force_lock_timeout`` seconds (0: never): a client that
    died while writing does not block the others for ever, but a write
    that holds the lock longer than that may lose it (the write itself
    completes; the broken lock is logged as a warning when released).

Changes of other clients as events
    Each write appends one line to the change log ``<magic_fname>.changes``
    in the directory while it holds the lock: a JSON object with the
    writing client's random id ``c``, its sequence number ``n`` (1, 2, ...
    per store object), the action ``a`` (``set``, ``update`` or
    ``delete``), the key ``k``, the key's metadata ``m`` (after the change;
    before it for a delete) and the writer's clock ``t``. Writes in a
    transaction are logged when it commits, and not at all when it rolls
    back. Every ``remote_event_poll_interval`` seconds a thread (started by
    ``connect``) stats the log and, when it grew or was replaced, reads
    the complete lines it has not read yet and emits a ``StoreSetEvent``,
    ``StoreUpdateEvent`` or ``StoreDeleteEvent`` (``source`` this store)
    for each entry of another client with a higher sequence number than
    the last one seen from that client. Changes made before ``connect``
    are not reported. ``poll_remote_events()`` polls at once.

    The log is kept short: a writer that finds it larger than
    ``log_limit`` bytes rewrites it (a new file renamed over the old one)
    without the entries older than ``max_time_delta`` plus ten poll
    intervals by its own clock. ``max_time_delta`` is how far the clocks
    of the machines may differ: an entry another machine wrote is only
    dropped once it is old by any of the clocks involved. The first line
    of a rewritten log records the highest sequence number dropped for
    each client; a reader that finds it has not seen those entries (it
    did not poll for longer than the entries were kept) emits a
    ``StoreChangesMissedEvent`` instead of the lost events.

Limits: a reader's ``query`` answers from the ``FileSystemStore`` index,
which learns of changes through inotify where available, and inotify
does not see writes made by another machine on a network file system;
the events above do. A client that edits the directory without this
class (by hand, or with a plain ``FileSystemStore``) writes no log
entries and produces no events.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
import weakref
from datetime import timedelta
from typing import Any

from .abstract_store import StoreError
from .events import (
    StoreChangesMissedEvent,
    StoreDeleteEvent,
    StoreSetEvent,
    StoreUpdateEvent,
)
from .file_lock import FileLock, LockError
from .filesystem_store import DATA_SUFFIX, METADATA_SUFFIX, FileSystemStore

__all__ = ["LockingFileSystemStore"]

logger = logging.getLogger(__name__)

_EVENTS = {"set": StoreSetEvent, "update": StoreUpdateEvent, "delete": StoreDeleteEvent}


class LockingFileSystemStore(FileSystemStore):
    """A ``FileSystemStore`` whose writes hold a ``FileLock`` and which
    reports other clients' changes as store events (see the module
    docstring for how).

    Parameters
    ----------
    path : str
        The store directory (made a store by ``init_shared_store``).
    force_lock_timeout : float
        Seconds after which a waiting writer breaks the write lock of a
        holder that kept it all that time (0: never).
    magic_fname : str
        Name of the magic file in the directory; the write lock and the
        change log are named after it.
    remote_event_poll_interval : float
        Seconds between two reads of the change log (> 0).
    max_time_delta : timedelta
        How far the clocks of the machines sharing the directory may
        differ; entries of the change log are kept at least that long.
    event_manager : BaseEventManager, optional
        Where events are emitted (default: the process-wide manager).
    durable : bool
        As for ``FileSystemStore``; also fsyncs the change log.
    """

    #: Size in bytes above which a writer rewrites the change log shorter.
    log_limit = 256 * 1024

    def __init__(
        self,
        path: str,
        force_lock_timeout: float = 10.0,
        magic_fname: str = ".FSStore",
        remote_event_poll_interval: float = 5.0,
        max_time_delta: timedelta = timedelta(minutes=1),
        *,
        event_manager: Any = None,
        durable: bool = True,
    ) -> None:
        super().__init__(
            path, magic_fname, event_manager=event_manager, durable=durable
        )
        if not remote_event_poll_interval > 0:
            raise ValueError(
                "remote_event_poll_interval must be > 0, "
                f"not {remote_event_poll_interval!r}"
            )
        if not isinstance(max_time_delta, timedelta):
            raise TypeError(
                "max_time_delta must be a timedelta, "
                f"not {type(max_time_delta).__name__}"
            )
        self.force_lock_timeout = force_lock_timeout
        self.remote_event_poll_interval = remote_event_poll_interval
        self.max_time_delta = max_time_delta
        self.client_id = uuid.uuid4().hex
        # FileLock checks force_lock_timeout (>= 0) here, before any file exists.
        self._write_lock = FileLock(
            magic_fname + ".write",
            dir=self.path,
            force_timeout=force_lock_timeout,
            uid=self.client_id,
        )
        self._holding_write_lock = False
        self._log_path = os.path.join(self.path, magic_fname + ".changes")
        self._seq = 0
        self._pending: list[dict] = []
        # What the poller has read: the log file's identity and offset,
        # and the highest sequence number seen from each client.
        self._poll_lock = threading.Lock()
        self._log_ident: tuple[int, int] | None = None
        self._log_offset = 0
        self._seen: dict[str, int] = {}
        self._current = threading.local()
        self._stop: threading.Event | None = None
        self._poller: threading.Thread | None = None

    # -- connection --------------------------------------------------------------

    def connect(self, credentials: Any = None) -> None:
        """Open the directory, note where the change log ends, start polling.

        Raises
        ------
        StoreError
            If the directory does not exist or has no magic file.
        """
        if self.is_connected():
            return
        super().connect(credentials)
        with self._poll_lock:
            self._read_log(emit=False)
        self._stop = threading.Event()
        self._poller = threading.Thread(
            target=_poll_loop,
            args=(weakref.ref(self), self._stop, self.remote_event_poll_interval),
            name=f"LockingFileSystemStore-poll-{self.path}",
            daemon=True,
        )
        self._poller.start()

    def disconnect(self) -> None:
        """Stop polling and release the directory."""
        stop, poller = self._stop, self._poller
        self._stop = self._poller = None
        if stop is not None:
            stop.set()
        if poller is not None and poller is not threading.current_thread():
            poller.join()
        super().disconnect()

    # -- the write lock ------------------------------------------------------------

    def _acquire(self, exclusive: bool) -> None:
        if not exclusive:
            super()._acquire(exclusive)
            return
        with self._lock:
            took = False
            if self._flock_depth == 0:
                if not self.is_connected():
                    raise StoreError(
                        "the LockingFileSystemStore is not connected: "
                        "call connect() first"
                    )
                # Timeout 0: wait; force_lock_timeout breaks a dead holder.
                self._write_lock.acquire()
                self._holding_write_lock = took = True
            try:
                super()._acquire(exclusive)
            except BaseException:
                if took:
                    self._release_write_lock()
                raise

    def _release(self) -> None:
        with self._lock:
            if self._flock_depth == 1 and self._holding_write_lock:
                self._release_write_lock()
            super()._release()

    def _release_write_lock(self) -> None:
        self._holding_write_lock = False
        try:
            self._write_lock.release()
        except LockError as error:
            logger.warning(
                "the write lock of %s was broken while held: %s", self.path, error
            )

    # -- logging own changes ---------------------------------------------------------

    def _write(self, stem: str, key: str, temps: dict[str, str | None]) -> None:
        self._current.key = key
        try:
            super()._write(stem, key, temps)
        finally:
            self._current.key = None

    def update_metadata(self, key: str, metadata: dict) -> None:
        """Update the metadata of ``key``; see ``FileSystemStore.update_metadata``."""
        self._current.action = "update"
        try:
            super().update_metadata(key, metadata)
        finally:
            self._current.action = None

    def delete(self, key: str) -> None:
        """Delete ``key``; see ``FileSystemStore.delete``."""
        self._current.key = key
        try:
            super().delete(key)
        finally:
            self._current.key = None

    def _apply(self, stem: str, replacements: dict[str, str | None]) -> None:
        # Called for every change, with the exclusive lock held; the new
        # metadata is in the temporary file about to be renamed in.
        key = getattr(self._current, "key", None)
        entry = None
        if key is not None:
            if DATA_SUFFIX in replacements and replacements[DATA_SUFFIX] is None:
                action, source = "delete", stem + METADATA_SUFFIX
            else:
                action = getattr(self._current, "action", None) or "set"
                temp = replacements.get(METADATA_SUFFIX)
                source = temp if temp is not None else stem + METADATA_SUFFIX
            entry = {"a": action, "k": key, "m": self._metadata_of(source)}
        in_transaction = self._journal is not None
        super()._apply(stem, replacements)
        if entry is not None:
            if in_transaction:
                self._pending.append(entry)
            else:
                self._append_log([entry])

    def _metadata_of(self, name: str) -> dict:
        try:
            with open(os.path.join(self.path, name), "rb") as f:
                metadata = json.loads(f.read())
        except (OSError, ValueError):
            return {}
        return metadata if isinstance(metadata, dict) else {}

    def _commit_transaction(self) -> None:
        pending, self._pending = self._pending, []
        try:
            if pending:
                self._append_log(pending)
        finally:
            super()._commit_transaction()

    def _rollback_transaction(self) -> None:
        self._pending = []
        super()._rollback_transaction()

    def _append_log(self, entries: list[dict]) -> None:
        """Append ``entries`` to the change log (write lock held)."""
        lines = []
        now = time.time()
        for entry in entries:
            self._seq += 1
            record = {"c": self.client_id, "n": self._seq, "t": now, **entry}
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        fd = os.open(
            self._log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666
        )
        try:
            data = "".join(lines).encode("utf-8", "surrogatepass")
            while data:
                data = data[os.write(fd, data) :]
            if self.durable:
                os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > self.log_limit:
            self._compact_log()

    def _compact_log(self) -> None:
        """Rewrite the change log without its old entries (write lock held)."""
        keep_after = time.time() - (
            self.max_time_delta.total_seconds() + 10 * self.remote_event_poll_interval
        )
        dropped: dict[str, int] = {}
        kept = []
        with open(self._log_path, "rb") as f:
            for line in f:
                record = _parse(line)
                if record is None:
                    continue
                if "dropped" in record:
                    _merge_max(dropped, record["dropped"])
                elif record["t"] >= keep_after:
                    kept.append(line)
                else:
                    _merge_max(dropped, {record["c"]: record["n"]})
        temp = os.path.join(self.path, self._temp_name())
        try:
            with open(temp, "wb") as f:
                f.write(json.dumps({"dropped": dropped}).encode("utf-8") + b"\n")
                f.writelines(kept)
                if self.durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(temp, self._log_path)
        except BaseException:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            raise

    # -- reading other clients' changes ----------------------------------------------

    def poll_remote_events(self) -> int:
        """Read the change log now; emit events for other clients' changes.

        Returns the number of events emitted. Called every
        ``remote_event_poll_interval`` seconds by the store's thread.
        """
        with self._poll_lock:
            return self._read_log(emit=True)

    def _read_log(self, emit: bool) -> int:
        try:
            fd = os.open(self._log_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._log_ident, self._log_offset = None, 0
            return 0
        try:
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino)
            if ident != self._log_ident or st.st_size < self._log_offset:
                # A new log (first read, or rewritten shorter): read it all;
                # sequence numbers tell what was seen already.
                self._log_ident, self._log_offset = ident, 0
            if st.st_size == self._log_offset:
                return 0
            os.lseek(fd, self._log_offset, os.SEEK_SET)
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        # A writer may be in the middle of a line: keep it for next time.
        end = data.rfind(b"\n") + 1
        self._log_offset += end
        events: list = []
        for line in data[:end].splitlines():
            record = _parse(line)
            if record is None:
                logger.warning("ignoring a malformed line in %s", self._log_path)
                continue
            if "dropped" in record:
                missed = [
                    client
                    for client, n in record["dropped"].items()
                    if client != self.client_id and n > self._seen.get(client, 0)
                ]
                _merge_max(self._seen, record["dropped"])
                if missed and emit:
                    events.append(
                        StoreChangesMissedEvent(
                            source=self,
                            reason=f"the change log of {self.path} was shortened "
                            "before this store read it",
                        )
                    )
                continue
            client, n = record["c"], record["n"]
            if n <= self._seen.get(client, 0):
                continue
            self._seen[client] = n
            if client == self.client_id or not emit:
                continue
            events.append(
                _EVENTS[record["a"]](source=self, key=record["k"], metadata=record["m"])
            )
        for event in events:
            self.event_manager.emit(event)
        return len(events)


def _parse(line: bytes) -> dict | None:
    """A change log line as a dict, or ``None`` when it is not a valid one."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    if "dropped" in record:
        dropped = record["dropped"]
        if isinstance(dropped, dict) and all(
            isinstance(n, int) for n in dropped.values()
        ):
            return record
        return None
    if (
        isinstance(record.get("c"), str)
        and isinstance(record.get("n"), int)
        and isinstance(record.get("t"), (int, float))
        and record.get("a") in _EVENTS
        and isinstance(record.get("k"), str)
        and isinstance(record.get("m"), dict)
    ):
        return record
    return None


def _merge_max(into: dict[str, int], other: dict[str, int]) -> None:
    for client, n in other.items():
        if n > into.get(client, 0):
            into[client] = n


def _poll_loop(ref: weakref.ref, stop: threading.Event, interval: float) -> None:
    """Poll the change log of the store behind ``ref`` until stopped.

    Holds the store only while polling, so that a store dropped without
    ``disconnect`` can still be garbage collected (the thread then ends).
    """
    while not stop.wait(interval):
        store = ref()
        if store is None:
            return
        try:
            store.poll_remote_events()
        except Exception:  # noqa: BLE001 - keep polling; the next poll retries
            logger.exception("cannot read the change log of %s", store.path)
        del store
