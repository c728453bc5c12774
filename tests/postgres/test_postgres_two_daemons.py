"""Two encored on two runtime directories sharing one PostgreSQL table.

What one host writes through its daemon is heard on the other host's bus,
once; the database restarted under both daemons: each reconnects, reports
the gap on its bus and serves again; the issue's story (1 GiB set through
daemon A, streamed back through daemon B) with memory measured.
"""

import json
import os
import subprocess
import sys
import threading

import pytest

from encore.events.event_manager import EventManager
from encore.storage.events import (
    StoreChangesMissedEvent,
    StoreDeleteEvent,
    StoreSetEvent,
    StoreUpdateEvent,
)
from encore_client import BusBridge, RemoteStore, ZmqTransport
from encored.testing import package_root, short_tempdir, wait_until

pytest.importorskip("psycopg")


def config(pg, table):
    return (
        "[daemon]\nheartbeat_interval = 0.1\n\n[stores.team]\n"
        f'type = "postgres"\ndsn = "{pg.dsn}"\ntable = "{table}"\n'
    )


class Heard:
    """The store events one bridge delivers, in order."""

    def __init__(self, runtime_dir):
        self.manager = EventManager()
        self.events = []
        self.lock = threading.Lock()
        for kind in (
            StoreSetEvent,
            StoreUpdateEvent,
            StoreDeleteEvent,
            StoreChangesMissedEvent,
        ):
            self.manager.connect(kind, self.record)
        self.bridge = BusBridge(self.manager, runtime_dir, timeout=10)

    def record(self, event):
        with self.lock:
            self.events.append(event)

    def keyed(self):
        with self.lock:
            return [
                (type(e).__name__, e.key, e.metadata)
                for e in self.events
                if not isinstance(e, StoreChangesMissedEvent)
            ]

    def missed(self):
        with self.lock:
            return [e for e in self.events if isinstance(e, StoreChangesMissedEvent)]

    def wait_key(self, key, kind=StoreSetEvent, timeout=30):
        wait_until(
            lambda: any(
                type(e) is kind and getattr(e, "key", None) == key
                for e in list(self.events)
            ),
            timeout,
            f"{kind.__name__}({key!r})",
        )


@pytest.fixture
def two_daemons(pg, table, make_daemon):
    """(runtime_a, runtime_b, daemon_a, daemon_b), both serving ``team``."""
    with short_tempdir("enca") as a, short_tempdir("encb") as b:
        daemon_a = make_daemon(config(pg, table), directory=a)
        daemon_b = make_daemon(config(pg, table), directory=b)
        try:
            yield a, b, daemon_a, daemon_b
        finally:
            # Before their runtime directories go.
            for daemon in (daemon_a, daemon_b):
                daemon.stop()


@pytest.fixture
def hearing(two_daemons):
    """A bridge on each daemon's bus, joined: (heard_on_a, heard_on_b)."""
    a, b, _, _ = two_daemons
    heard = [Heard(a), Heard(b)]
    try:
        for each in heard:
            each.bridge.start()
            wait_until(lambda each=each: each.bridge.joined, 10, "bridge joined")
        yield heard
    finally:
        for each in heard:
            each.bridge.close()


def test_a_set_through_daemon_a_is_one_event_on_daemon_b(two_daemons, hearing):
    a, b, _, _ = two_daemons
    on_a, on_b = hearing
    writer = RemoteStore("team", a, timeout=10)
    reader = RemoteStore("team", b, timeout=10)
    try:
        writer.set("report", (b"x" * 100000, {"author": "a"}))
        on_b.wait_key("report")
        # The daemon B serves what A wrote, at once.
        assert reader.get_metadata("report") == {"author": "a"}
        assert reader.to_bytes("report") == b"x" * 100000
        writer.update_metadata("report", {"checked": True})
        writer.delete("report")
        # A last write as a marker: notifications come in commit order, so
        # once it is heard nothing more about "report" is on its way.
        writer.set("marker", (b"", {}))
        on_b.wait_key("marker")
        on_a.wait_key("marker")
        expected = [
            ("StoreSetEvent", "report", {"author": "a"}),
            ("StoreUpdateEvent", "report", {"author": "a", "checked": True}),
            ("StoreDeleteEvent", "report", {"author": "a", "checked": True}),
            ("StoreSetEvent", "marker", {}),
        ]
        assert on_b.keyed() == expected
        # Daemon A's own writes are on its bus once each, not twice.
        assert on_a.keyed() == expected
        # And the other way round.
        reader.set("back", (b"1", {"from": "b"}))
        on_a.wait_key("back")
        assert on_a.keyed()[-1] == ("StoreSetEvent", "back", {"from": "b"})
    finally:
        writer.disconnect()
        reader.disconnect()


def status_of(runtime_dir):
    with ZmqTransport(runtime_dir, timeout=10) as transport:
        return transport.request("status").result["service"]["postgres"]["team"]


@pytest.mark.slow
def test_database_restarted_under_both_daemons(pg, two_daemons, hearing):
    a, b, daemon_a, daemon_b = two_daemons
    on_a, on_b = hearing
    store_a = RemoteStore("team", a, timeout=30)
    store_b = RemoteStore("team", b, timeout=30)
    try:
        store_a.set("before", (b"1", {}))
        on_b.wait_key("before")
        pg.restart()
        for heard in (on_a, on_b):
            wait_until(lambda h=heard: h.missed(), 60, "StoreChangesMissedEvent")
        for runtime in (a, b):
            wait_until(
                lambda r=runtime: status_of(r)["state"] == "connected", 60, "connected"
            )
            assert status_of(runtime)["reconnections"] == 1
        # Both serve again with no manual step: reads and writes, and the
        # changes of one are heard on the other's bus.
        assert store_b.to_bytes("before") == b"1"
        store_b.set("after", (b"2", {"n": 2}))
        on_a.wait_key("after")
        assert store_a.to_bytes("after") == b"2"
        store_a.set("again", (b"3", {}))
        on_b.wait_key("again")
        for heard in (on_a, on_b):
            assert len(heard.missed()) == 1
            assert "lost" in heard.missed()[0].reason
        assert daemon_a.process.poll() is None and daemon_b.process.poll() is None
    finally:
        store_a.disconnect()
        store_b.disconnect()


STORY = r"""
import hashlib, io, json, sys, threading
from encore.events.event_manager import EventManager
from encore.storage.events import StoreSetEvent
from encore_client import BusBridge, RemoteStore


def peak_kib():
    # VmHWM starts afresh at exec; ru_maxrss would carry the parent's peak.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


class Generated(io.RawIOBase):
    '''size bytes: a 1 MiB random block, each copy numbered; hashed as read.'''

    def __init__(self, size):
        self.left = size
        self.index = 0
        self.block = hashlib.shake_256(b"story").digest(1 << 20)
        self.current = memoryview(b"")
        self.hash = hashlib.sha256()

    def readable(self):
        return True

    def readinto(self, buffer):
        if not self.current:
            if self.left <= 0:
                return 0
            block = self.index.to_bytes(8, "big") + self.block[8:]
            self.index += 1
            self.current = memoryview(block[: min(len(block), self.left)])
        n = min(len(buffer), len(self.current))
        buffer[:n] = self.current[:n]
        self.hash.update(self.current[:n])
        self.current = self.current[n:]
        self.left -= n
        return n


role, runtime = sys.argv[1], sys.argv[2]
store = RemoteStore("team", runtime, timeout=120)
if role == "writer":
    data = Generated(int(sys.argv[3]))
    store.set("report", (data, {"author": "host a"}))
    print(json.dumps({"sha": data.hash.hexdigest(), "peak": peak_kib()}))
else:
    manager = EventManager()
    heard = []
    got = threading.Event()

    def on_set(event):
        heard.append(event.key)
        if event.key == "report":
            got.set()

    manager.connect(StoreSetEvent, on_set)
    with BusBridge(manager, runtime, timeout=10) as bridge:
        while not bridge.joined:
            got.wait(0.01)
        print("ready", flush=True)
        assert got.wait(300), "no StoreSetEvent('report')"
        value = store.get("report")
        digest = hashlib.sha256()
        size = 0
        with value.data as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        # One more write through this daemon: once its event is here,
        # every event about "report" would have been too.
        store.set("marker", (b"", {}))
        while "marker" not in heard:
            got.wait(0.01)
    print(json.dumps({"sha": digest.hexdigest(), "size": size, "heard": heard,
                      "metadata": value.metadata, "peak": peak_kib()}))
store.disconnect()
"""


def peak_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


@pytest.mark.slow
def test_story_one_gib_set_on_host_a_streams_back_on_host_b(two_daemons):
    a, b, daemon_a, daemon_b = two_daemons
    size = 1 << 30
    env = dict(os.environ, PYTHONPATH=str(package_root()))

    def child(*args):
        return subprocess.Popen(
            [sys.executable, "-c", STORY, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    reader = child("reader", str(b))
    writer = None
    try:
        assert reader.stdout.readline() == "ready\n", reader.stderr.read()
        writer = child("writer", str(a), str(size))
        w_out, w_err = writer.communicate(timeout=600)
        assert writer.returncode == 0, w_err
        r_out, r_err = reader.communicate(timeout=600)
        assert reader.returncode == 0, r_err
    finally:
        for process in (reader, writer):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    wrote, read = json.loads(w_out), json.loads(r_out)
    assert read["size"] == size
    assert read["sha"] == wrote["sha"]
    assert read["metadata"] == {"author": "host a"}
    assert read["heard"] == ["report", "marker"]
    peaks = {
        "writer": wrote["peak"],
        "reader": read["peak"],
        "daemon a": peak_kib(daemon_a.pid),
        "daemon b": peak_kib(daemon_b.pid),
    }
    print("peak RSS KiB:", peaks)
    # A value held whole anywhere would be >= 1 GiB.
    assert all(peak < 200 * 1024 for peak in peaks.values()), peaks
