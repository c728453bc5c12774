"""A process-wide inotify watcher of directories (Linux), through ``ctypes``.

``_Inotify(path)`` watches one directory and reports the names that changed
in it since the last ``changes()`` call, or None when events were lost (the
queue overflowed, or the directory went away: ``lost``). Every watch shares
one inotify instance per process (``_InotifyHub``), because the per-user
limit on instances is small. A forked child gets a fresh instance.
Construction raises ``OSError`` where inotify is not available (not Linux,
no instance or watch left), or ``AttributeError`` if the C library has no
inotify functions; callers fall back to polling.

Used by the query index of ``encore.storage.filesystem_store``
(``encore.storage._fs_index``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import threading
import weakref

_IN_MODIFY = 0x2
_IN_CLOSE_WRITE = 0x8
_IN_MOVED_FROM = 0x40
_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_UNMOUNT = 0x2000
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x1000000
_WATCH_MASK = (
    _IN_MODIFY
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
)
_EVENT_HEADER = struct.Struct("iIII")
_libc = None
_hub_lock = threading.Lock()
_hub: _InotifyHub | None = None


def _check(result: int) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


class _InotifyHub:
    """One inotify instance per process, shared by every watched directory.

    The number of inotify instances per user is small (128 by default) and
    shared with every other program of the user, so stores do not each
    take one. Events are read by whichever watch asks first and handed to
    every watch of their directory.
    """

    def __init__(self) -> None:
        global _libc
        if os.uname().sysname != "Linux":
            raise OSError(errno.ENOSYS, "inotify is Linux only")
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self.fd = _check(_libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        self.pid = os.getpid()
        # Weak: an index dropped without disconnect() must not keep
        # collecting names here forever.
        self.watches: dict[int, weakref.WeakSet[_Inotify]] = {}
        self._finalizer = weakref.finalize(self, os.close, self.fd)

    def add(self, path: str, watch: _Inotify) -> int:
        wd = _check(
            _libc.inotify_add_watch(
                self.fd, os.fsencode(path), ctypes.c_uint32(_WATCH_MASK)
            )
        )
        self.watches.setdefault(wd, weakref.WeakSet()).add(watch)
        return wd

    def remove(self, wd: int, watch: _Inotify) -> None:
        watches = self.watches.get(wd)
        if watches is None:
            return
        watches.discard(watch)
        if not watches:
            del self.watches[wd]
            _libc.inotify_rm_watch(self.fd, wd)

    def drain(self) -> None:
        """Read every pending event and hand it to the watches."""
        while True:
            try:
                buffer = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            offset = 0
            while offset < len(buffer):
                wd, mask, _, length = _EVENT_HEADER.unpack_from(buffer, offset)
                offset += _EVENT_HEADER.size
                name = buffer[offset : offset + length].rstrip(b"\0")
                offset += length
                if mask & _IN_Q_OVERFLOW:
                    for watches in self.watches.values():
                        for watch in watches:
                            watch.overflow = True
                    continue
                watches = self.watches.get(wd, ())
                if mask & (_IN_IGNORED | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_UNMOUNT):
                    for watch in watches:
                        watch.lost = watch.overflow = True
                if name and not name.startswith(b"."):
                    decoded = os.fsdecode(name)
                    for watch in watches:
                        watch.names.add(decoded)
        for wd in [wd for wd, watches in self.watches.items() if not watches]:
            del self.watches[wd]
            _libc.inotify_rm_watch(self.fd, wd)


def _get_hub() -> _InotifyHub:
    global _hub
    if _hub is None or _hub.pid != os.getpid():
        # A forked child must not read the events of its parent's instance.
        _hub = _InotifyHub()
    return _hub


def _reset_after_fork() -> None:
    # Another thread may have held the lock when the process forked.
    global _hub_lock
    _hub_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class _Inotify:
    """A watch on one directory, through the process-wide hub."""

    def __init__(self, path: str) -> None:
        self.names: set[str] = set()
        self.overflow = False
        self.lost = False
        with _hub_lock:
            self.hub = _get_hub()
            self.wd = self.hub.add(path, self)

    def close(self) -> None:
        with _hub_lock:
            self.hub.remove(self.wd, self)

    def changes(self) -> set[str] | None:
        """Names changed since the last call; None if events were lost."""
        with _hub_lock:
            self.hub.drain()
            names, self.names = self.names, set()
            overflow, self.overflow = self.overflow, False
        return None if overflow else names
