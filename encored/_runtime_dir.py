"""The daemon's runtime directory: created private, and locked.

The directory holds the two ipc sockets.  Only its owner may enter it
(mode 0700), which is what keeps other users off the sockets.  A second
daemon on the same directory would silently steal the sockets by binding
them again, so the daemon first takes an exclusive ``flock`` on a lock file
there and refuses to start when another process holds it.

A clean stop removes the socket files (libzmq leaves them behind when a
socket closes), so that a socket file found there without a daemon means
one that was killed or crashed: ``encore status`` tells the two apart.
"""

from __future__ import annotations

__all__ = ["RuntimeDirError", "AlreadyRunningError", "RuntimeDir"]

import fcntl
import os
import stat
from pathlib import Path

from encore_client._paths import Endpoints, endpoints


class RuntimeDirError(RuntimeError):
    """The runtime directory cannot be used (unsafe or not creatable)."""


class AlreadyRunningError(RuntimeDirError):
    """Another daemon holds the lock on the runtime directory."""


class RuntimeDir:
    """Create, check and lock a runtime directory.

    Use as a context manager, or call :meth:`acquire` and :meth:`release`.

    Raises
    ------
    RuntimeDirError
        If the directory cannot be created, is not a directory, belongs to
        another user, or is open to other users and cannot be made private.
    AlreadyRunningError
        If another daemon already holds its lock.
    """

    def __init__(self, runtime_dir: str | os.PathLike[str] | None = None) -> None:
        self.endpoints: Endpoints = endpoints(runtime_dir)
        self.path: Path = self.endpoints.runtime_dir
        self._lock_fd: int | None = None

    def acquire(self) -> None:
        """Make the directory private and take its lock."""
        self._ensure_private_dir()
        lock_path = self.endpoints.lock_file
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise RuntimeDirError(f"cannot open lock file {lock_path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise AlreadyRunningError(
                f"another encored{who} is already running on {self.path}; "
                "stop it first, or give this one its own --runtime-dir"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise RuntimeDirError(f"cannot lock {lock_path}: {exc}") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        # Sockets left by a daemon that was killed would make clients connect
        # to nothing; we hold the lock, so nobody else is using them.
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        endpoints = self.endpoints
        for endpoint in (endpoints.events, endpoints.events_in, endpoints.requests):
            path = Path(endpoint.removeprefix("ipc://"))
            try:
                if stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()
            except FileNotFoundError:
                pass

    def _ensure_private_dir(self) -> None:
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir(mode=0o700, exist_ok=True)
            info = path.lstat()
        except OSError as exc:
            raise RuntimeDirError(
                f"cannot create runtime directory {path}: {exc}"
            ) from exc
        if not stat.S_ISDIR(info.st_mode):
            raise RuntimeDirError(f"runtime directory {path} is not a directory")
        if info.st_uid != os.getuid():
            raise RuntimeDirError(
                f"runtime directory {path} belongs to uid {info.st_uid}, not to "
                f"us (uid {os.getuid()}); refusing to put sockets there"
            )
        if stat.S_IMODE(info.st_mode) & 0o077:
            try:
                os.chmod(path, 0o700)
            except OSError as exc:
                raise RuntimeDirError(
                    f"runtime directory {path} is open to other users and "
                    f"cannot be made private: {exc}"
                ) from exc

    def release(self) -> None:
        """Remove the socket files, then release the lock.

        The directory and lock file stay.  Call it after the sockets are
        closed: the files go while the lock is still held, so no new
        daemon's sockets can be removed by mistake.
        """
        if self._lock_fd is not None:
            try:
                self._remove_sockets()
            except OSError:
                pass  # the next daemon removes them; never a reason to fail
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> RuntimeDir:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
