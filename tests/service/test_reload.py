"""SIGHUP reloads the configuration without dropping connected clients."""

import io
import signal

import pytest

from encore.events.api import EventManager
from encore.storage.events import StoreSetEvent
from encore_client import BusBridge, RemoteStore, UnknownStoreError, list_stores

from .conftest import wait_until

BEFORE = """
[daemon]
heartbeat_interval = 0.1

[stores.keep]
type = "memory"

[stores.files]
type = "filesystem"
path = "{base}/files"
create = true
watch = true

[stores.changes]
type = "memory"

[stores.joined]
type = "joined"
stores = ["changes", "keep"]
"""

AFTER = """
[daemon]
heartbeat_interval = 0.1

[stores.keep]
type = "memory"

[stores.changes]
type = "sqlite"
location = "{base}/changes.db"

[stores.joined]
type = "joined"
stores = ["changes", "keep"]

[stores.added]
type = "filesystem"
path = "{base}/added"
create = true
watch = true
"""


def reload(daemon, text=None):
    """Write ``text`` as the config (if given), SIGHUP, wait for READY=1."""
    if text is not None:
        daemon.config_path.write_text(text)
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_notification("RELOADING=1")
    daemon.wait_notification("READY=1")


def status_of(runtime):
    from encore_client import ZmqTransport

    with ZmqTransport(runtime, timeout=5) as transport:
        return transport.request("status").result


@pytest.fixture
def served(make_daemon, runtime_dir, tmp_path):
    base = tmp_path
    daemon = make_daemon(BEFORE.format(base=base))
    manager = EventManager()
    seen = []
    manager.connect(StoreSetEvent, lambda e: seen.append((e.source.name, e.key)))
    with BusBridge(manager, runtime_dir, timeout=10) as bridge:
        yield daemon, bridge, seen, base


def test_stores_added_removed_changed_without_dropping_clients(served, runtime_dir):
    daemon, bridge, seen, base = served
    keep = RemoteStore("keep", runtime_dir, timeout=5)
    files = RemoteStore("files", runtime_dir, timeout=5)
    changes = RemoteStore("changes", runtime_dir, timeout=5)
    keep.set("k", (io.BytesIO(b"kept in memory"), {"n": 1}))
    files.set("f", (io.BytesIO(b"file"), {}))
    changes.set("c", (io.BytesIO(b"old instance"), {}))
    instance = bridge.instance_id
    pid = daemon.pid

    reload(daemon, AFTER.format(base=base))

    # Same process, same bus: the bridge never noticed a restart.
    assert daemon.pid == pid and bridge.instance_id == instance
    assert bridge.stats["restarts"] == 0 and bridge.stats["lost"] == 0
    # The unchanged memory store is the very same object: its data is there.
    assert keep.to_bytes("k") == b"kept in memory"
    # The removed store is gone, clearly.
    with pytest.raises(UnknownStoreError, match="no store named 'files'"):
        files.to_bytes("f")
    # The changed store is a new (SQLite) instance; the joined store that
    # is built on it was rebuilt on the new instance.
    assert not changes.exists("c")
    changes.set("c2", (io.BytesIO(b"new instance"), {}))
    joined = RemoteStore("joined", runtime_dir, timeout=5)
    assert joined.to_bytes("c2") == b"new instance"
    assert joined.to_bytes("k") == b"kept in memory"
    # The added store works, and its events reach the connected bridge.
    added = RemoteStore("added", runtime_dir, timeout=5)
    added.set("a", (io.BytesIO(b"added"), {}))
    wait_until(lambda: ("added", "a") in seen, 10, "event from the added store")
    assert {s["name"] for s in list_stores(runtime_dir)} == {
        "keep",
        "changes",
        "joined",
        "added",
    }
    status = status_of(runtime_dir)
    assert {s["name"] for s in status["stores"]} == {
        "keep",
        "changes",
        "joined",
        "added",
    }
    reloads = status["service"]["reload"]
    assert reloads["reloads"] == 1 and reloads["failures"] == 0
    assert reloads["last_changes"] == {
        "added": ["added"],
        "changed": ["changes", "joined"],
        "removed": ["files"],
    }
    for store in (keep, files, changes, joined, added):
        store.disconnect()


@pytest.mark.parametrize(
    "bad, complaint",
    [
        ("[stores.x\ntype = ", "not valid TOML"),
        ('[stores.x]\ntype = "floppy"\n', "unknown store type 'floppy'"),
        (
            '[stores.x]\ntype = "filesystem"\npath = "/nonexistent/enc"\n',
            "cannot be opened",
        ),
    ],
    ids=["toml", "schema", "unopenable"],
)
def test_bad_file_is_rejected_and_old_configuration_stays(
    served, runtime_dir, bad, complaint
):
    daemon, bridge, seen, base = served
    keep = RemoteStore("keep", runtime_dir, timeout=5)
    keep.set("k", (io.BytesIO(b"still here"), {}))
    reload(daemon, bad)
    status = status_of(runtime_dir)
    reloads = status["service"]["reload"]
    assert reloads["reloads"] == 0 and reloads["failures"] == 1
    assert any(complaint in line for line in reloads["last_error"]), reloads
    assert complaint in daemon.stderr()
    assert "the previous configuration stays in force" in daemon.stderr()
    # Everything as before.
    assert {s["name"] for s in status["stores"]} == {
        "keep",
        "files",
        "changes",
        "joined",
    }
    assert keep.to_bytes("k") == b"still here"
    files = RemoteStore("files", runtime_dir, timeout=5)
    files.set("f", (io.BytesIO(b"file"), {}))
    wait_until(lambda: ("files", "f") in seen, 10, "the old stores' events")
    # And a good file afterwards is applied.
    reload(daemon, AFTER.format(base=base))
    reloads = status_of(runtime_dir)["service"]["reload"]
    assert reloads["reloads"] == 1 and reloads["last_error"] == []
    keep.disconnect()
    files.disconnect()


def test_reload_while_clients_call(served, runtime_dir):
    """Calls made during reloads all succeed (none is dropped or refused)."""
    import threading

    daemon, bridge, seen, base = served
    keep = RemoteStore("keep", runtime_dir, timeout=10)
    errors, done = [], threading.Event()
    count = [0]

    def hammer():
        while not done.is_set():
            try:
                keep.set("n", (io.BytesIO(str(count[0]).encode()), {}))
                count[0] += 1
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        for text in (AFTER, BEFORE, AFTER):
            reload(daemon, text.format(base=base))
    finally:
        done.set()
        worker.join(30)
    assert errors == []
    assert count[0] > 0
    assert keep.to_bytes("n") == str(count[0] - 1).encode()
    keep.disconnect()
