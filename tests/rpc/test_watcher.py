"""Story 4: changes made by anyone in a watched store directory are events.

Against the shared daemon's watched filesystem store ``fs``: an editor's
save (temporary file renamed over the data file, or a backup-and-rewrite
save), a plain ``cp`` and ``rm``, each gives exactly the expected events;
the daemon's own writes are reported once.  The overflow path is tested
on a watcher in this process, with a real directory and real watchdog.
"""

import io
import logging
import os
import subprocess
import threading
import time

import pytest

from encore.events.event_manager import EventManager
from encore.storage.events import (
    StoreDeleteEvent,
    StoreModificationEvent,
    StoreSetEvent,
)
from encore.storage.filesystem_store import FileSystemStore, init_shared_store
from encore_client import RemoteStore, StoreResyncEvent
from encored.stores.watcher import StoreWatcher


class Recorder:
    """Records events; ``exactly`` proves that no further event is coming.

    To see that nothing more arrives without sleeping, ``exactly`` drops a
    marker file into the watched directory after the action and waits for
    the marker's own event: the watcher decides keys in the order their
    file events came, so anything still due for the tested keys arrives
    before the marker's event does.
    """

    def __init__(self, directory):
        self.directory = directory
        self.events = []
        self.cond = threading.Condition()
        self.markers = 0

    def __call__(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait_for(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out; events so far: {self.events}")
                self.cond.wait(remaining)

    def real(self):
        return [
            e for e in self.events if not str(getattr(e, "key", "")).startswith("mark")
        ]

    def exactly(self, count, timeout=10.0):
        """Wait for ``count`` events, then prove that no more come."""
        self.wait_for(lambda: len(self.real()) >= count, timeout)
        self.markers += 1
        marker = f"mark{self.markers}"
        (self.directory / f"{marker}.data").write_bytes(b"")
        self.wait_for(
            lambda: any(getattr(e, "key", None) == marker for e in self.events),
            timeout,
        )
        with self.cond:
            real = self.real()
            assert len(real) == count, real
            return real

    def clear(self):
        with self.cond:
            del self.events[:]


@pytest.fixture
def fs_events(rpc_env):
    store = RemoteStore("fs", rpc_env.runtime_dir, event_manager=rpc_env.event_manager)
    for key in store.query_keys():
        store.delete(key)
    rpc_env.settle()
    recorder = Recorder(rpc_env.base / "fs")
    rpc_env.event_manager.connect(
        StoreModificationEvent, recorder, filter={"source": store}
    )
    try:
        yield store, rpc_env.base / "fs", recorder
    finally:
        rpc_env.event_manager.disconnect(StoreModificationEvent, recorder)
        store.disconnect()


def test_editor_save_by_rename_is_one_set_event(fs_events):
    store, directory, events = fs_events
    store.set("report", (io.BytesIO(b"old"), {"v": 1}))
    events.exactly(1)
    events.clear()
    temp = directory / ".report.data.swp"
    temp.write_bytes(b"new text")
    os.rename(temp, directory / "report.data")
    [event] = events.exactly(1)
    assert isinstance(event, StoreSetEvent)
    assert event.key == "report"
    assert event.metadata == {"v": 1}
    assert event.source is store
    assert store.to_bytes("report") == b"new text"


def test_backup_and_rewrite_save_is_one_set_event(fs_events):
    store, directory, events = fs_events
    (directory / "notes.data").write_bytes(b"first")
    events.exactly(1)
    events.clear()
    # vim's default: move the original aside, write anew, drop the backup.
    os.rename(directory / "notes.data", directory / "notes.data~")
    (directory / "notes.data").write_bytes(b"second version")
    os.unlink(directory / "notes.data~")
    [event] = events.exactly(1)
    assert isinstance(event, StoreSetEvent) and event.key == "notes"
    assert store.to_bytes("notes") == b"second version"
    events.clear()
    # A slow editor: the file is gone for longer than the quiet period
    # (the scenario itself is a pause, not a wait for something).
    os.rename(directory / "notes.data", directory / "notes.data~")
    time.sleep(0.3)
    (directory / "notes.data").write_bytes(b"third version")
    os.unlink(directory / "notes.data~")
    [event] = events.exactly(1)
    assert isinstance(event, StoreSetEvent) and event.key == "notes"


def test_cp_and_rm_give_one_event_each(fs_events, tmp_path):
    store, directory, events = fs_events
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(300_000))
    subprocess.run(["cp", str(source), str(directory / "copied.data")], check=True)
    [event] = events.exactly(1)
    assert isinstance(event, StoreSetEvent) and event.key == "copied"
    assert event.metadata == {}
    assert store.to_bytes("copied") == source.read_bytes()
    events.clear()
    subprocess.run(["rm", str(directory / "copied.data")], check=True)
    [event] = events.exactly(1)
    assert isinstance(event, StoreDeleteEvent) and event.key == "copied"
    assert not store.exists("copied")


def test_own_writes_are_reported_once(fs_events):
    store, _directory, events = fs_events
    store.set("mine", (io.BytesIO(b"x" * 5_000_000), {"a": 1}))
    store.set_metadata("mine", {"a": 2})
    store.delete("mine")
    got = events.exactly(3)
    assert [(type(e), e.key) for e in got] == [
        (StoreSetEvent, "mine"),
        (StoreSetEvent, "mine"),
        (StoreDeleteEvent, "mine"),
    ]


def test_own_writes_through_a_composite_are_reported_once(fs_events, rpc_env):
    store, _directory, events = fs_events
    joined = RemoteStore("jfs", rpc_env.runtime_dir)
    joined.set("via-joined", (io.BytesIO(b"j"), {"j": 1}))
    [event] = events.exactly(1)  # the member's own event; no watcher echo
    assert isinstance(event, StoreSetEvent) and event.key == "via-joined"
    assert store.to_bytes("via-joined") == b"j"
    joined.disconnect()


def test_metadata_file_written_by_hand(fs_events):
    store, directory, events = fs_events
    # A metadata file alone is not a key: no event, until its data comes.
    (directory / "hand.metadata").write_text('{"author": "me"}')
    assert events.exactly(0) == []
    assert not store.exists("hand")
    (directory / "hand.data").write_bytes(b"text")
    [event] = events.exactly(1)
    assert event.key == "hand" and event.metadata == {"author": "me"}
    assert store.get_metadata("hand") == {"author": "me"}
    events.clear()
    (directory / "hand.metadata").write_text('{"author": "you"}')
    [event] = events.exactly(1)
    assert isinstance(event, StoreSetEvent) and event.metadata == {"author": "you"}


def test_rm_of_the_data_file_deletes_the_key(fs_events):
    store, directory, events = fs_events
    store.set("doc", (io.BytesIO(b"content"), {"m": 1}))
    events.exactly(1)
    events.clear()
    os.unlink(directory / "doc.data")
    [event] = events.exactly(1)
    assert isinstance(event, StoreDeleteEvent) and event.key == "doc"
    assert (directory / "doc.metadata").exists()  # left, but not a key
    assert not store.exists("doc")
    with pytest.raises(KeyError):
        store.get("doc")
    assert "doc" not in store.query_keys()
    events.clear()
    # Removing the leftover later says nothing more.
    os.unlink(directory / "doc.metadata")
    assert events.exactly(0) == []


def test_rm_of_both_files_of_a_large_key_is_one_delete(fs_events):
    store, directory, events = fs_events
    store.set("big", (io.BytesIO(b"x" * 50_000_000), {"m": 1}))
    events.exactly(1)
    events.clear()
    subprocess.run(
        ["rm", str(directory / "big.data"), str(directory / "big.metadata")],
        check=True,
    )
    [event] = events.exactly(1)
    assert isinstance(event, StoreDeleteEvent) and event.key == "big"
    assert not store.exists("big")


class ReadingListener:
    """Reads a key's whole value the moment its Set event arrives."""

    def __init__(self, store):
        self.store = store
        self.read = []

    def __call__(self, event):
        if isinstance(event, StoreSetEvent) and not event.key.startswith("mark"):
            self.read.append((event.key, self.store.to_bytes(event.key)))


def test_a_file_open_for_writing_gives_no_event_until_closed(fs_events, rpc_env):
    store, directory, events = fs_events
    listener = ReadingListener(store)
    rpc_env.event_manager.connect(StoreSetEvent, listener)
    chunks = [os.urandom(100_000) for _ in range(5)]
    try:
        with open(directory / "slow.data", "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                f.flush()
                # Each pause is longer than the quiet period: the old
                # watcher reported the partial file here.
                time.sleep(0.3)
            # Open for writing all along: the marker's event proves the
            # key was not decided.
            assert events.exactly(0) == []
        [event] = events.exactly(1)
        assert isinstance(event, StoreSetEvent) and event.key == "slow"
        assert listener.read == [("slow", b"".join(chunks))]
        assert events.exactly(1) == [event]
    finally:
        rpc_env.event_manager.disconnect(StoreSetEvent, listener)


def test_overflow_rescans_and_resyncs(tmp_path):
    init_shared_store(str(tmp_path))
    manager = EventManager()
    store = FileSystemStore(str(tmp_path), event_manager=manager)
    store.connect()
    store.set("kept", (io.BytesIO(b"1"), {}))
    store.set("gone", (io.BytesIO(b"2"), {}))
    watcher = StoreWatcher(store, "t", quiet=0.05)
    watcher.start()
    recorder = Recorder(tmp_path)
    manager.connect(StoreModificationEvent, recorder)
    manager.connect(StoreResyncEvent, recorder)
    try:
        (tmp_path / "new.data").write_bytes(b"3")
        os.unlink(tmp_path / "gone.data")
        os.unlink(tmp_path / "gone.metadata")
        # What watchdog logs when the kernel queue overflowed.
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        got = recorder.exactly(3)
    finally:
        watcher.stop()
        store.disconnect()
    changes = sorted(
        (type(e).__name__, e.key) for e in got if not isinstance(e, StoreResyncEvent)
    )
    assert changes == [("StoreDeleteEvent", "gone"), ("StoreSetEvent", "new")]
    resync = [e for e in got if isinstance(e, StoreResyncEvent)]
    assert len(resync) == 1 and resync[0].reason == "overflow"


def test_rescan_after_lost_events(tmp_path):
    """Changes made while nothing was watching come out of a rescan."""
    init_shared_store(str(tmp_path))
    manager = EventManager()
    store = FileSystemStore(str(tmp_path), event_manager=manager)
    store.connect()
    store.set("a", (io.BytesIO(b"1"), {}))
    watcher = StoreWatcher(store, "t", quiet=0.05)
    watcher.start()
    watcher._observer.stop()  # simulate lost events: stop receiving them
    watcher._observer.join()
    recorder = Recorder(tmp_path)
    manager.connect(StoreModificationEvent, recorder)
    manager.connect(StoreResyncEvent, recorder)
    try:
        (tmp_path / "a.data").write_bytes(b"changed")
        (tmp_path / "b.data").write_bytes(b"new")
        assert recorder.events == []  # nothing watched: nothing reported
        watcher.request_rescan("overflow")
        recorder.wait_for(lambda: len(recorder.events) >= 3)
        got = list(recorder.events)
        assert len(got) == 3
    finally:
        watcher._observer = None
        watcher.stop()
        store.disconnect()
    assert sorted(e.key for e in got[:2]) == ["a", "b"]
    assert isinstance(got[2], StoreResyncEvent)
    assert sorted(got[2].changed) == ["a", "b"]


@pytest.fixture
def local_watcher(tmp_path):
    """A watcher in this process on a real directory, with real watchdog."""
    init_shared_store(str(tmp_path / "s"))
    manager = EventManager()
    store = FileSystemStore(str(tmp_path / "s"), event_manager=manager)
    store.connect()
    watcher = StoreWatcher(store, "t", quiet=0.05)
    watcher.start()
    recorder = Recorder(tmp_path / "s")
    manager.connect(StoreModificationEvent, recorder)
    try:
        yield store, tmp_path / "s", recorder, watcher
    finally:
        watcher.stop()
        store.disconnect()


def test_chmod_and_utime_do_not_hold_a_key_open(local_watcher):
    store, directory, events, watcher = local_watcher
    assert watcher.closes  # Linux: close-after-write is tracked
    (directory / "k.data").write_bytes(b"one")
    events.exactly(1)
    events.clear()
    os.chmod(directory / "k.data", 0o600)  # no content change: no event
    assert events.exactly(0) == []
    os.utime(directory / "k.data", ns=(10**18, 10**18))  # a new mtime: a Set
    [event] = events.exactly(1)
    assert isinstance(event, StoreSetEvent)
    assert watcher.writing() == {}
    events.clear()
    (directory / "k.data").write_bytes(b"two")  # still seen afterwards
    [event] = events.exactly(1)
    assert store.to_bytes("k") == b"two"


def test_a_hard_link_is_complete_at_once(local_watcher, tmp_path):
    store, directory, events, watcher = local_watcher
    outside = tmp_path / "outside"
    outside.write_bytes(b"linked")
    os.link(outside, directory / "linked.data")  # no open(), so no close
    [event] = events.exactly(1)
    assert isinstance(event, StoreSetEvent) and event.key == "linked"
    assert watcher.writing() == {}


def test_a_file_renamed_while_open_is_waited_for_under_its_new_name(
    local_watcher,
):
    store, directory, events, watcher = local_watcher
    with open(directory / "draft.data", "wb") as f:
        f.write(b"part one, ")
        f.flush()
        os.rename(directory / "draft.data", directory / "final.data")
        f.write(b"part two")
        f.flush()
        assert events.exactly(0) == []  # neither name decided while open
        assert watcher.writing() == {"final": {"final.data"}}
    [event] = events.exactly(1)  # draft never was a key: no Delete
    assert isinstance(event, StoreSetEvent) and event.key == "final"
    assert store.to_bytes("final") == b"part one, part two"


def test_a_rescan_forgets_open_files(local_watcher):
    store, directory, events, watcher = local_watcher
    with open(directory / "open.data", "wb") as f:
        f.write(b"so far")
        f.flush()
        assert events.exactly(0) == []
        # Events were lost: the close may be among them, so the rescan
        # reports what is there now.
        watcher.request_rescan("overflow")
        events.wait_for(lambda: any(e.key == "open" for e in events.real()))
        assert watcher.writing() == {}


def test_a_file_replaced_by_rename_while_open_is_not_held(local_watcher):
    store, directory, events, watcher = local_watcher
    with open(directory / "k.data", "wb") as f:
        f.write(b"partial")
        f.flush()
        assert events.exactly(0) == []
        # rsync (or the store itself) renames a complete file over it:
        # whoever still writes the old one writes a file that is gone.
        (directory / ".k.data.tmp").write_bytes(b"complete")
        os.rename(directory / ".k.data.tmp", directory / "k.data")
        [event] = events.exactly(1)
        assert isinstance(event, StoreSetEvent) and event.key == "k"
        assert store.to_bytes("k") == b"complete"
        assert watcher.writing() == {}
