"""Child process for tests/storage/test_file_lock.py: contends for a lock.

Usage: ``lock_child.py MODE DIR NAME ARGS...``; see ``main`` for the modes.
Prints ``ok`` on success, or what went wrong (the parent asserts on it).
"""

import gc
import os
import sys
import time

from encore.storage.file_lock import FileLock, SharedFileLock

DEADLINE = 60.0


def wait_for(path: str) -> None:
    """Wait until ``path`` exists (the parent's signal), with a deadline."""
    end = time.monotonic() + DEADLINE
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise SystemExit(f"no {path} after {DEADLINE}s")
        time.sleep(0.005)


def touch(path: str) -> None:
    """Create ``path`` (a signal to the parent)."""
    with open(path, "w"):
        pass


def hold(kind: str, directory: str, name: str, ready: str, release: str) -> None:
    """Take the lock, say so, hold it until the parent says release."""
    cls = FileLock if kind == "exclusive" else SharedFileLock
    lock = cls(name, dir=directory, uid=f"child-{os.getpid()}")
    assert lock.acquire()
    touch(ready)
    wait_for(release)
    lock.release()


def abandon(directory: str, name: str, ready: str) -> None:
    """Take the exclusive lock and exit without releasing it, after
    dropping every reference (a lock is not released by garbage collection)."""
    lock = FileLock(name, dir=directory)
    assert lock.acquire()
    del lock
    gc.collect()
    touch(ready)
    os._exit(0)


def count(directory: str, name: str, counter: str, rounds: int) -> None:
    """Increment a counter file ``rounds`` times, read-modify-write under
    the exclusive lock; a marker file created exclusively inside the
    critical section catches two holders at once."""
    lock = FileLock(name, dir=directory, poll_interval=0.001)
    marker = counter + ".inside"
    for _ in range(rounds):
        with lock:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
            with open(counter) as f:
                n = int(f.read())
            time.sleep(0.001)  # widen the window a lost update needs
            with open(counter, "w") as f:
                f.write(str(n + 1))
            os.unlink(marker)


def mixed(kind: str, directory: str, name: str, work: str, rounds: int) -> None:
    """Readers (shared) and writers (exclusive) record themselves in
    ``work`` while holding; each checks that no one it excludes is there."""
    cls = FileLock if kind == "exclusive" else SharedFileLock
    lock = cls(name, dir=directory, poll_interval=0.001)
    me = os.path.join(work, f"{kind[0]}-{os.getpid()}")
    for i in range(rounds):
        with lock:
            touch(me)
            time.sleep(0.002)
            others = [e for e in os.listdir(work) if e != os.path.basename(me)]
            if kind == "exclusive" and others:
                raise SystemExit(f"writer saw {others} in round {i}")
            writers = [e for e in others if e.startswith("e-")]
            if kind == "shared" and writers:
                raise SystemExit(f"reader saw writers {writers} in round {i}")
            os.unlink(me)


def force(directory: str, name: str, signals: str, rounds: int, timeout: float) -> None:
    """In each round wait for the parent's ``go-<i>`` (it has just left a
    stale lock), take the lock with ``force_timeout`` and check, while
    holding, that no one else holds it; then say ``done-<i>-<pid>``."""
    from encore.storage.file_lock import LockError

    marker = os.path.join(signals, "inside")
    for i in range(rounds):
        wait_for(os.path.join(signals, f"go-{i}"))
        lock = FileLock(
            name,
            dir=directory,
            poll_interval=0.001,
            timeout=DEADLINE,
            force_timeout=timeout,
        )
        assert lock.acquire(), f"no lock in round {i}"
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise SystemExit(f"two holders at once in round {i}") from None
        os.close(fd)
        time.sleep(0.005)  # well below force_timeout: nobody may break us
        if not lock.acquired():
            raise SystemExit(f"lost a fresh lock in round {i}")
        os.unlink(marker)
        try:
            lock.release()
        except LockError as error:
            raise SystemExit(f"release failed in round {i}: {error}") from None
        touch(os.path.join(signals, f"done-{i}-{os.getpid()}"))


def main(argv: list[str]) -> None:
    """Dispatch on the mode in ``argv[1]``."""
    mode = argv[1]
    if mode == "hold":
        hold(argv[2], argv[3], argv[4], argv[5], argv[6])
    elif mode == "abandon":
        abandon(argv[2], argv[3], argv[4])
    elif mode == "count":
        count(argv[2], argv[3], argv[4], int(argv[5]))
    elif mode == "mixed":
        mixed(argv[2], argv[3], argv[4], argv[5], int(argv[6]))
    elif mode == "force":
        force(argv[2], argv[3], argv[4], int(argv[5]), float(argv[6]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print("ok", flush=True)


if __name__ == "__main__":
    main(sys.argv)
