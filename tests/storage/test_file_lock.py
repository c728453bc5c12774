"""encore.storage.file_lock: exclusive and shared locks in a directory,
contended for by real processes (tests/storage/lock_child.py)."""

import getpass
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time

import pytest

from encore.storage.file_lock import (
    HOST_TAG,
    FileLock,
    LockError,
    SharedFileLock,
    private_file_owner,
)
from encored.testing import wait_until

CHILD = pathlib.Path(__file__).with_name("lock_child.py")
DEADLINE = 60.0


class Children:
    """Child processes started by one test, killed by pid if left over."""

    def __init__(self, env):
        self.env = env
        self.procs = []

    def start(self, *args):
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), *map(str, args)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def finish(self, proc):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (out, err)
        return out

    def cleanup(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture
def children(child_env):
    kids = Children(child_env)
    yield kids
    kids.cleanup()


def start_holder(children, tmp_path, kind, name="res"):
    """A child holding ``kind`` lock ``name``; returns (proc, release path)."""
    ready = tmp_path / f"{kind}-{len(children.procs)}.ready"
    release = tmp_path / f"{kind}-{len(children.procs)}.release"
    proc = children.start("hold", kind, tmp_path, name, ready, release)
    wait_until(
        lambda: ready.exists() or proc.poll() is not None, DEADLINE, "the holder"
    )
    assert proc.poll() is None, proc.communicate()
    return proc, release


# -- exclusive lock, one process ------------------------------------------------


def test_lock_file_identifies_holder(tmp_path):
    lock = FileLock("res", dir=str(tmp_path), uid="u-123")
    assert not lock.locked() and not lock.acquired()
    assert lock.get_data() is None
    assert lock.acquire() is True
    path = tmp_path / "res.lock"
    assert path.is_file()
    data = lock.get_data()
    assert data == path.read_text()
    assert f"host={socket.gethostname()}\n" in data
    assert f"pid={os.getpid()}\n" in data
    assert f"user={getpass.getuser()}\n" in data
    assert f"user_id={os.getuid()}\n" in data
    assert "uid=u-123\n" in data
    assert lock.locked() and lock.acquired()
    lock.release()
    assert not path.exists()
    assert not lock.locked() and not lock.acquired()
    # No temporary files are left next to the lock.
    assert list(tmp_path.iterdir()) == []


def test_custom_data_and_name_without_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lock = FileLock("here", data="me, myself\n")
    with lock:
        assert (tmp_path / "here.lock").read_text() == "me, myself\n"
        assert FileLock("here").get_data() == "me, myself\n"
    assert not (tmp_path / "here.lock").exists()


def test_release_errors(tmp_path):
    lock = FileLock("res", dir=str(tmp_path))
    with pytest.raises(LockError, match="not locked"):
        lock.release()
    other = FileLock("res", dir=str(tmp_path))
    assert other.acquire()
    with pytest.raises(LockError, match="another holder"):
        lock.release()
    # The failed release took nothing from the holder.
    assert other.acquired() and (tmp_path / "res.lock").exists()
    with pytest.raises(LockError, match="holds the lock already"):
        other.acquire()
    other.release()
    with pytest.raises(LockError):
        other.release()


def test_same_uid_objects_do_not_share_the_lock(tmp_path):
    a = FileLock("res", dir=str(tmp_path), uid="same")
    b = FileLock("res", dir=str(tmp_path), uid="same", timeout=0.05)
    assert a.acquire()
    assert not b.acquired()
    assert b.acquire() is False
    with pytest.raises(LockError):
        b.release()
    a.release()


def test_timeout_returns_false_after_the_timeout(tmp_path):
    holder = FileLock("res", dir=str(tmp_path))
    assert holder.acquire()
    waiter = FileLock("res", dir=str(tmp_path), timeout=0.3)
    start = time.monotonic()
    assert waiter.acquire() is False
    assert time.monotonic() - start >= 0.3
    assert holder.acquired() and not waiter.acquired()
    with pytest.raises(LockError, match="timed out"):
        with waiter:
            pass
    holder.release()
    with waiter:
        assert waiter.acquired()


def test_force_break_and_wait(tmp_path):
    a = FileLock("res", dir=str(tmp_path))
    assert a.acquire()
    b = FileLock("res", dir=str(tmp_path))
    assert b.wait(timeout=0.1) is False
    b.force_break()
    assert not b.locked()
    assert b.wait(timeout=0.1) is True
    assert not a.acquired()
    with pytest.raises(LockError):
        a.release()


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"poll_interval": 0}, ValueError),
        ({"timeout": -1}, ValueError),
        ({"force_timeout": -0.5}, ValueError),
        ({"data": b"bytes"}, TypeError),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error):
    with pytest.raises(error):
        FileLock("res", dir=str(tmp_path), **kwargs)
    with pytest.raises(error):
        SharedFileLock("res", dir=str(tmp_path), **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_bad_name(tmp_path):
    for name in ("", "a\0b", None):
        with pytest.raises(ValueError):
            FileLock(name, dir=str(tmp_path))


def test_missing_directory_is_an_os_error(tmp_path):
    lock = FileLock("res", dir=str(tmp_path / "nope"))
    with pytest.raises(OSError):
        lock.acquire()


# -- exclusive lock, several processes --------------------------------------------


def test_other_process_waits_until_released(tmp_path, children):
    proc, release = start_holder(children, tmp_path, "exclusive")
    lock = FileLock("res", dir=str(tmp_path), timeout=0.2)
    assert lock.locked()
    assert f"pid={proc.pid}\n" in lock.get_data()
    assert lock.acquire() is False
    release.touch()
    lock.timeout = DEADLINE
    assert lock.acquire() is True
    assert f"pid={os.getpid()}\n" in lock.get_data()
    lock.release()
    assert children.finish(proc) == "ok\n"


def test_abandoned_lock_stays_until_force_timeout(tmp_path, children):
    ready = tmp_path / "ready"
    proc = children.start("abandon", tmp_path, "res", ready)
    assert children.finish(proc) == ""
    assert ready.exists()
    # The dead holder's lock was not released by garbage collection.
    stale = (tmp_path / "res.lock").read_text()
    assert f"pid={proc.pid}\n" in stale
    assert FileLock("res", dir=str(tmp_path), timeout=0.2).acquire() is False
    breaker = FileLock("res", dir=str(tmp_path), force_timeout=0.3, timeout=DEADLINE)
    start = time.monotonic()
    assert breaker.acquire() is True
    assert time.monotonic() - start >= 0.3
    assert breaker.get_data() != stale and breaker.acquired()
    breaker.release()


def test_waiters_forcing_one_stale_lock_at_once(tmp_path, children):
    # Six processes judge the same dead holder stale at about the same
    # moment, round after round. Exactly one may break it; the others
    # must then wait for that holder's fresh lock instead of breaking it
    # too (which let two hold at once, or one lose its lock).
    locks, signals = tmp_path / "locks", tmp_path / "signals"
    locks.mkdir()
    signals.mkdir()
    rounds, force_timeout = 8, 0.2
    procs = [
        children.start("force", locks, "res", signals, rounds, force_timeout)
        for _ in range(6)
    ]
    for i in range(rounds):
        (locks / "res.lock").write_text(f"host=gone\npid=0\nuid=dead-{i}\n")
        (signals / f"go-{i}").touch()
        wait_until(
            lambda i=i: (
                len(list(signals.glob(f"done-{i}-*"))) == len(procs)
                or any(p.poll() is not None for p in procs)
            ),
            DEADLINE,
            f"round {i}",
        )
    for proc in procs:
        assert children.finish(proc) == "ok\n"
    # No lock, guard, or private file left behind.
    assert list(locks.iterdir()) == []


def test_private_file_names_tell_their_owner(tmp_path):
    lock = FileLock("res", dir=str(tmp_path))
    name = os.path.basename(lock._private_name("new"))
    assert name.startswith(".res.new-")
    assert private_file_owner(name) == (os.getpid(), HOST_TAG)
    assert private_file_owner("res.lock") is None
    assert private_file_owner(".res.new-x@h-1") is None


def test_waiter_whose_temporary_file_is_removed_writes_another(tmp_path):
    holder = FileLock("res", dir=str(tmp_path))
    assert holder.acquire()
    waiter = FileLock("res", dir=str(tmp_path), timeout=DEADLINE)
    result = []
    thread = threading.Thread(target=lambda: result.append(waiter.acquire()))
    thread.start()
    try:
        wait_until(
            lambda: list(tmp_path.glob(".res.new-*")), DEADLINE, "the waiter's file"
        )
        for path in tmp_path.glob(".res.new-*"):
            path.unlink()  # as a cleaner of abandoned files would
    finally:
        holder.release()
        thread.join(DEADLINE)
    assert result == [True] and waiter.acquired()
    waiter.release()
    assert list(tmp_path.iterdir()) == []


def test_processes_exclude_each_other(tmp_path, children):
    counter = tmp_path / "counter"
    counter.write_text("0")
    procs = [children.start("count", tmp_path, "res", counter, 40) for _ in range(4)]
    for proc in procs:
        assert children.finish(proc) == "ok\n"
    assert counter.read_text() == "160"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter"]


# -- shared lock ------------------------------------------------------------------


def test_shared_holders_at_once(tmp_path, children):
    holders = [start_holder(children, tmp_path, "shared") for _ in range(3)]
    mine = SharedFileLock("res", dir=str(tmp_path), timeout=DEADLINE)
    assert mine.acquire() is True
    assert mine.acquired() and mine.locked()
    assert len(mine.holders()) == 4
    assert any(f"pid={os.getpid()}\n" in h for h in mine.holders())
    # An exclusive lock waits while shared holders exist.
    assert FileLock("res", dir=str(tmp_path), timeout=0.2).acquire() is False
    for proc, release in holders:
        release.touch()
        assert children.finish(proc) == "ok\n"
    assert mine.acquired()
    mine.release()
    assert not mine.locked()
    with pytest.raises(LockError):
        mine.release()
    assert not (tmp_path / "res.lock").exists()
    assert not (tmp_path / "res.shared").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_exclusive_waits_for_shared_to_leave(tmp_path, children):
    proc, release = start_holder(children, tmp_path, "shared")
    lock = FileLock("res", dir=str(tmp_path), timeout=DEADLINE)
    release_at = time.monotonic() + 0.3

    def release_later():
        while time.monotonic() < release_at:
            time.sleep(0.01)
        release.touch()

    t = threading.Thread(target=release_later)
    t.start()
    assert lock.acquire() is True
    assert time.monotonic() >= release_at
    t.join()
    assert children.finish(proc) == "ok\n"
    lock.release()


def test_shared_waits_for_exclusive(tmp_path, children):
    proc, release = start_holder(children, tmp_path, "exclusive")
    shared = SharedFileLock("res", dir=str(tmp_path), timeout=0.2)
    assert shared.acquire() is False
    assert not shared.acquired()
    # Backing off left no entry behind.
    assert not (tmp_path / "res.shared").exists() or not list(
        (tmp_path / "res.shared").iterdir()
    )
    release.touch()
    assert children.finish(proc) == "ok\n"
    shared.timeout = DEADLINE
    with shared:
        assert shared.acquired()
    assert not shared.locked()


def test_waiting_exclusive_keeps_new_readers_out(tmp_path):
    reader = SharedFileLock("res", dir=str(tmp_path))
    assert reader.acquire()
    writer = FileLock("res", dir=str(tmp_path), timeout=0.5)

    result = []
    t = threading.Thread(target=lambda: result.append(writer.acquire()))
    t.start()
    wait_until(
        lambda: (tmp_path / "res.lock").exists(), DEADLINE, "the writer's lock file"
    )
    late = SharedFileLock("res", dir=str(tmp_path), timeout=0.1)
    assert late.acquire() is False
    reader.release()
    t.join()
    assert result == [True]
    writer.release()


def test_exclusive_gives_up_its_file_on_timeout(tmp_path):
    reader = SharedFileLock("res", dir=str(tmp_path))
    assert reader.acquire()
    writer = FileLock("res", dir=str(tmp_path), timeout=0.2)
    assert writer.acquire() is False
    assert not (tmp_path / "res.lock").exists()
    assert reader.acquired()
    reader.release()


def test_force_timeout_breaks_stale_shared_entry(tmp_path):
    stale = SharedFileLock("res", dir=str(tmp_path))
    assert stale.acquire()
    del stale  # not released by garbage collection
    writer = FileLock("res", dir=str(tmp_path), force_timeout=0.2, timeout=DEADLINE)
    assert writer.acquire() is True
    assert writer.holders() == [writer.get_data()]
    writer.release()


def test_readers_and_writers_in_processes(tmp_path, children):
    work = tmp_path / "work"
    work.mkdir()
    procs = [
        children.start("mixed", kind, tmp_path, "res", work, 25)
        for kind in ("exclusive", "shared", "shared", "exclusive", "shared")
    ]
    for proc in procs:
        assert children.finish(proc) == "ok\n"
    assert list(work.iterdir()) == []
    assert not FileLock("res", dir=str(tmp_path)).locked()
