"""Story 3: 1 GiB through the daemon between two processes, memory measured.

Process A streams a generated 1 GiB value into ``RemoteStore('docs')``
(never holding it), process B waits for the ``StoreSetEvent`` and streams
it back, hashing as it reads.  Both see the event; the hashes match; the
peak resident memory of A, B and the daemon stays far below the value's
size.  A second test kills a client in the middle of an upload and checks
that the old value stays intact and the store stays usable.
"""

import io
import json
import os
import signal
import time

import pytest

from encore_client import RemoteStore

SIZE = 1 << 30
MIB = 1 << 20

CONFIG = """
[stores.docs]
type = "filesystem"
path = "{base}/docs"
create = true
"""

PEAK = r"""
def peak_kib():
    # VmHWM starts afresh at exec; ru_maxrss would carry the parent's peak.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
"""

GENERATOR = r"""
import hashlib, io


class Generated(io.RawIOBase):
    '''SIZE bytes of a 1 MiB random block, each copy numbered; hashed as read.'''
    def __init__(self, size, seed=b"encore"):
        self.left = size
        self.index = 0
        self.block = hashlib.shake_256(seed).digest(1 << 20)
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
"""

WRITER = (
    PEAK
    + GENERATOR
    + r"""
import json, sys, threading
from encore.events.event_manager import EventManager
from encore.storage.events import StoreSetEvent
from encore_client import BusBridge, RemoteStore
runtime, size = sys.argv[1], int(sys.argv[2])
manager = EventManager()
seen = threading.Event()
manager.connect(StoreSetEvent, lambda e: seen.set(), filter={"key": "report"})
with BusBridge(manager, runtime):
    store = RemoteStore("docs", runtime, event_manager=manager, timeout=60)
    data = Generated(size)
    store.set("report", (data, {"author": "x"}))
    got = seen.wait(60)
    store.disconnect()
print(json.dumps({"sha": data.hash.hexdigest(), "event": got,
                  "maxrss": peak_kib()}))
"""
)

READER = (
    PEAK
    + r"""
import hashlib, json, sys, threading
from encore.events.event_manager import EventManager
from encore.storage.events import StoreSetEvent
from encore_client import BusBridge, RemoteStore
runtime = sys.argv[1]
manager = EventManager()
seen = threading.Event()
manager.connect(StoreSetEvent, lambda e: seen.set(), filter={"key": "report"})
with BusBridge(manager, runtime):
    print("ready", flush=True)
    assert seen.wait(120)
    store = RemoteStore("docs", runtime, event_manager=manager, timeout=60)
    value = store.get("report")
    digest = hashlib.sha256()
    count = 0
    with value.data as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            count += len(chunk)
    store.disconnect()
print(json.dumps({"sha": digest.hexdigest(), "size": count, "metadata": value.metadata,
                  "maxrss": peak_kib()}))
"""
)


def _peak_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_one_gib_between_two_processes(own_daemon, child_python):
    base = own_daemon.base
    daemon = own_daemon(CONFIG.format(base=base))
    runtime = str(base / "rt")
    reader = child_python(READER, runtime)
    assert reader.stdout.readline().strip() == b"ready"
    started = time.monotonic()
    writer = child_python(WRITER, runtime, str(SIZE))
    w_out, w_err = writer.communicate(timeout=240)
    assert writer.returncode == 0, w_err.decode()
    r_out, r_err = reader.communicate(timeout=240)
    assert reader.returncode == 0, r_err.decode()
    elapsed = time.monotonic() - started
    wrote, read = json.loads(w_out), json.loads(r_out)
    assert wrote["event"] is True
    assert read["size"] == SIZE
    assert read["sha"] == wrote["sha"]
    assert read["metadata"] == {"author": "x"}
    assert (base / "docs" / "report.data").stat().st_size == SIZE
    # Peak resident memory (KiB): a held value would be >= 1 GiB.
    daemon_peak = _peak_kib(daemon.pid)
    print(
        f"1 GiB up and down in {elapsed:.1f} s; peak RSS KiB: writer "
        f"{wrote['maxrss']}, reader {read['maxrss']}, daemon {daemon_peak}"
    )
    assert wrote["maxrss"] < 200 * 1024
    assert read["maxrss"] < 200 * 1024
    assert daemon_peak < 200 * 1024


KILLED_WRITER = (
    GENERATOR
    + r"""
import sys
from encore_client import RemoteStore
store = RemoteStore("docs", sys.argv[1], timeout=60)
def progress(sent):
    if sent >= 32 << 20:
        print("halfway", flush=True)
store.set("precious", (Generated(1 << 30), {"new": True}), progress=progress)
"""
)


def test_client_killed_mid_upload_keeps_old_value(own_daemon, child_python):
    base = own_daemon.base
    own_daemon(CONFIG.format(base=base), env={"ENCORED_TRANSFER_TIMEOUT": "1"})
    runtime = str(base / "rt")
    store = RemoteStore("docs", runtime)
    store.set("precious", (io.BytesIO(b"old value"), {"old": True}))
    writer = child_python(KILLED_WRITER, runtime)
    assert writer.stdout.readline().strip() == b"halfway"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert store.to_bytes("precious") == b"old value"
    assert store.get_metadata("precious") == {"old": True}
    # The abandoned upload is given up after the transfer timeout; the key
    # is writable again and nothing of the upload is left behind.
    store.set("precious", (io.BytesIO(b"newer"), {"v": 2}))
    assert store.to_bytes("precious") == b"newer"
    leftovers = [n for n in os.listdir(base / "docs") if n.startswith(".tmp")]
    deadline = time.monotonic() + 10
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.05)
        leftovers = [n for n in os.listdir(base / "docs") if n.startswith(".tmp")]
    assert leftovers == []
    store.disconnect()


def test_daemon_restart_under_a_running_store(own_daemon):
    base = own_daemon.base
    config = CONFIG.format(base=base)
    daemon = own_daemon(config)
    store = RemoteStore("docs", base / "rt", timeout=5)
    store.set("k", (io.BytesIO(b"before"), {"n": 1}))
    big = os.urandom(9 * MIB)
    store.set("big", (io.BytesIO(big), {}))
    stream = store.get("big").data
    assert stream.read(MIB) == big[:MIB]
    daemon.stop()
    daemon.start()
    # Plain calls recover by themselves on the same proxy.
    assert store.to_bytes("k") == b"before"
    store.set("k", (io.BytesIO(b"after"), {"n": 2}))
    assert store.get_metadata("k") == {"n": 2}
    # A stream opened on the old daemon fails clearly instead of hanging.
    with pytest.raises(Exception, match="daemon restarted|unknown data stream"):
        while stream.read(MIB):
            pass
    stream.close()
    assert store.to_bytes("big") == big
    store.disconnect()


def test_sigterm_during_an_upload_stops_cleanly(own_daemon, child_python):
    base = own_daemon.base
    daemon = own_daemon(CONFIG.format(base=base))
    runtime = str(base / "rt")
    store = RemoteStore("docs", runtime)
    store.set("precious", (io.BytesIO(b"old value"), {"old": True}))
    store.disconnect()
    writer = child_python(KILLED_WRITER, runtime)
    assert writer.stdout.readline().strip() == b"halfway"
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 10
    writer.kill()
    writer.wait()
    daemon.start()
    store = RemoteStore("docs", runtime)
    assert store.to_bytes("precious") == b"old value"
    assert [n for n in os.listdir(base / "docs") if n.startswith(".tmp")] == []
    store.disconnect()
