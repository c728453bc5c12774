"""Issue 16: real tools in a watched store give exactly the documented events.

Against the shared daemon's watched filesystem store ``fs`` (a real
``encored``, reached through a real bridge): vim (``-es``, backupcopy yes
and no), ``sed -i``, ``cp`` of 1 KiB and 300 MB, ``rsync``, ``mv`` in, out
and within, ``rm`` of one or both files, ``touch``, and writers that
append in ten slow steps.  The table these tests hold the watcher to is in
``docs/service.md`` ("What outside tools give").

The listener reads the key's whole value inside its event callback, the
moment the event arrives: what an application reacting to the event would
see.  Each scenario waits for its events with a deadline, then watches for
a settle window longer than the quiet period and the delete grace (with
watchdog's wait for a move's other half) to prove that nothing more comes.
"""

import hashlib
import io
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from encore.storage.events import (
    StoreDeleteEvent,
    StoreModificationEvent,
    StoreSetEvent,
)
from encore_client import RemoteStore
from encored.stores.watcher import DELETE_GRACE, QUIET_PERIOD

#: Settle windows, both well beyond the quiet period.  After a scenario
#: with a delete or a move, longer than anything the watcher may still owe:
#: watchdog holds an unpaired move 0.5 s, and a vanished key gets
#: DELETE_GRACE quiet periods more.
SETTLE = 1.0
SETTLE_AFTER_REMOVAL = 0.5 + (1 + DELETE_GRACE) * QUIET_PERIOD + 0.75

#: Deadline for the expected events of one scenario (a loaded machine).
DEADLINE = 60.0


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ReadingListener:
    """Records each event with what a ``get`` right after it returned.

    A Set is recorded as ``("set", key, size, sha256)`` of the value read
    in the callback; a Delete as ``("delete", key, exists)``.
    """

    def __init__(self, store):
        self.store = store
        self.records = []
        self.cond = threading.Condition()

    def __call__(self, event):
        if isinstance(event, StoreSetEvent):
            hasher, size = hashlib.sha256(), 0
            with self.store.get(event.key).data as stream:
                while chunk := stream.read(1 << 20):
                    hasher.update(chunk)
                    size += len(chunk)
            record = ("set", event.key, size, hasher.hexdigest())
        elif isinstance(event, StoreDeleteEvent):
            record = ("delete", event.key, self.store.exists(event.key))
        else:
            record = (event.action, event.key)
        with self.cond:
            self.records.append(record)
            self.cond.notify_all()

    def exactly(self, expected, timeout=DEADLINE, settle=SETTLE):
        """Wait for ``len(expected)`` records, then a settle window; compare.

        Order matters only within a key: the watcher decides different
        keys independently.
        """
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.records) < len(expected):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out; expected {expected}, got {self.records}"
                    )
                self.cond.wait(remaining)
        time.sleep(settle)  # the window in which nothing more may arrive
        with self.cond:
            got = list(self.records)
            self.records.clear()
        assert len(got) == len(expected), (got, expected)
        for key in {record[1] for record in expected}:
            assert [r for r in got if r[1] == key] == [
                r for r in expected if r[1] == key
            ], (got, expected)


def set_of(key, data):
    return ("set", key, len(data), digest(data))


def deleted(key):
    return ("delete", key, False)


@pytest.fixture
def fs(rpc_env):
    store = RemoteStore("fs", rpc_env.runtime_dir, event_manager=rpc_env.event_manager)
    for key in store.query_keys():
        store.delete(key)
    rpc_env.settle()
    listener = ReadingListener(store)
    rpc_env.event_manager.connect(
        StoreModificationEvent, listener, filter={"source": store}
    )
    try:
        yield store, rpc_env.base / "fs", listener
    finally:
        rpc_env.event_manager.disconnect(StoreModificationEvent, listener)
        store.disconnect()


def run(*command, cwd=None, stdin=None):
    subprocess.run(list(command), check=True, cwd=cwd, stdin=stdin, timeout=120)


def need(tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it)")


def vim_edit(path, *settings):
    need("vim")
    run(
        "vim",
        "-es",
        "-u",
        "NONE",
        "-i",
        "NONE",
        "-N",
        *[arg for setting in settings for arg in ("-c", f"set {setting}")],
        "-c",
        "%s/old/new/",
        "-c",
        "wq",
        str(path),
    )


def put_file(directory, listener, name, data):
    (directory / f"{name}.data").write_bytes(data)
    listener.exactly([set_of(name, data)])


@pytest.mark.parametrize(
    "settings",
    [
        ("backupcopy=yes", "writebackup", "nobackup"),
        ("backupcopy=no", "writebackup", "nobackup"),
        (),  # vim's own defaults
    ],
    ids=["backupcopy=yes", "backupcopy=no", "defaults"],
)
def test_vim_save_is_one_set(fs, settings):
    store, directory, listener = fs
    put_file(directory, listener, "notes", b"an old line\n")
    vim_edit(directory / "notes.data", *settings)
    # backupcopy=no renames the old file aside first: wait out a delete.
    listener.exactly([set_of("notes", b"an new line\n")], settle=SETTLE_AFTER_REMOVAL)
    assert store.to_bytes("notes") == b"an new line\n"
    assert "notes.data~" not in os.listdir(directory)  # vim dropped its backup


def test_sed_in_place_is_one_set(fs):
    store, directory, listener = fs
    put_file(directory, listener, "conf", b"old = 1\n")
    run("sed", "-i", "s/old/new/", str(directory / "conf.data"))
    listener.exactly([set_of("conf", b"new = 1\n")], settle=SETTLE_AFTER_REMOVAL)


def test_cp_small_new_and_over_is_one_set_each(fs, tmp_path):
    store, directory, listener = fs
    source = tmp_path / "one-kib"
    source.write_bytes(os.urandom(1024))
    run("cp", str(source), str(directory / "small.data"))
    listener.exactly([set_of("small", source.read_bytes())])
    source.write_bytes(os.urandom(1024))
    run("cp", str(source), str(directory / "small.data"))
    listener.exactly([set_of("small", source.read_bytes())])


SLOW_SOURCE = """
import sys, time
with open(sys.argv[1], "rb") as f:
    while chunk := f.read(64 << 20):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        time.sleep(0.5)
"""


def test_cp_of_300_mb_is_one_set_after_the_copy(fs, tmp_path):
    store, directory, listener = fs
    source = tmp_path / "big"
    block = os.urandom(1 << 20)
    hasher = hashlib.sha256()
    with open(source, "wb") as f:
        for index in range(286):  # 286 MiB: 299,892,736 bytes
            chunk = block[index:] + block[:index]  # no two blocks alike
            f.write(chunk)
            hasher.update(chunk)
    size = source.stat().st_size
    assert size >= 299_000_000
    try:
        run("cp", str(source), str(directory / "big.data"))
        listener.exactly([("set", "big", size, hasher.hexdigest())], timeout=180)
        # The same copy from a slow source (a network mount, a USB stick):
        # cp stalls longer than the quiet period between its writes.  The
        # old watcher reported the file while the copy ran, and a
        # listener read a third of it.
        feeder = subprocess.Popen(
            [sys.executable, "-c", SLOW_SOURCE, str(source)], stdout=subprocess.PIPE
        )
        try:
            run("cp", "/dev/stdin", str(directory / "big.data"), stdin=feeder.stdout)
        finally:
            feeder.stdout.close()
            assert feeder.wait(60) == 0
        listener.exactly([("set", "big", size, hasher.hexdigest())], timeout=180)
        run("rm", str(directory / "big.data"))
        listener.exactly([deleted("big")], settle=SETTLE_AFTER_REMOVAL)
    finally:
        source.unlink()  # pytest keeps old tmp_path directories


def test_rsync_is_one_set(fs, tmp_path):
    need("rsync")
    store, directory, listener = fs
    source = tmp_path / "synced"
    source.write_bytes(b"first version")
    # rsync writes a hidden temporary file and renames it over the key's.
    run("rsync", str(source), str(directory / "synced.data"))
    listener.exactly([set_of("synced", b"first version")])
    source.write_bytes(b"second, longer version")
    run("rsync", str(source), str(directory / "synced.data"))
    listener.exactly([set_of("synced", b"second, longer version")])


def test_mv_in_out_and_within(fs, tmp_path):
    store, directory, listener = fs
    outside = tmp_path / "moved"
    outside.write_bytes(b"moved in")
    run("mv", str(outside), str(directory / "moved.data"))
    listener.exactly([set_of("moved", b"moved in")])
    run("mv", str(directory / "moved.data"), str(directory / "renamed.data"))
    listener.exactly(
        [set_of("renamed", b"moved in"), deleted("moved")],
        settle=SETTLE_AFTER_REMOVAL,
    )
    run("mv", str(directory / "renamed.data"), str(outside))
    listener.exactly([deleted("renamed")], settle=SETTLE_AFTER_REMOVAL)
    assert store.query_keys() == []


def test_rm_of_one_or_both_files(fs):
    store, directory, listener = fs
    store.set("pair", (io.BytesIO(b"data"), {"m": 1}))
    listener.exactly([set_of("pair", b"data")])
    # The metadata file alone: the key stays, with empty metadata.
    run("rm", str(directory / "pair.metadata"))
    listener.exactly([set_of("pair", b"data")])
    assert store.get_metadata("pair") == {}
    # The data file: the key is gone.
    run("rm", str(directory / "pair.data"))
    listener.exactly([deleted("pair")], settle=SETTLE_AFTER_REMOVAL)
    # Both files of a large key: one Delete.
    store.set("both", (io.BytesIO(b"x" * 20_000_000), {"m": 2}))
    listener.exactly([set_of("both", b"x" * 20_000_000)])
    run("rm", str(directory / "both.data"), str(directory / "both.metadata"))
    listener.exactly([deleted("both")], settle=SETTLE_AFTER_REMOVAL)
    # The data file only, a metadata file left: not a key, no event for it.
    store.set("left", (io.BytesIO(b"l"), {"m": 3}))
    listener.exactly([set_of("left", b"l")])
    run("rm", str(directory / "left.data"))
    listener.exactly([deleted("left")], settle=SETTLE_AFTER_REMOVAL)
    assert (directory / "left.metadata").exists() and not store.exists("left")
    run("rm", str(directory / "left.metadata"))
    listener.exactly([], settle=SETTLE_AFTER_REMOVAL)


def test_touch_new_and_existing(fs):
    store, directory, listener = fs
    run("touch", str(directory / "empty.data"))
    listener.exactly([set_of("empty", b"")])
    # A new modification time is a change of the file: one Set, same bytes.
    old = (directory / "empty.data").stat().st_mtime_ns
    run("touch", "-d", "2001-02-03 04:05:06", str(directory / "empty.data"))
    assert (directory / "empty.data").stat().st_mtime_ns != old
    listener.exactly([set_of("empty", b"")])


APPENDER = """
import sys, time
with open(sys.argv[1], "ab") as f:
    for step in range(10):
        f.write(b"step %d\\n" % step)
        f.flush()
        time.sleep(float(sys.argv[2]))
"""


def test_a_writer_appending_in_ten_slow_steps_is_one_set_after_close(fs):
    store, directory, listener = fs
    pause = 2 * QUIET_PERIOD  # each step is slower than the quiet period
    run(sys.executable, "-c", APPENDER, str(directory / "log.data"), str(pause))
    expected = b"".join(b"step %d\n" % step for step in range(10))
    listener.exactly([set_of("log", expected)])


def test_ten_appends_that_each_close_are_ten_sets(fs):
    store, directory, listener = fs
    content = b""
    for step in range(10):
        line = f"line {step}\n"
        # A shell append opens, writes and closes: each is its own save.
        run("sh", "-c", f"printf '{line.strip()}\\n' >> log2.data", cwd=directory)
        content += line.encode()
        listener.exactly([set_of("log2", content)])
