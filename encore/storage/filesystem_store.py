"""A key-value store in a directory of a file system.

Layout
------
The store directory holds a magic file (``.FSStore`` by default, written
by ``init_shared_store``); connecting to a directory without it is an
error. Each key ``k`` is two files in the directory itself::

    <stem>.data      the raw bytes
    <stem>.metadata  the metadata, a JSON object (UTF-8)

A key exists while its data file does: a data file without metadata
reads as ``{}`` metadata, so files written by other tools are readable;
a metadata file without its data file (what ``rm k.data`` leaves) is not
a key, and a later data file makes it one.

Key encoding
------------
``<stem>`` is the key itself for *plain* keys: 1 to 200 ASCII characters
from ``A-Z a-z 0-9 _ - . + = , @ ~ ! # & ' ( ) [ ] { } ; ^`` and space, not
starting with ``.`` or space, not ending with space, and not a Windows
device name (``CON``, ``nul.txt``, ``COM1`` ...). On a case-insensitive
file system (detected at ``connect``), plain keys have no upper-case
letters either.

Every other key is encoded reversibly as ``%`` followed by its UTF-8 bytes,
each byte outside ``a-z 0-9 _ - .`` written as ``%xx`` (two lower-case hex
digits): ``a/b`` -> ``%a%2fb``, ``Case/x`` -> ``%%43ase%2fx``. Encoded stems
only use lower-case letters, so case-distinct keys stay distinct on any
file system, and they never contain ``/``, NUL or ``..`` as a path: every
file stays inside the store directory. A stem longer than 200 characters
is replaced by ``%~`` and the SHA-256 of the key in hex, and the key itself
is kept in ``<stem>.key``.

A file name is a key's only if it maps back exactly (``filename_to_key``);
other names (``café.data`` written by hand, for instance: its canonical
name is ``%caf%c3%a9.data``) are ignored. Names starting with ``.`` are
never keys: the magic file, its lock, the journal (``<magic>.journal``),
temporary files (``.tmp-<pid>-...``) and undo files (``.undo-<pid>-...``).

Atomicity
---------
Writes go to a temporary file in the directory, which is fsynced, given its
modification time and renamed over the final name. Replacing a value means
replacing two files, so every write runs as a small transaction under an
exclusive ``flock`` of the magic file: the names about to change are
written to the journal (fsynced), the old files are hard-linked to undo
files, the temporary files are renamed into place, and deleting the
journal commits. A process killed at any moment leaves a journal behind;
whoever takes the lock next rolls it back from the undo files. Readers take
a shared lock while they open the data file and read the metadata, so they
see a value's old or new data and metadata, never a mix; a ``Value`` keeps
its data file open, so later writes do not change what it reads. A
transaction (``with store.transaction()``) holds the exclusive lock until
it ends and is rolled back as a whole, also after a crash.

Queries
-------
``query``, ``query_keys`` and ``glob`` answer from an in-memory index of
all metadata. On Linux the index watches the directory with inotify (via
``ctypes``; one inotify instance per process serves every store, since
the per-user limit on instances is small), so each query rereads only the
files that changed since the last one, including changes made by other
processes and tools (the kernel queues a change before the writing call
returns). Elsewhere, or when inotify is unavailable, the index polls: it
rereads the files whose inode, size, modification or change time moved.
While the directory's own times show that no file was added, removed or
renamed since a scan that began more than two seconds after the last such
change (timestamps are coarse), only the metadata files are ``stat``ed;
otherwise the whole directory is scanned. Polling is correct but only
about 1.5 to 4 times faster than reading every metadata file.

Limits: POSIX only (``fcntl.flock``). Readers wait while another process
holds a transaction open. A process must not hold a transaction on one
``FileSystemStore`` object and read the same directory through a second
object in the same thread: the second object would wait for the first.

Implementation: this module holds the store, its locking and its file
writes; the key encoding is in ``_fs_keys`` (re-exported here), the undo
journal in ``_fs_journal``, the query index in ``_fs_index`` and the
inotify watcher in ``_inotify``.
"""

from __future__ import annotations

import fcntl
import io
import itertools
import json
import logging
import os
import secrets
import time
import weakref
from collections.abc import Iterable
from typing import Any

from ._fs_index import _Index
from ._fs_journal import _datasync, _Journal, _journal_entries, _undo
from ._fs_keys import (
    _HASHED,
    DATA_SUFFIX,
    KEY_SUFFIX,
    METADATA_SUFFIX,
    _split,
    filename_to_key,
    key_to_stem,
)
from .abstract_store import (
    AbstractStore,
    StoreError,
    Value,
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
from .values import FileValue, SharedFd

__all__ = [
    "FileSystemStore",
    "init_shared_store",
    "key_to_stem",
    "filename_to_key",
    "DATA_SUFFIX",
    "METADATA_SUFFIX",
    "KEY_SUFFIX",
]

logger = logging.getLogger(__name__)


def init_shared_store(path: str, magic_fname: str = ".FSStore") -> None:
    """Create ``path`` (if needed) and the magic file that marks it a store.

    Raises
    ------
    StoreError
        If the directory or the file cannot be created.
    """
    _check_magic(magic_fname)
    try:
        os.makedirs(path, exist_ok=True)
        magic = os.path.join(path, magic_fname)
        if not os.path.exists(magic):
            with open(magic, "w", encoding="utf-8") as f:
                json.dump(
                    {"format": "encore.storage.filesystem_store", "version": 1}, f
                )
    except OSError as error:
        raise StoreError(f"cannot initialise a store in {path!r}: {error}") from error


def _check_magic(magic_fname: str) -> None:
    if (
        not isinstance(magic_fname, str)
        or not magic_fname
        or "/" in magic_fname
        or "\0" in magic_fname
        or magic_fname in (".", "..")
        or _split(magic_fname) is not None
    ):
        raise ValueError(f"invalid magic file name {magic_fname!r}")


def _now_after(previous_ns: int) -> int:
    now = time.time_ns()
    return now if now > previous_ns else previous_ns + 1


# --------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------


class FileSystemStore(AbstractStore):
    """A store of ``<key>.data`` / ``<key>.metadata`` files in a directory.

    See the module docstring for the layout, the key encoding and the
    guarantees.

    Parameters
    ----------
    path : str
        The store directory (made a store by ``init_shared_store``).
    magic_fname : str
        Name of the magic file in that directory.
    event_manager : BaseEventManager, optional
        Where events are emitted (default: the process-wide manager).
    durable : bool
        fsync files and the directory so that a completed write survives a
        power loss (on by default; a killed process never loses a
        completed write either way).
    """

    _transaction_context_class = SimpleTransactionContext

    def __init__(
        self,
        path: str,
        magic_fname: str = ".FSStore",
        *,
        event_manager: Any = None,
        durable: bool = True,
    ) -> None:
        super().__init__(event_manager)
        _check_magic(magic_fname)
        self.path = os.path.abspath(os.fspath(path))
        self.magic_fname = magic_fname
        self.durable = durable
        self._journal_path = os.path.join(self.path, magic_fname + ".journal")
        self._lock_fd: int | None = None
        self._lock_finalizer = None
        self._flock_depth = 0
        self._flock_exclusive = False
        self._journal: _Journal | None = None
        self._index: _Index | None = None
        self._case_insensitive = False
        self._temp_prefix = f".tmp-{os.getpid()}-{secrets.token_hex(4)}-"
        self._temp_counter = itertools.count()

    # -- connection --------------------------------------------------------------

    def connect(self, credentials: Any = None) -> None:
        """Open the store directory (``credentials`` are ignored).

        Rolls back what a killed writer left unfinished and removes stale
        temporary files of dead processes.

        Raises
        ------
        StoreError
            If the directory does not exist or has no magic file.
        """
        if self._lock_fd is not None:
            return
        magic = os.path.join(self.path, self.magic_fname)
        if not os.path.isdir(self.path):
            raise StoreError(f"{self.path!r} is not a directory")
        try:
            fd = os.open(magic, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise StoreError(
                f"{self.path!r} is not a FileSystemStore: it has no "
                f"{self.magic_fname!r} file (create it with init_shared_store)"
            ) from None
        except OSError as error:
            raise StoreError(f"cannot open {magic!r}: {error}") from error
        self._lock_fd = fd
        self._lock_finalizer = weakref.finalize(self, os.close, fd)
        swapped = self.magic_fname.swapcase()
        self._case_insensitive = swapped != self.magic_fname and os.path.exists(
            os.path.join(self.path, swapped)
        )
        with self._locked(exclusive=True):
            self._remove_stale_files()

    def disconnect(self) -> None:
        """Release the directory (lock file and index watch)."""
        with self._lock:
            if self._index is not None:
                self._index.close()
                self._index = None
            if self._lock_finalizer is not None:
                self._lock_finalizer()
            self._lock_fd = None
            self._lock_finalizer = None

    def is_connected(self) -> bool:
        """Whether ``connect`` succeeded and ``disconnect`` was not called."""
        return self._lock_fd is not None

    # -- locking -------------------------------------------------------------------

    class _Locked:
        __slots__ = ("store", "exclusive")

        def __init__(self, store: FileSystemStore, exclusive: bool) -> None:
            self.store = store
            self.exclusive = exclusive

        def __enter__(self) -> None:
            self.store._acquire(self.exclusive)

        def __exit__(self, *exc_info) -> bool:
            self.store._release()
            return False

    def _locked(self, exclusive: bool = False) -> FileSystemStore._Locked:
        return self._Locked(self, exclusive)

    def _acquire(self, exclusive: bool) -> None:
        self._lock.acquire()
        try:
            if self._flock_depth == 0:
                fd = self._lock_fd
                if fd is None:
                    raise StoreError(
                        "the FileSystemStore is not connected: call connect() first"
                    )
                if exclusive:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    self._flock_exclusive = True
                    self._recover()
                else:
                    fcntl.flock(fd, fcntl.LOCK_SH)
                    self._flock_exclusive = False
                    if os.path.exists(self._journal_path):
                        # A writer died mid-way: roll its journal back first.
                        fcntl.flock(fd, fcntl.LOCK_EX)
                        try:
                            self._recover()
                        finally:
                            fcntl.flock(fd, fcntl.LOCK_SH)
            elif exclusive and not self._flock_exclusive:
                raise RuntimeError("cannot upgrade a shared store lock")
            self._flock_depth += 1
        except BaseException:
            self._lock.release()
            raise

    def _release(self) -> None:
        try:
            self._flock_depth -= 1
            if self._flock_depth == 0 and self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def _recover(self) -> None:
        """Roll back a journal left by a killed writer (exclusive lock held)."""
        try:
            with open(self._journal_path, "rb") as f:
                text = f.read()
        except FileNotFoundError:
            return
        entries = _journal_entries(text)
        logger.warning(
            "rolling back an unfinished write in %s (%d files)", self.path, len(entries)
        )
        _undo(self.path, entries)
        os.unlink(self._journal_path)
        self._sync_directory()
        self._remove_stale_files()

    def _remove_stale_files(self) -> None:
        """Delete temporary files of dead processes and orphan undo files."""
        with os.scandir(self.path) as entries:
            names = [e.name for e in entries if e.name.startswith((".tmp-", ".undo-"))]
        for name in names:
            if name.startswith(".tmp-"):
                try:
                    pid = int(name.split("-")[1])
                except (IndexError, ValueError):
                    continue
                if _pid_alive(pid):
                    continue
            try:
                os.unlink(os.path.join(self.path, name))
            except FileNotFoundError:
                pass

    def _sync_directory(self) -> None:
        if not self.durable:
            return
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- names and files ---------------------------------------------------------

    def _stem(self, key: str) -> str:
        return key_to_stem(key, self._case_insensitive)

    def _file(self, stem: str, suffix: str) -> str:
        return os.path.join(self.path, stem + suffix)

    def _read_metadata_file(self, stem: str, missing: Any, strict: bool = True) -> Any:
        path = self._file(stem, METADATA_SUFFIX)
        try:
            text = _read_small_file(path)
        except FileNotFoundError:
            return missing
        try:
            metadata = json.loads(text)
            if not isinstance(metadata, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            if strict:
                raise StoreError(
                    f"metadata file {path!r} is not a JSON object: {error}"
                ) from error
            logger.warning("ignoring %s: not a JSON object (%s)", path, error)
            return {}
        return metadata

    def _stat(self, stem: str, suffix: str) -> os.stat_result | None:
        try:
            return os.stat(self._file(stem, suffix))
        except FileNotFoundError:
            return None

    def _modified_ns(self, stem: str) -> int:
        times = [
            st.st_mtime_ns
            for st in (self._stat(stem, DATA_SUFFIX), self._stat(stem, METADATA_SUFFIX))
            if st is not None
        ]
        return max(times, default=0)

    def _temp_name(self) -> str:
        return f"{self._temp_prefix}{next(self._temp_counter)}"

    def _write_temp(
        self,
        stream: Any,
        buffer_size: int,
        key: str | None = None,
        metadata: dict | None = None,
        about: str | None = None,
    ) -> str:
        """Copy ``stream`` into a new temporary file; return its name.

        With ``key`` the copy reports progress events for that key; ``about``
        names the key in error messages only (metadata and key files).
        """
        about = key if key is not None else about
        name = self._temp_name()
        path = os.path.join(self.path, name)
        try:
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666
            )
        except OSError as error:
            raise StoreError(f"cannot write in {self.path!r}: {error}") from error
        try:

            def write(chunk: bytes) -> None:
                view = memoryview(chunk)
                try:
                    while view:
                        view = view[os.write(fd, view) :]
                except OSError as error:
                    raise StoreError(
                        f"cannot write {about!r} in {self.path!r}: {error}"
                    ) from error

            copy_stream(
                stream,
                write,
                buffer_size,
                store=self if key is not None else None,
                key=key,
                metadata=metadata,
                message=f"Storing {key!r}",
            )
            if self.durable:
                _datasync(fd)
        except BaseException:
            os.close(fd)
            _unlink_quietly(path)
            raise
        os.close(fd)
        return name

    def _temp_bytes(self, data: bytes, key: str) -> str:
        return self._write_temp(io.BytesIO(data), max(len(data), 1), about=key)

    def _apply(self, stem: str, replacements: dict[str, str | None]) -> None:
        """Put temporary files in place / delete files, atomically.

        ``replacements`` maps a suffix to a temporary file name, or to None
        to delete the file. Call with the exclusive lock held.
        """
        modified = _now_after(self._modified_ns(stem))
        for temp in replacements.values():
            if temp is not None:
                os.utime(os.path.join(self.path, temp), ns=(modified, modified))
        names = [stem + suffix for suffix in replacements]
        own = self._journal is None
        journal = _Journal(self) if own else self._journal
        try:
            journal.protect(names)
            for suffix, temp in replacements.items():
                final = self._file(stem, suffix)
                if temp is None:
                    _unlink_quietly(final)
                else:
                    os.replace(os.path.join(self.path, temp), final)
        except BaseException:
            if own:
                journal.rollback()
            raise
        if own:
            journal.commit()

    def _write(self, stem: str, key: str, temps: dict[str, str | None]) -> None:
        """Apply ``temps`` under the exclusive lock; clean them up on failure."""
        try:
            with self._locked(exclusive=True):
                if _HASHED.match(stem) and not os.path.exists(
                    self._file(stem, KEY_SUFFIX)
                ):
                    temps[KEY_SUFFIX] = self._temp_bytes(
                        key.encode("utf-8", "surrogatepass"), key
                    )
                try:
                    self._apply(stem, temps)
                except OSError as error:
                    raise StoreError(
                        f"cannot write {key!r} in {self.path!r}: {error}"
                    ) from error
        finally:
            for temp in temps.values():
                if temp is not None:
                    _unlink_quietly(os.path.join(self.path, temp))

    # -- reading -------------------------------------------------------------------

    def get(self, key: str) -> Value:
        """Return the value of ``key`` (``KeyError`` if absent).

        Raises
        ------
        KeyError
            If the key is not in the store.
        StoreError
            If its metadata file is not a JSON object.
        """
        stem = self._stem(key)
        with self._locked():
            try:
                fd = os.open(self._file(stem, DATA_SUFFIX), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = None
            try:
                metadata = self._read_metadata_file(stem, None)
                metadata_stat = (
                    self._stat(stem, METADATA_SUFFIX) if metadata is not None else None
                )
            except BaseException:
                if fd is not None:
                    os.close(fd)
                raise
        if fd is None:
            raise KeyError(key)
        if metadata is None:
            metadata = {}
        times = [] if metadata_stat is None else [metadata_stat.st_mtime]
        shared = SharedFd(fd)
        st = os.fstat(fd)
        times.append(st.st_mtime)
        return FileValue(shared, metadata, st.st_size, _birth_time(st), max(times))

    def get_data(self, key: str) -> Any:
        """Return a stream of the data of ``key`` (``KeyError`` if absent)."""
        stem = self._stem(key)
        with self._locked():
            try:
                fd = os.open(self._file(stem, DATA_SUFFIX), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise KeyError(key) from None
        shared = SharedFd(fd)
        return FileValue(shared, {}, os.fstat(fd).st_size).data

    def get_metadata(self, key: str, select: Iterable[str] | None = None) -> dict:
        """Return the metadata of ``key`` (``KeyError`` if absent)."""
        stem = self._stem(key)
        with self._locked():
            if not os.path.exists(self._file(stem, DATA_SUFFIX)):
                raise KeyError(key)
            metadata = self._read_metadata_file(stem, None)
            if metadata is None:
                metadata = {}
        return select_metadata(metadata, select)

    def exists(self, key: str) -> bool:
        """Whether ``key`` is in the store."""
        return os.path.exists(self._file(self._stem(key), DATA_SUFFIX))

    def _snapshot(self) -> list[tuple[str, dict]]:
        with self._locked():
            if self._index is None:
                self._index = _Index(self)
            self._index.refresh()
            return list(self._index.metadata.items())

    def query(
        self, select: Iterable[str] | None = None, **kwargs: Any
    ) -> list[tuple[str, dict]]:
        """Return ``(key, metadata)`` for the keys whose metadata matches."""
        if select is not None:
            select = list(select)
        result = []
        for key, metadata in self._snapshot():
            if kwargs and not metadata_matches(metadata, kwargs):
                continue
            result.append((key, copy_metadata(select_metadata(metadata, select))))
        return result

    def query_keys(self, **kwargs: Any) -> list[str]:
        """Return the keys whose metadata matches ``kwargs`` (all if none)."""
        return [
            key
            for key, metadata in self._snapshot()
            if not kwargs or metadata_matches(metadata, kwargs)
        ]

    def glob(self, pattern: str) -> list[str]:
        """Return the keys matching the glob ``pattern`` (``fnmatch`` rules)."""
        match = compile_glob(pattern)
        return [key for key, _ in self._snapshot() if match(key)]

    # -- writing -------------------------------------------------------------------

    def set(self, key: str, value: Any, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        """Store ``value`` at ``key``; emits ``StoreSetEvent``.

        The data is copied to a temporary file first; the key changes only
        when the copy is complete.

        Raises
        ------
        ValueError
            If the metadata is not JSON-representable (nothing is written).
        StoreError
            If the files cannot be written (the old value is kept).
        """
        stem = self._stem(key)
        stream, metadata, owned = unpack_value(value)
        temps: dict[str, str | None] = {}
        try:
            metadata = check_metadata(metadata)
            text = _dumps(metadata)
            temps[DATA_SUFFIX] = self._write_temp(stream, buffer_size, key, metadata)
            temps[METADATA_SUFFIX] = self._temp_bytes(text, key)
        except BaseException:
            for temp in temps.values():
                _unlink_quietly(os.path.join(self.path, temp))
            raise
        finally:
            if owned:
                stream.close()
        self._write(stem, key, temps)
        self._emit([StoreSetEvent(source=self, key=key, metadata=metadata)])

    def set_data(
        self, key: str, data: Any, buffer_size: int = DEFAULT_BUFFER_SIZE
    ) -> None:
        """Replace the data of ``key`` (new keys get ``{}`` metadata)."""
        stem = self._stem(key)
        stream, owned = as_stream(data)
        try:
            temps = {DATA_SUFFIX: self._write_temp(stream, buffer_size, key)}
        finally:
            if owned:
                stream.close()
        try:
            with self._locked(exclusive=True):
                metadata = None
                if os.path.exists(self._file(stem, DATA_SUFFIX)):
                    metadata = self._read_metadata_file(stem, None, strict=False)
                if metadata is None:
                    # A new key: a metadata file left without its data
                    # file belongs to no key and is replaced.
                    metadata = {}
                    temps[METADATA_SUFFIX] = self._temp_bytes(b"{}", key)
                self._write(stem, key, temps)
        finally:
            for temp in temps.values():
                _unlink_quietly(os.path.join(self.path, temp))
        self._emit([StoreSetEvent(source=self, key=key, metadata=metadata)])

    def set_metadata(self, key: str, metadata: dict) -> None:
        """Replace the metadata of ``key`` (new keys get empty data)."""
        stem = self._stem(key)
        metadata = check_metadata(metadata)
        temps = {METADATA_SUFFIX: self._temp_bytes(_dumps(metadata), key)}
        try:
            with self._locked(exclusive=True):
                if not os.path.exists(self._file(stem, DATA_SUFFIX)):
                    temps[DATA_SUFFIX] = self._temp_bytes(b"", key)
                self._write(stem, key, temps)
        finally:
            for temp in temps.values():
                _unlink_quietly(os.path.join(self.path, temp))
        self._emit([StoreSetEvent(source=self, key=key, metadata=metadata)])

    def update_metadata(self, key: str, metadata: dict) -> None:
        """Update the metadata of ``key``; emits ``StoreUpdateEvent``.

        Raises
        ------
        KeyError
            If the key is not in the store.
        ValueError
            If the result is not JSON-representable (nothing is written).
        """
        stem = self._stem(key)
        update = check_metadata(metadata)
        with self._locked(exclusive=True):
            if not os.path.exists(self._file(stem, DATA_SUFFIX)):
                raise KeyError(key)
            merged = self._read_metadata_file(stem, None)
            if merged is None:
                merged = {}
            merged.update(update)
            temps = {METADATA_SUFFIX: self._temp_bytes(_dumps(merged), key)}
            self._write(stem, key, temps)
        self._emit([StoreUpdateEvent(source=self, key=key, metadata=merged)])

    def delete(self, key: str) -> None:
        """Delete ``key``; emits ``StoreDeleteEvent`` (``KeyError`` if absent)."""
        stem = self._stem(key)
        with self._locked(exclusive=True):
            if not os.path.exists(self._file(stem, DATA_SUFFIX)):
                raise KeyError(key)
            metadata = self._read_metadata_file(stem, None, strict=False)
            if metadata is None:
                metadata = {}
            temps: dict[str, str | None] = {DATA_SUFFIX: None, METADATA_SUFFIX: None}
            if _HASHED.match(stem):
                temps[KEY_SUFFIX] = None
            try:
                self._apply(stem, temps)
            except OSError as error:
                raise StoreError(
                    f"cannot delete {key!r} in {self.path!r}: {error}"
                ) from error
        self._emit([StoreDeleteEvent(source=self, key=key, metadata=metadata)])

    def to_file(
        self, key: str, path: str, buffer_size: int = DEFAULT_BUFFER_SIZE
    ) -> None:
        """Copy the data of ``key`` to the file ``path``.

        As the base class, but never in buffers smaller than the default:
        small reads of a local file cost more in system calls than they save.
        """
        super().to_file(key, path, max(buffer_size, DEFAULT_BUFFER_SIZE))

    # -- transactions ----------------------------------------------------------

    def _begin_transaction(self) -> None:
        self._acquire(exclusive=True)
        try:
            self._journal = _Journal(self)
        except BaseException:
            self._release()
            raise

    def _commit_transaction(self) -> None:
        journal, self._journal = self._journal, None
        try:
            journal.commit()
        finally:
            self._release()

    def _rollback_transaction(self) -> None:
        journal, self._journal = self._journal, None
        try:
            if journal is not None:
                journal.rollback()
        finally:
            self._release()


def _dumps(metadata: dict) -> bytes:
    return json.dumps(metadata, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _read_small_file(path: str) -> bytes:
    # os.open/os.read: a metadata file is small, and skipping the io
    # module's buffered file objects halves the cost of reading one.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        parts = []
        while chunk := os.read(fd, 65536):
            parts.append(chunk)
    finally:
        os.close(fd)
    return b"".join(parts)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _birth_time(st: os.stat_result) -> float | None:
    return getattr(st, "st_birthtime", None)
