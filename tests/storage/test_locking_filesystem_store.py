"""LockingFileSystemStore: the conformance suite, the write lock, and other
clients' changes heard as events (another process on the same directory,
tests/storage/locking_store_child.py)."""

import io
import json
import logging
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from datetime import timedelta

import pytest

from encore.events.api import EventManager
from encore.storage.abstract_store import StoreError
from encore.storage.events import (
    StoreChangesMissedEvent,
    StoreDeleteEvent,
    StoreEvent,
    StoreSetEvent,
    StoreUpdateEvent,
)
from encore.storage.file_lock import FileLock
from encore.storage.filesystem_store import FileSystemStore, init_shared_store
from encore.storage.locking_filesystem_store import LockingFileSystemStore
from encore.storage.testing import (
    StoreKeyTests,
    StoreReadTests,
    StoreTransactionTests,
    StoreWriteTests,
)
from encored.testing import wait_until

HERE = pathlib.Path(__file__).parent
STORE_CHILD = HERE / "locking_store_child.py"
LOCK_CHILD = HERE / "lock_child.py"
DEADLINE = 60.0


class TestLockingFileSystemStore(
    StoreReadTests,
    StoreWriteTests,
    StoreTransactionTests,
    StoreKeyTests,
    unittest.TestCase,
):
    tracks_created = False

    def make_store(self):
        self._dir = tempfile.TemporaryDirectory(prefix="enclfs")
        init_shared_store(self._dir.name)
        return LockingFileSystemStore(self._dir.name, event_manager=EventManager())

    def destroy_store(self):
        leftovers = [n for n in os.listdir(self._dir.name) if n.startswith(".tmp")]
        lock = os.path.exists(os.path.join(self._dir.name, ".FSStore.write.lock"))
        self._dir.cleanup()
        self.assertEqual(leftovers, [])
        self.assertFalse(lock, "the write lock was left behind")


def start_child(env, script, *args):
    """Start ``script`` with ``args`` in a Python child, text pipes on stdout/err."""
    return subprocess.Popen(
        [sys.executable, str(script), *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Recorder:
    """Collects the events a manager emits, from any thread."""

    def __init__(self, manager, cls=StoreEvent):
        self.events = []
        self._lock = threading.Lock()
        manager.connect(cls, self)

    def __call__(self, event):
        with self._lock:
            self.events.append(event)

    def summary(self):
        with self._lock:
            return [(type(e).__name__, e.key, e.metadata) for e in self.events]


@pytest.fixture
def directory(tmp_path):
    init_shared_store(str(tmp_path))
    return tmp_path


def open_store(directory, **kwargs):
    kwargs.setdefault("event_manager", EventManager())
    store = LockingFileSystemStore(str(directory), **kwargs)
    store.connect()
    return store


@pytest.fixture
def stores():
    opened = []

    def make(directory, **kwargs):
        store = open_store(directory, **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.disconnect()


def test_two_processes_hear_each_other(directory, stores, child_env):
    manager = EventManager()
    recorder = Recorder(manager)
    store = stores(directory, remote_event_poll_interval=0.05, event_manager=manager)
    child = start_child(child_env, STORE_CHILD, "exchange", directory)
    try:
        assert child.stdout.readline() == "ready\n", child.communicate()
        store.set("parent", (io.BytesIO(b"from the parent"), {"by": "parent"}))
        store.update_metadata("parent", {"step": 2})
        wait_until(
            lambda: (
                ("StoreDeleteEvent", "child", {"by": "child", "step": 2})
                in recorder.summary()
            ),
            DEADLINE,
            "the child's delete",
        )
        store.delete("parent")
        out, err = child.communicate(timeout=DEADLINE)
        assert child.returncode == 0, err
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    heard = [tuple(e) for e in json.loads(out)]
    parent_changes = [
        ("StoreSetEvent", "parent", {"by": "parent"}),
        ("StoreUpdateEvent", "parent", {"by": "parent", "step": 2}),
        ("StoreDeleteEvent", "parent", {"by": "parent", "step": 2}),
    ]
    child_changes = [
        ("StoreSetEvent", "child", {"by": "child"}),
        ("StoreUpdateEvent", "child", {"by": "child", "step": 2}),
        ("StoreDeleteEvent", "child", {"by": "child", "step": 2}),
    ]
    # Each heard the other's changes once, in order, and its own only
    # locally (once each).
    assert [e for e in heard if e[1] == "parent"] == parent_changes
    assert [e for e in heard if e[1] == "child"] == child_changes
    mine = [e for e in recorder.summary() if e[1] == "parent"]
    assert mine == parent_changes
    assert [e for e in recorder.summary() if e[1] == "child"] == child_changes
    assert all(e.source is store for e in recorder.events)
    assert store.poll_remote_events() == 0


def test_own_changes_are_not_reported_twice(directory, stores):
    manager = EventManager()
    recorder = Recorder(manager)
    store = stores(directory, remote_event_poll_interval=600, event_manager=manager)
    store.set("k", (io.BytesIO(b"x"), {"a": 1}))
    assert store.poll_remote_events() == 0
    assert recorder.summary() == [("StoreSetEvent", "k", {"a": 1})]


def test_events_for_each_kind_of_write(directory, stores):
    writer = stores(directory, remote_event_poll_interval=600)
    manager = EventManager()
    recorder = Recorder(manager)
    reader = stores(directory, remote_event_poll_interval=600, event_manager=manager)
    writer.set("a", (io.BytesIO(b"1"), {"n": 1}))
    writer.set_data("a", io.BytesIO(b"22"))
    writer.set_metadata("a", {"n": 3})
    writer.update_metadata("a", {"m": 4})
    writer.set_data("fresh", io.BytesIO(b""))
    writer.set_metadata("fresh2", {"x": 1})
    writer.delete("a")
    long_key = "k/" * 200
    writer.set(long_key, (io.BytesIO(b"long"), {"long": True}))
    assert reader.poll_remote_events() == 8
    assert recorder.summary() == [
        ("StoreSetEvent", "a", {"n": 1}),
        ("StoreSetEvent", "a", {"n": 1}),
        ("StoreSetEvent", "a", {"n": 3}),
        ("StoreUpdateEvent", "a", {"n": 3, "m": 4}),
        ("StoreSetEvent", "fresh", {}),
        ("StoreSetEvent", "fresh2", {"x": 1}),
        ("StoreDeleteEvent", "a", {"n": 3, "m": 4}),
        ("StoreSetEvent", long_key, {"long": True}),
    ]
    assert all(e.source is reader for e in recorder.events)
    assert reader.poll_remote_events() == 0


def test_changes_before_connect_are_not_reported(directory, stores):
    writer = stores(directory, remote_event_poll_interval=600)
    writer.set("early", (io.BytesIO(b""), {}))
    manager = EventManager()
    recorder = Recorder(manager)
    reader = stores(directory, remote_event_poll_interval=600, event_manager=manager)
    writer.set("late", (io.BytesIO(b""), {}))
    assert reader.poll_remote_events() == 1
    assert recorder.summary() == [("StoreSetEvent", "late", {})]


def test_transactions_are_logged_on_commit_only(directory, stores):
    writer = stores(directory, remote_event_poll_interval=600)
    manager = EventManager()
    recorder = Recorder(manager, StoreSetEvent)
    reader = stores(directory, remote_event_poll_interval=600, event_manager=manager)
    with pytest.raises(RuntimeError):
        with writer.transaction("rolled back"):
            writer.set("gone", (io.BytesIO(b""), {}))
            raise RuntimeError("roll back")
    assert not reader.exists("gone")
    assert reader.poll_remote_events() == 0
    with writer.transaction("committed"):
        writer.set("t1", (io.BytesIO(b""), {"i": 1}))
        writer.set("t2", (io.BytesIO(b""), {"i": 2}))
        # Nothing is logged before the commit.
        assert reader.poll_remote_events() == 0
    assert reader.poll_remote_events() == 2
    assert recorder.summary() == [
        ("StoreSetEvent", "t1", {"i": 1}),
        ("StoreSetEvent", "t2", {"i": 2}),
    ]


def test_poll_thread_reports_within_the_interval(directory, stores):
    manager = EventManager()
    recorder = Recorder(manager)
    stores(directory, remote_event_poll_interval=0.05, event_manager=manager)
    writer = stores(directory, remote_event_poll_interval=600)
    writer.set("k", (io.BytesIO(b""), {"v": 1}))
    wait_until(
        lambda: recorder.summary() == [("StoreSetEvent", "k", {"v": 1})],
        DEADLINE,
        "event",
    )


def test_disconnect_stops_polling(directory, stores):
    manager = EventManager()
    recorder = Recorder(manager)
    reader = open_store(
        directory, remote_event_poll_interval=0.02, event_manager=manager
    )
    poller = reader._poller
    reader.disconnect()
    assert not poller.is_alive()
    writer = stores(directory, remote_event_poll_interval=600)
    writer.set("k", (io.BytesIO(b""), {}))
    # A connected reader on the same manager hears it; the closed one not.
    stores(directory, remote_event_poll_interval=600, event_manager=manager)
    assert recorder.summary() == []


def test_long_log_is_shortened_and_a_late_reader_is_told(directory, stores):
    writer = stores(
        directory, remote_event_poll_interval=0.01, max_time_delta=timedelta(0)
    )
    writer.log_limit = 2000
    manager = EventManager()
    recorder = Recorder(manager)
    reader = stores(directory, remote_event_poll_interval=600, event_manager=manager)
    log = directory / ".FSStore.changes"
    for i in range(5):
        writer.set(f"old{i}", (io.BytesIO(b""), {"i": i}))
    # Entries older than max_time_delta + 10 poll intervals (0.1 s) go.
    time.sleep(0.2)
    i = 0
    while not log.read_text().startswith('{"dropped"'):
        writer.set(f"new{i}", (io.BytesIO(b""), {"pad": "x" * 100}))
        i += 1
        assert i < 100
    assert log.stat().st_size < 2000
    reader.poll_remote_events()
    kinds = [type(e) for e in recorder.events]
    assert kinds[0] is StoreChangesMissedEvent
    assert "shortened" in recorder.events[0].reason
    # The kept entries still arrive, once each.
    keys = [e.key for e in recorder.events[1:]]
    assert len(keys) == len(set(keys)) and all(k.startswith("new") for k in keys)
    assert reader.poll_remote_events() == 0
    # A reader that kept up is not told anything was missed.
    prompt = stores(directory, remote_event_poll_interval=600)
    prompt_events = Recorder(prompt.event_manager)
    writer.log_limit = 10
    writer.set("after", (io.BytesIO(b""), {}))
    assert prompt.poll_remote_events() == 1
    assert prompt_events.summary() == [("StoreSetEvent", "after", {})]


def test_malformed_log_lines_are_skipped(directory, stores, caplog):
    manager = EventManager()
    recorder = Recorder(manager)
    reader = stores(directory, remote_event_poll_interval=600, event_manager=manager)
    writer = stores(directory, remote_event_poll_interval=600)
    with open(directory / ".FSStore.changes", "ab") as f:
        f.write(b"not json\n")
        f.write(b'{"c": "x", "n": 1, "t": 0, "a": "explode", "k": "k", "m": {}}\n')
        f.write(b"[1, 2]\n")
    writer.set("k", (io.BytesIO(b""), {}))
    with caplog.at_level(logging.WARNING):
        assert reader.poll_remote_events() == 1
    assert caplog.text.count("ignoring a malformed line") == 3
    assert recorder.summary() == [("StoreSetEvent", "k", {})]
    # A half-written line is left for the next poll.
    with open(directory / ".FSStore.changes", "ab") as f:
        f.write(b'{"c": "y", "n": 1, "t": 0, "a": "delete", ')
    assert reader.poll_remote_events() == 0
    with open(directory / ".FSStore.changes", "ab") as f:
        f.write(b'"k": "k", "m": {}}\n')
    assert reader.poll_remote_events() == 1
    assert isinstance(recorder.events[-1], StoreDeleteEvent)


def test_writes_wait_for_the_write_lock(directory, stores, child_env):
    store = stores(directory, remote_event_poll_interval=600)
    ready, release = directory / "ready", directory / "release"
    child = start_child(
        child_env,
        LOCK_CHILD,
        "hold",
        "exclusive",
        directory,
        ".FSStore.write",
        ready,
        release,
    )
    try:
        wait_until(
            lambda: ready.exists() or child.poll() is not None, DEADLINE, "the holder"
        )
        assert child.poll() is None, child.communicate()
        done = threading.Event()
        writer = threading.Thread(
            target=lambda: (store.set("k", (io.BytesIO(b"v"), {})), done.set())
        )
        writer.start()
        # Reads do not wait for the write lock.
        assert store.query_keys() == []
        assert not done.wait(0.3)
        assert not store.exists("k")
        release.touch()
        assert done.wait(DEADLINE)
        writer.join()
        out, err = child.communicate(timeout=DEADLINE)
        assert child.returncode == 0, err
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert store.to_bytes("k") == b"v"


def test_stale_write_lock_is_broken(directory, stores):
    # connect() takes and releases the write lock, so connect first, then
    # leave a lock behind as a dead client would.
    store = stores(directory, remote_event_poll_interval=600, force_lock_timeout=0.3)
    stale = FileLock(".FSStore.write", dir=str(directory))
    assert stale.acquire()
    start = time.monotonic()
    store.set("k", (io.BytesIO(b"v"), {}))
    assert time.monotonic() - start >= 0.3
    assert store.to_bytes("k") == b"v"
    assert not stale.acquired()
    assert not (directory / ".FSStore.write.lock").exists()


def test_writer_killed_in_a_transaction(directory, stores, child_env):
    manager = EventManager()
    recorder = Recorder(manager, StoreSetEvent)
    store = stores(
        directory,
        remote_event_poll_interval=600,
        force_lock_timeout=0.5,
        event_manager=manager,
    )
    store.set("doomed", (io.BytesIO(b"old"), {"doomed": False}))
    child = start_child(child_env, STORE_CHILD, "hang-in-transaction", directory)
    try:
        assert child.stdout.readline() == "in transaction\n", child.communicate()
        assert f"pid={child.pid}\n" in (directory / ".FSStore.write.lock").read_text()
        child.kill()
        child.communicate()
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    # The dead writer's lock stays until force_lock_timeout breaks it; its
    # unfinished write is rolled back and was never logged.
    start = time.monotonic()
    store.set("after", (io.BytesIO(b"new"), {}))
    assert time.monotonic() - start >= 0.5
    assert store.to_bytes("doomed") == b"old"
    assert store.get_metadata("doomed") == {"doomed": False}
    assert store.poll_remote_events() == 0
    assert [e.key for e in recorder.events] == ["doomed", "after"]
    assert not (directory / ".FSStore.write.lock").exists()


def test_plain_filesystem_store_reads_the_same_directory(directory, stores):
    store = stores(directory, remote_event_poll_interval=600)
    store.set("k", (io.BytesIO(b"v"), {"a": 1}))
    plain = FileSystemStore(str(directory), event_manager=EventManager())
    plain.connect()
    try:
        # The lock and log files are no keys.
        assert plain.query_keys() == ["k"]
        assert plain.get_metadata("k") == {"a": 1}
    finally:
        plain.disconnect()


def test_bad_arguments_and_not_connected(directory):
    with pytest.raises(ValueError):
        LockingFileSystemStore(str(directory), remote_event_poll_interval=0)
    with pytest.raises(TypeError):
        LockingFileSystemStore(str(directory), max_time_delta=60)
    with pytest.raises(ValueError):
        LockingFileSystemStore(str(directory), force_lock_timeout=-1)
    store = LockingFileSystemStore(str(directory), event_manager=EventManager())
    with pytest.raises(StoreError, match="not connected"):
        store.set("k", (io.BytesIO(b""), {}))
    (directory / "plain").mkdir()
    with pytest.raises(StoreError, match="init_shared_store"):
        LockingFileSystemStore(
            str(directory / "plain"), event_manager=EventManager()
        ).connect()
    assert sorted(p.name for p in directory.iterdir()) == [".FSStore", "plain"]
    assert list((directory / "plain").iterdir()) == []


def test_update_event_metadata_is_complete(directory, stores):
    writer = stores(directory, remote_event_poll_interval=600)
    manager = EventManager()
    recorder = Recorder(manager, StoreUpdateEvent)
    reader = stores(directory, remote_event_poll_interval=600, event_manager=manager)
    writer.set("k", (io.BytesIO(b""), {"a": 1, "b": 2}))
    writer.update_metadata("k", {"b": 3})
    assert reader.poll_remote_events() == 2
    assert recorder.summary() == [("StoreUpdateEvent", "k", {"a": 1, "b": 3})]
