"""FileSystemStore: the conformance suite plus what is specific to it."""

import io
import json
import os
import tempfile
import unittest

import pytest

from encore.events.api import EventManager
from encore.storage.abstract_store import StoreError
from encore.storage.filesystem_store import (
    FileSystemStore,
    filename_to_key,
    init_shared_store,
    key_to_stem,
)
from encore.storage.testing import (
    StoreKeyTests,
    StoreReadTests,
    StoreTransactionTests,
    StoreWriteTests,
)


class TestFileSystemStore(
    StoreReadTests,
    StoreWriteTests,
    StoreTransactionTests,
    StoreKeyTests,
    unittest.TestCase,
):
    tracks_created = False

    def make_store(self):
        self._dir = tempfile.TemporaryDirectory(prefix="encfs")
        init_shared_store(self._dir.name)
        return FileSystemStore(self._dir.name, event_manager=EventManager())

    def destroy_store(self):
        leftovers = [n for n in os.listdir(self._dir.name) if n.startswith(".tmp")]
        self._dir.cleanup()
        self.assertEqual(leftovers, [])


@pytest.fixture
def store(tmp_path):
    init_shared_store(str(tmp_path))
    s = FileSystemStore(str(tmp_path), event_manager=EventManager())
    s.connect()
    yield s
    s.disconnect()


def test_needs_magic_file(tmp_path):
    store = FileSystemStore(str(tmp_path), event_manager=EventManager())
    with pytest.raises(StoreError, match="init_shared_store"):
        store.connect()
    with pytest.raises(StoreError, match="not a directory"):
        FileSystemStore(str(tmp_path / "nope"), event_manager=EventManager()).connect()


def test_plain_keys_use_documented_file_names(store, tmp_path):
    store.set("report-1.txt", (io.BytesIO(b"bytes"), {"author": "x"}))
    assert (tmp_path / "report-1.txt.data").read_bytes() == b"bytes"
    assert json.loads((tmp_path / "report-1.txt.metadata").read_text()) == {
        "author": "x"
    }


def test_files_written_by_other_tools_are_readable(store, tmp_path):
    (tmp_path / "foreign.data").write_bytes(b"written by hand")
    (tmp_path / "foreign.metadata").write_text('{"by": "hand"}')
    (tmp_path / "data-only.data").write_bytes(b"d")
    (tmp_path / "meta-only.metadata").write_text('{"m": 1}')
    (tmp_path / "notes.txt").write_text("not a key")
    assert store.to_bytes("foreign") == b"written by hand"
    assert store.get_metadata("foreign") == {"by": "hand"}
    assert store.get_metadata("data-only") == {}
    assert sorted(store.query_keys()) == ["data-only", "foreign"]
    assert store.query_keys(by="hand") == ["foreign"]


def test_a_metadata_file_without_its_data_file_is_not_a_key(store, tmp_path):
    # What `rm k.data` leaves behind: the key is gone, for every call.
    store.set("k", (io.BytesIO(b"bytes"), {"m": 1}))
    os.unlink(tmp_path / "k.data")
    assert (tmp_path / "k.metadata").exists()
    assert not store.exists("k")
    for call in (store.get, store.get_data, store.get_metadata, store.delete):
        with pytest.raises(KeyError):
            call("k")
    with pytest.raises(KeyError):
        store.update_metadata("k", {"m": 2})
    assert store.query_keys() == [] and store.query() == [] and store.glob("*") == []
    # A data file arriving later makes it a key again, with that metadata.
    (tmp_path / "k.data").write_bytes(b"again")
    assert store.get_metadata("k") == {"m": 1}
    assert store.query_keys(m=1) == ["k"]
    # A new value written through the store replaces the leftover.
    os.unlink(tmp_path / "k.data")
    store.set_data("k", io.BytesIO(b"fresh"))
    assert store.to_bytes("k") == b"fresh" and store.get_metadata("k") == {}


def test_bad_metadata_file_is_a_clear_error(store, tmp_path):
    (tmp_path / "broken.data").write_bytes(b"")
    (tmp_path / "broken.metadata").write_text("{not json")
    with pytest.raises(StoreError, match="broken.metadata"):
        store.get_metadata("broken")
    with pytest.raises(StoreError, match="broken.metadata"):
        store.get("broken")


HOSTILE = [
    "../x",
    "../../etc/passwd",
    "/abs",
    "a/b",
    "a/../../b",
    "nul\x00byte",
    "CON",
    "con.txt",
    "LPT1",
    "k" * 300,
    "\u00e9" * 300,
    "Key",
    "key",
    "KEY",
    "\u65e5\u672c\u8a9e",
    "..",
    ".",
    "",
    ".hidden",
    "%2e%2e",
    "%~0000",
    "x.data",
    "back\\slash",
]


def test_hostile_keys_stay_inside_the_store(tmp_path):
    root = tmp_path / "root"
    directory = root / "store"
    init_shared_store(str(directory))
    store = FileSystemStore(str(directory), event_manager=EventManager())
    store.connect()
    try:
        for i, key in enumerate(HOSTILE):
            store.set(key, (io.BytesIO(b"%d" % i), {"i": i}))
        for i, key in enumerate(HOSTILE):
            assert store.to_bytes(key) == b"%d" % i, key
            assert store.get_metadata(key) == {"i": i}
        assert sorted(store.query_keys()) == sorted(HOSTILE)
        assert [k for k, _ in store.query(i=3)] == [HOSTILE[3]]
        # Nothing was written anywhere but the store directory, and every
        # file there is a plain file with a short enough name.
        outside = [
            os.path.join(d, f)
            for d, _, files in os.walk(root)
            for f in files
            if d != str(directory)
        ]
        assert outside == []
        assert [d for _, dirs, _ in os.walk(directory) for d in dirs] == []
        for name in os.listdir(directory):
            assert len(name.encode()) <= 255
            assert not name.startswith(".tmp")
        for key in HOSTILE:
            store.delete(key)
        assert store.query_keys() == []
        assert sorted(os.listdir(directory)) == [".FSStore"]
    finally:
        store.disconnect()


@pytest.mark.parametrize("key", HOSTILE + ["plain", "a b", "caf\u00e9"])
def test_encoding_round_trips(key, tmp_path):
    stem = key_to_stem(key)
    assert "/" not in stem and "\x00" not in stem
    assert stem not in ("", ".", "..")
    assert not stem.startswith(".")
    if not stem.startswith("%~"):
        assert filename_to_key(stem + ".data") == key
        assert filename_to_key(stem + ".metadata") == key
        assert stem.startswith("%") or stem == key


def test_case_insensitive_encoding_is_lower_case():
    stems = {key_to_stem(k, case_insensitive=True) for k in ["Key", "key", "KEY"]}
    assert len({s.lower() for s in stems}) == 3


def test_temporary_and_foreign_names_are_not_keys():
    for name in [".tmp-1-ab-0", ".undo-1-ab-0", ".FSStore", ".FSStore.journal"]:
        assert filename_to_key(name) is None
    assert filename_to_key("caf\u00e9.data") is None  # not the canonical name
    assert filename_to_key("%41.data") is None  # 'A' is written plain


def test_temp_files_never_show_up_as_keys(store, tmp_path):
    (tmp_path / ".tmp-99999999-dead-0").write_bytes(b"leftover")
    (tmp_path / ".undo-99999999-dead-0").write_bytes(b"leftover")

    class Watching(io.RawIOBase):
        """A source that looks at the store while its data is being copied."""

        def __init__(self):
            self.calls = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            self.calls += 1
            if self.calls > 3:
                return 0
            assert store.query_keys() == []
            assert not store.exists("k")
            buffer[: len(buffer)] = b"x" * len(buffer)
            return len(buffer)

    store.set("k", (Watching(), {}))
    assert store.query_keys() == ["k"]
    store.disconnect()
    store.connect()
    assert not (tmp_path / ".tmp-99999999-dead-0").exists()
    assert not (tmp_path / ".undo-99999999-dead-0").exists()


def test_query_sees_changes_by_other_writers(store, tmp_path):
    store.set("a", (io.BytesIO(b""), {"v": 1}))
    assert store.query_keys(v=1) == ["a"]
    other = FileSystemStore(str(tmp_path), event_manager=EventManager())
    other.connect()
    try:
        other.set("b", (io.BytesIO(b""), {"v": 1}))
        other.update_metadata("a", {"v": 2})
        assert store.query_keys(v=1) == ["b"]
        # A tool rewriting a metadata file in place, and one renaming.
        with open(tmp_path / "b.metadata", "w") as f:
            f.write('{"v": 3}')
        assert store.query_keys(v=3) == ["b"]
        (tmp_path / ".edit").write_text('{"v": 4}')
        os.rename(tmp_path / ".edit", tmp_path / "a.metadata")
        assert store.query_keys(v=4) == ["a"]
        os.unlink(tmp_path / "a.metadata")
        os.unlink(tmp_path / "a.data")
        assert store.query_keys() == ["b"]
    finally:
        other.disconnect()


def test_query_without_inotify_polls(store, tmp_path, monkeypatch):
    import encore.storage._fs_index as module

    def no_inotify(path):
        raise OSError("disabled for this test")

    monkeypatch.setattr(module, "_Inotify", no_inotify)
    store.set("a", (io.BytesIO(b""), {"v": 1}))
    assert store.query_keys(v=1) == ["a"]
    other = FileSystemStore(str(tmp_path), event_manager=EventManager())
    other.connect()
    try:
        other.set("b", (io.BytesIO(b""), {"v": 1}))
        other.delete("a")
        assert store.query_keys(v=1) == ["b"]
    finally:
        other.disconnect()


def test_value_keeps_reading_what_it_opened(store):
    store.set("k", (io.BytesIO(b"old" * 1000), {"v": "old"}))
    value = store.get("k")
    store.set("k", (io.BytesIO(b"new" * 1000), {"v": "new"}))
    assert value.metadata == {"v": "old"}
    with value.data as stream:
        assert stream.read() == b"old" * 1000
    assert store.to_bytes("k") == b"new" * 1000


def test_unread_values_do_not_leak_descriptors(store):
    store.set("k", (io.BytesIO(b"x"), {}))
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(200):
        assert store.get("k").metadata == {}
    assert len(os.listdir("/proc/self/fd")) <= before + 2


FULL_DISK_CHILD = """
import io, os, resource, signal, sys
from encore.events.api import EventManager
from encore.storage.abstract_store import StoreError
from encore.storage.filesystem_store import FileSystemStore
path = sys.argv[1]
store = FileSystemStore(path, event_manager=EventManager())
store.connect()
store.set("k", (io.BytesIO(b"old"), {"v": 1}))
# A real write failure from the kernel: files may not grow past 64 KiB.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
try:
    store.set("k", (io.BytesIO(b"new" * 100000), {"v": 2}))
except StoreError as error:
    print("refused:", error)
else:
    sys.exit("the write should have failed")
assert store.to_bytes("k") == b"old"
assert store.get_metadata("k") == {"v": 1}
try:
    store.set_metadata("k", {"big": "x" * 100000})
except StoreError as error:
    print("metadata refused:", error)
else:
    sys.exit("the metadata write should have failed")
assert store.get_metadata("k") == {"v": 1}
store.disconnect()
"""


def test_failed_write_keeps_old_value(tmp_path, child_env):
    import subprocess
    import sys

    init_shared_store(str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(tmp_path)],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout and "File too large" in result.stdout
    # The error names the key, for metadata writes too.
    assert "metadata refused: cannot write 'k' in" in result.stdout
    assert [n for n in os.listdir(tmp_path) if n.startswith(".tmp")] == []


WRITER_CHILD = """
import io, sys
from encore.events.api import EventManager
from encore.storage.filesystem_store import FileSystemStore
store = FileSystemStore(sys.argv[1], event_manager=EventManager())
store.connect()
store.set("from-child", (io.BytesIO(b"c"), {"v": 1}))
store.update_metadata("a", {"v": 2})
store.delete("b")
store.disconnect()
"""


def test_query_sees_other_process_changes(store, tmp_path, child_env):
    import subprocess
    import sys

    store.set("a", (io.BytesIO(b""), {"v": 1}))
    store.set("b", (io.BytesIO(b""), {"v": 1}))
    assert sorted(store.query_keys(v=1)) == ["a", "b"]
    subprocess.run(
        [sys.executable, "-c", WRITER_CHILD, str(tmp_path)],
        env=child_env,
        check=True,
        timeout=60,
    )
    assert store.query_keys(v=1) == ["from-child"]
    assert store.query_keys(v=2) == ["a"]
    assert sorted(store.query_keys()) == ["a", "from-child"]


def test_query_rereads_only_changed_files(store, tmp_path, monkeypatch):
    for i in range(200):
        store.set(f"k{i}", (io.BytesIO(b""), {"i": i}))
    assert store.query_keys(i=5) == ["k5"]
    reads = []
    original = FileSystemStore._read_metadata_file

    def counting(self, stem, *args, **kwargs):
        reads.append(stem)
        return original(self, stem, *args, **kwargs)

    monkeypatch.setattr(FileSystemStore, "_read_metadata_file", counting)
    assert store.query_keys(i=7) == ["k7"]
    assert reads == []
    (tmp_path / "k7.metadata").write_text('{"i": 1000}')
    assert store.query_keys(i=1000) == ["k7"]
    assert reads == ["k7"]


def test_stores_share_one_inotify_instance(tmp_path):
    import encore.storage._inotify as module

    stores = []
    try:
        for i in range(200):  # more than the default per-user limit of 128
            path = tmp_path / f"s{i}"
            init_shared_store(str(path))
            store = FileSystemStore(str(path), event_manager=EventManager())
            store.connect()
            store.set("k", (io.BytesIO(b""), {"i": i}))
            assert store.query_keys(i=i) == ["k"]
            stores.append(store)
        assert all(s._index.watch is not None for s in stores)
        hub = module._hub
        assert {s._index.watch.hub for s in stores} == {hub}
        (tmp_path / "s7" / "k.metadata").write_text('{"i": 700}')
        assert stores[7].query_keys(i=700) == ["k"]
        assert stores[8].query_keys(i=8) == ["k"]
    finally:
        for store in stores:
            store.disconnect()


def random_keys(seed, count, max_length=80):
    """Keys made of every kind of character, reproducibly.

    (hypothesis is not among the test dependencies, so this draws from a
    seeded generator instead: ASCII, controls, NUL, separators, Latin,
    CJK, emoji, combining marks and lone surrogates.)
    """
    import random

    rng = random.Random(seed)
    pools = [
        "abcxyzABCXYZ0189",
        "./\\%~ -_:*?<>|\"'",
        "\x00\x01\n\t\x7f",
        "\u00e9\u00df\u0130\u0131\u212a",
        "\u65e5\u672c\U0001f600\u0301\ufeff",
        "\ud800\udfff",
    ]
    keys = ["", ".", "..", "CON", "a" * 300]
    while len(keys) < count:
        length = rng.randrange(0, max_length)
        keys.append("".join(rng.choice(rng.choice(pools)) for _ in range(length)))
    return keys


@pytest.mark.parametrize("case_insensitive", [False, True])
def test_any_key_maps_to_one_safe_file_name_and_back(case_insensitive):
    for key in random_keys(1, 2000, max_length=120):
        stem = key_to_stem(key, case_insensitive)
        for suffix in (".data", ".metadata"):
            name = stem + suffix
            assert len(name.encode("utf-8")) <= 255
            assert "/" not in name and "\x00" not in name
            assert not name.startswith(".")
            if case_insensitive:
                assert stem == stem.lower()
            if not stem.startswith("%~"):
                assert filename_to_key(name, None, case_insensitive) == key


def test_distinct_keys_get_distinct_file_names():
    keys = set(random_keys(2, 3000))
    keys |= {k.upper() for k in keys} | {k.lower() for k in keys}
    assert len({key_to_stem(k) for k in keys}) == len(keys)
    assert len({key_to_stem(k, True).lower() for k in keys}) == len(keys)


def test_forked_child_gets_its_own_watch(store, tmp_path):
    store.set("a", (io.BytesIO(b""), {"v": 1}))
    assert store.query_keys(v=1) == ["a"]
    parent_hub = store._index.watch.hub
    read, write = os.pipe()
    import warnings

    with warnings.catch_warnings():
        # Python 3.12+ warns about fork in a process with threads; the child
        # here only touches the store and exits at once.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return to pytest
        try:
            store.set("b", (io.BytesIO(b""), {"v": 1}))
            ok = sorted(store.query_keys(v=1)) == ["a", "b"]
            ok = ok and store._index.watch.hub is not parent_hub
            os.write(write, b"ok" if ok else b"bad")
        finally:
            os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 16) == b"ok"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    # The parent's watch still works and saw the child's write.
    assert sorted(store.query_keys(v=1)) == ["a", "b"]
    assert store._index.watch.hub is parent_hub


def test_polling_sees_in_place_edits_when_the_listing_is_old(
    store, tmp_path, monkeypatch
):
    import encore.storage._fs_index as module

    def no_inotify(path):
        raise OSError("disabled for this test")

    monkeypatch.setattr(module, "_Inotify", no_inotify)
    for i in range(20):
        store.set(f"k{i}", (io.BytesIO(b""), {"i": i}))
    # No safety margin for coarse timestamps, so that the fast path (no
    # scandir) is taken without waiting for the listing to grow old.
    monkeypatch.setattr(module, "_RACY_NS", 0)
    assert store.query_keys(i=3) == ["k3"]
    scans = []
    real_scan = module._Index._scan
    monkeypatch.setattr(
        module._Index, "_scan", lambda self: scans.append(1) or real_scan(self)
    )
    assert store.query_keys(i=4) == ["k4"]
    with open(tmp_path / "k4.metadata", "w") as f:
        f.write('{"i": 400}')
    assert store.query_keys(i=400) == ["k4"]
    assert scans == []
    # A new name changes the directory: the next query rescans.
    (tmp_path / "new.data").write_bytes(b"")
    assert "new" in store.query_keys()
    assert scans == [1]
