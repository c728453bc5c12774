"""Locks between processes and machines that share a directory (encore 0.8).

Two kinds of lock share one name ``<dir>/<name>``:

* ``FileLock`` is exclusive. Its holder owns the file ``<name>.lock``,
  whose content says who holds it: by default the host name, pid, user
  name and user id of the process and the lock's ``uid`` (a fresh random
  one per ``FileLock`` object unless given), one ``field=value`` per line.
  ``get_data()`` returns that content.
* ``SharedFileLock`` is shared. Its holders each own one entry in the
  directory ``<name>.shared/``; any number may hold it at once.

An exclusive lock waits while shared holders exist, and shared holders
wait while an exclusive lock exists. The handshake leaves no moment where
both hold: an exclusive locker first creates ``<name>.lock`` and only
then waits for ``<name>.shared/`` to be empty (removing its lock file
again if it gives up); a shared locker first adds its entry and only then
looks for ``<name>.lock``, and if it finds one removes its entry and
tries again later. Whichever order their steps interleave in, at least
one of the two sees the other. A waiting exclusive locker has created the
lock file already, so new shared holders keep out of its way and it is
not starved by a stream of readers.

How the lock file is created
----------------------------
The content is written to a temporary file next to the lock, which is then
hard-linked to ``<name>.lock``; the link fails if the lock exists. We use
``link`` rather than ``open(O_CREAT | O_EXCL)`` because exclusive create
is not atomic on NFS version 2 and some older servers and clients, while
``link`` is, and because the lock file appears with its whole content (no
reader sees it empty). A reply lost on NFS can make a ``link`` that
succeeded report an error, so success is judged by the temporary file's
link count (2 when the link exists), not by the call's result.

Breaking locks
--------------
A holder that dies leaves its lock behind: locks are never released by
garbage collection or at exit. ``force_timeout`` (> 0) lets a waiter
break such a lock: when the same holder's content has been seen
unchanged for ``force_timeout`` seconds of this waiter's own clock (no
clock is compared between machines), the waiter removes it and goes on.
``force_break()`` removes every holder at once.

Several waiters usually judge one dead holder stale at about the same
moment, and the second must not remove the lock the first has just
taken. So a waiter breaks an exclusive lock only while it holds the
*break guard* ``<name>.break`` (a file made by ``link`` like the lock
itself, held for the few system calls of one break): under it, it reads
the lock again and removes it only if it still has the content judged
stale, by renaming it to a private name and checking that name's
content. Renaming first means that what is checked is what is removed;
and since no other waiter can rename the lock meanwhile, the lock is
never taken away, even for a moment, from a holder that is not the one
judged stale. A waiter that finds the guard held skips its break (the
holder of the guard is doing it) and polls again. A guard left by a
waiter that died inside those few calls is itself broken once seen
unchanged for ``force_timeout``. The one case left is a holder judged
stale that was alive after all and released between the guard holder's
read and its rename, with a new holder taking the lock in that gap: a
holder that keeps a lock past ``force_timeout`` accepts that it can
lose it.

Shared entries need no guard: each entry has a unique name and is never
rewritten, so renaming one away can only take the stale holder's entry.

Private files
-------------
The temporary file a locker links from and the names locks are renamed
to while being removed start with ``.`` and are
``.<name>.<tag>-<pid>@<host>-<random>`` (``host`` a short hash of the host
name), so that whoever cleans a shared directory can tell whose they are
(``private_file_owner``). A waiting locker whose temporary file was
removed writes a new one.

Times and errors: ``timeout`` and ``force_timeout`` are in seconds, 0
meaning no limit. ``release()`` raises ``LockError`` unless this lock
object holds the lock; file-system errors propagate as ``OSError``.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import secrets
import socket
import time
from types import TracebackType

__all__ = ["LockError", "FileLock", "SharedFileLock", "private_file_owner", "HOST_TAG"]

LOCK_SUFFIX = ".lock"
SHARED_SUFFIX = ".shared"
BREAK_SUFFIX = ".break"

#: A short, file-name-safe tag of this host, part of private file names.
HOST_TAG = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()
HOST_TAG = HOST_TAG[:8]


def private_file_owner(filename: str) -> tuple[int, str] | None:
    """``(pid, host tag)`` of a lock's private file name, or ``None``.

    ``filename`` is a base name as ``_private_name`` makes them:
    ``.<name>.<tag>-<pid>@<host>-<random>``.
    """
    if not filename.startswith("."):
        return None
    head, _, rest = filename.rpartition("@")
    host, dash, _random = rest.partition("-")
    pid_text = head.rpartition("-")[2]
    if not (dash and host and pid_text.isdigit()):
        return None
    return int(pid_text), host


class LockError(Exception):
    """A lock operation that cannot be done (for instance releasing a lock
    this object does not hold)."""


def _default_data(uid: str) -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name is not an error here
        user = ""
    return (
        f"host={socket.gethostname()}\n"
        f"pid={os.getpid()}\n"
        f"user={user}\n"
        f"user_id={os.getuid() if hasattr(os, 'getuid') else ''}\n"
        f"uid={uid}\n"
    )


def _read(path: str) -> str | None:
    """The content of ``path`` as text, or ``None`` if it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except (FileNotFoundError, NotADirectoryError):
        return None


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _link_exclusive(temp: str, target: str) -> bool:
    """Hard-link ``temp`` to ``target`` unless ``target`` exists.

    Returns whether the link exists now. Judged by ``temp``'s link count,
    since NFS may report a link that was made as failed (lost reply).
    Raises ``FileNotFoundError`` if ``temp`` is gone.
    """
    try:
        os.link(temp, target)
    except FileExistsError:
        pass
    except FileNotFoundError:
        raise
    except OSError:
        if os.stat(temp).st_nlink != 2:
            raise
    return os.stat(temp).st_nlink == 2


class _Stale:
    """Tracks how long each observed holder has been seen unchanged."""

    def __init__(self) -> None:
        self._first_seen: dict[str, tuple[str, float]] = {}

    def age(self, ident: str, content: str) -> float:
        """Seconds since ``content`` was first seen under ``ident``."""
        now = time.monotonic()
        seen = self._first_seen.get(ident)
        if seen is None or seen[0] != content:
            self._first_seen[ident] = (content, now)
            return 0.0
        return now - seen[1]

    def forget(self, ident: str) -> None:
        """Drop the record of ``ident`` (it was broken or went away)."""
        self._first_seen.pop(ident, None)


class _BaseLock:
    """What the exclusive and the shared lock have in common."""

    def __init__(
        self,
        name: str,
        dir: str | None = None,
        poll_interval: float = 0.01,
        timeout: float = 0,
        force_timeout: float = 0,
        uid: str | None = None,
        data: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name or "\0" in name:
            raise ValueError(f"invalid lock name {name!r}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, not {poll_interval!r}")
        if timeout < 0 or force_timeout < 0:
            raise ValueError("timeout and force_timeout must be >= 0 (0: no limit)")
        if data is not None and not isinstance(data, str):
            raise TypeError(f"data must be a str, not {type(data).__name__}")
        base = name if dir is None else os.path.join(os.fspath(dir), name)
        #: Path of the lock without suffix: ``<dir>/<name>``.
        self.path = os.path.abspath(base)
        self.name = name
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.force_timeout = force_timeout
        self.uid = uid if uid is not None else secrets.token_hex(8)
        #: What this lock writes to identify itself as the holder.
        self.data = data if data is not None else _default_data(self.uid)
        self.lock_path = self.path + LOCK_SUFFIX
        self.shared_path = self.path + SHARED_SUFFIX
        self._held = False

    # -- helpers ---------------------------------------------------------------

    def _private_name(self, tag: str) -> str:
        # Starts with "." so that stores sharing the directory never take
        # it for a key; the random part keeps concurrent lockers apart.
        directory, base = os.path.split(self.path)
        return os.path.join(
            directory,
            f".{base}.{tag}-{os.getpid()}@{HOST_TAG}-{secrets.token_hex(6)}",
        )

    def _write_private(self, tag: str) -> str:
        path = self._private_name(tag)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            data = self.data.encode("utf-8")
            while data:
                data = data[os.write(fd, data) :]
            # No fsync: a lock means nothing after a crash of its machine
            # (its holders are gone too), and close() makes the content
            # visible to other NFS clients before the link is made.
        finally:
            os.close(fd)
        return path

    def _remove_if(self, path: str, expected: str | None) -> bool:
        """Remove ``path`` if its content is ``expected`` (any if ``None``).

        Renames it away first so that what is checked is what is removed;
        puts it back (without overwriting a newer one) if it changed.
        """
        moved = self._private_name("break")
        try:
            os.rename(path, moved)
        except (FileNotFoundError, NotADirectoryError):
            return False
        content = _read(moved)
        if expected is None or content == expected:
            os.unlink(moved)
            return True
        try:
            os.link(moved, path)
        except FileExistsError:
            pass
        os.unlink(moved)
        return False

    def _shared_entries(self) -> list[str]:
        try:
            return sorted(os.listdir(self.shared_path))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _deadline(self, timeout: float | None) -> float | None:
        limit = self.timeout if timeout is None else timeout
        return time.monotonic() + limit if limit > 0 else None

    @staticmethod
    def _expired(deadline: float | None) -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def _maybe_break(self, stale: _Stale, ident: str, path: str, content: str) -> None:
        if self.force_timeout > 0 and stale.age(ident, content) >= self.force_timeout:
            self._remove_if(path, content)
            stale.forget(ident)

    def _break_stale_exclusive(self, stale: _Stale) -> None:
        content = _read(self.lock_path)
        if content is None or self.force_timeout <= 0:
            return
        if stale.age(LOCK_SUFFIX, content) < self.force_timeout:
            return
        guard = self.path + BREAK_SUFFIX
        temp = self._write_private("guard")
        try:
            if not _link_exclusive(temp, guard):
                # Another waiter is breaking the lock now, or died doing so.
                held = _read(guard)
                if held is not None:
                    self._maybe_break(stale, BREAK_SUFFIX, guard, held)
                return
            try:
                # Read again under the guard: a waiter that broke the stale
                # lock before we took the guard may hold the lock now.
                if _read(self.lock_path) == content:
                    self._remove_if(self.lock_path, content)
            finally:
                self._remove_if(guard, self.data)
            stale.forget(LOCK_SUFFIX)
        finally:
            _unlink_quietly(temp)

    # -- public ----------------------------------------------------------------

    def get_data(self) -> str | None:
        """The content of the exclusive lock file (who holds it), or ``None``."""
        return _read(self.lock_path)

    def holders(self) -> list[str]:
        """The content of every holder: the exclusive one, then shared ones."""
        found = []
        exclusive = _read(self.lock_path)
        if exclusive is not None:
            found.append(exclusive)
        for entry in self._shared_entries():
            content = _read(os.path.join(self.shared_path, entry))
            if content is not None:
                found.append(content)
        return found

    def locked(self) -> bool:
        """Whether anyone holds the lock, exclusively or shared."""
        return os.path.exists(self.lock_path) or bool(self._shared_entries())

    def acquired(self) -> bool:
        """Whether this lock object holds the lock now."""
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until nobody holds the lock; ``False`` if ``timeout`` passed.

        ``timeout`` defaults to the lock's own (0: no limit). Does not take
        the lock: someone else may take it before the caller does.
        """
        deadline = self._deadline(timeout)
        while self.locked():
            if self._expired(deadline):
                return False
            time.sleep(self.poll_interval)
        return True

    def force_break(self) -> None:
        """Remove the lock file and every shared entry, whoever holds them."""
        self._remove_if(self.lock_path, None)
        for entry in self._shared_entries():
            self._remove_if(os.path.join(self.shared_path, entry), None)
        try:
            os.rmdir(self.shared_path)
        except OSError:
            pass

    def acquire(self) -> bool:
        """Take the lock, polling every ``poll_interval`` seconds.

        Returns ``True`` once held, ``False`` when ``timeout`` (> 0) passed
        first. Breaks a holder seen unchanged for ``force_timeout`` (> 0).

        Raises
        ------
        LockError
            If this lock object holds the lock already (it is not
            re-entrant).
        """
        raise NotImplementedError

    def release(self) -> None:
        """Release the lock (``LockError`` unless this object holds it)."""
        raise NotImplementedError

    def __enter__(self):
        if not self.acquire():
            raise LockError(f"timed out after {self.timeout}s waiting for {self.path}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, uid={self.uid!r})"


class FileLock(_BaseLock):
    """An exclusive lock: the file ``<dir>/<name>.lock``.

    Parameters
    ----------
    name : str
        Name of the lock; with ``dir=None`` it is a path (relative to the
        current directory).
    dir : str, optional
        Directory of the lock.
    poll_interval : float
        Seconds between attempts while waiting.
    timeout : float
        Seconds ``acquire`` waits before returning ``False`` (0: forever).
    force_timeout : float
        Seconds a holder may be seen unchanged before a waiter breaks its
        lock (0: never).
    uid : str, optional
        Identifier written to the lock file (default: random per object).
    data : str, optional
        The whole content of the lock file instead of the default; it must
        differ between lock objects, since it is how a lock knows its own.
    """

    def acquired(self) -> bool:
        """Whether this lock object holds the lock now."""
        return self._held and _read(self.lock_path) == self.data

    def acquire(self) -> bool:
        """Take the lock; see ``_BaseLock.acquire`` for the contract.

        Creates the lock file first, then waits for shared holders to
        leave; gives the file up again on timeout.
        """
        if self.acquired():
            raise LockError(f"{self!r} holds the lock already")
        deadline = self._deadline(None)
        stale = _Stale()
        temp = self._write_private("new")
        try:
            while True:
                try:
                    if _link_exclusive(temp, self.lock_path):
                        break
                except FileNotFoundError:
                    # Our temporary file was removed by someone cleaning
                    # the directory (it looked abandoned): write another.
                    if _read(self.lock_path) == self.data:
                        break
                    temp = self._write_private("new")
                    continue
                self._break_stale_exclusive(stale)
                if self._expired(deadline):
                    return False
                time.sleep(self.poll_interval)
        finally:
            _unlink_quietly(temp)
        self._held = True
        # The lock file keeps new shared holders out; wait for the others.
        while True:
            entries = self._shared_entries()
            if not entries:
                return True
            if self._expired(deadline):
                self._held = False
                self._remove_if(self.lock_path, self.data)
                return False
            if self.force_timeout > 0:
                for entry in entries:
                    path = os.path.join(self.shared_path, entry)
                    content = _read(path)
                    if content is not None:
                        self._maybe_break(stale, entry, path, content)
            time.sleep(self.poll_interval)

    def release(self) -> None:
        """Remove the lock file.

        Raises
        ------
        LockError
            If there is no lock file, or it holds another holder's content
            (the lock was broken and maybe taken by someone else).
        """
        held, self._held = self._held, False
        content = _read(self.lock_path)
        if not held or content != self.data:
            if content is None:
                raise LockError(f"{self.path} is not locked")
            raise LockError(f"{self.path} is held by another holder:\n{content}")
        if not self._remove_if(self.lock_path, self.data):
            raise LockError(f"{self.path} was taken by another holder while releasing")


class SharedFileLock(_BaseLock):
    """A shared lock: one entry per holder in ``<dir>/<name>.shared/``.

    Same parameters as ``FileLock``. Any number of ``SharedFileLock``
    objects hold the lock at once; none while a ``FileLock`` of the same
    name holds it or waits for it.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._entry: str | None = None

    def acquired(self) -> bool:
        """Whether this lock object holds the lock now."""
        return self._entry is not None and (
            _read(os.path.join(self.shared_path, self._entry)) == self.data
        )

    def _register(self) -> str:
        entry = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(6)}"
        temp = self._write_private("new")
        try:
            while True:
                try:
                    # Not makedirs(exist_ok=True): it raises FileExistsError
                    # when the last holder removes the directory between
                    # its mkdir and its check that the directory is there.
                    os.mkdir(self.shared_path)
                except FileExistsError:
                    pass
                try:
                    # Written outside the directory and renamed in, so
                    # that an entry always has its whole content.
                    os.rename(temp, os.path.join(self.shared_path, entry))
                    return entry
                except FileNotFoundError:
                    # The last holder removed the directory meanwhile, or
                    # someone cleaning it removed our temporary file.
                    if not os.path.exists(temp):
                        temp = self._write_private("new")
                    continue
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise

    def _unregister(self, entry: str) -> bool:
        removed = self._remove_if(os.path.join(self.shared_path, entry), self.data)
        try:
            os.rmdir(self.shared_path)
        except OSError:
            pass  # other holders remain, or someone removed it already
        return removed

    def acquire(self) -> bool:
        """Take the lock; see ``_BaseLock.acquire`` for the contract.

        Registers an entry first, then checks for an exclusive lock and
        backs off (removing the entry) while there is one.
        """
        if self.acquired():
            raise LockError(f"{self!r} holds the lock already")
        deadline = self._deadline(None)
        stale = _Stale()
        while True:
            if not os.path.exists(self.lock_path):
                entry = self._register()
                if not os.path.exists(self.lock_path):
                    self._entry = entry
                    return True
                self._unregister(entry)
            self._break_stale_exclusive(stale)
            if self._expired(deadline):
                return False
            time.sleep(self.poll_interval)

    def release(self) -> None:
        """Remove this lock's entry.

        Raises
        ------
        LockError
            If this object holds no entry (never acquired, released, or
            broken by someone else).
        """
        entry, self._entry = self._entry, None
        if entry is None:
            raise LockError(f"{self!r} does not hold {self.path}")
        if not self._unregister(entry):
            raise LockError(f"{self!r}'s entry in {self.shared_path} was broken")
