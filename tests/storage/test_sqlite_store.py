"""SqliteStore: the conformance suite plus what is specific to it."""

import io
import json
import os
import sqlite3
import tempfile
import unittest

import pytest

from encore.events.api import EventManager
from encore.storage.abstract_store import StoreError
from encore.storage.sqlite_store import SqliteStore
from encore.storage.testing import (
    StoreKeyTests,
    StoreReadTests,
    StoreTransactionTests,
    StoreWriteTests,
)


class TestSqliteStoreInMemory(
    StoreReadTests,
    StoreWriteTests,
    StoreTransactionTests,
    StoreKeyTests,
    unittest.TestCase,
):
    def make_store(self):
        return SqliteStore(event_manager=EventManager())


class TestSqliteStoreFile(
    StoreReadTests,
    StoreWriteTests,
    StoreTransactionTests,
    unittest.TestCase,
):
    def make_store(self):
        self._dir = tempfile.TemporaryDirectory(prefix="encsq")
        path = os.path.join(self._dir.name, "store.db")
        return SqliteStore(path, table="things", event_manager=EventManager())

    def destroy_store(self):
        self._dir.cleanup()


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "store.db")


def connected(*args, **kwargs):
    store = SqliteStore(*args, event_manager=EventManager(), **kwargs)
    store.connect()
    return store


def test_metadata_is_json_and_values_are_parameters(db_path):
    store = connected(db_path)
    try:
        key = "x'); DROP TABLE store; --"
        store.set(key, (io.BytesIO(b"d"), {"q": "'\"; DROP TABLE store"}))
        store.query(q="x' OR 1=1 --")
    finally:
        store.disconnect()
    with sqlite3.connect(db_path) as raw:
        rows = raw.execute("SELECT key, metadata FROM store").fetchall()
    raw.close()
    assert rows == [
        (key, json.dumps({"q": "'\"; DROP TABLE store"}, separators=(",", ":")))
    ]


@pytest.mark.parametrize("table", ["a b", 'x"; DROP TABLE y; --', "1abc", "", None])
def test_bad_table_names_are_refused(table):
    with pytest.raises(ValueError):
        SqliteStore(table=table, event_manager=EventManager())


def test_bad_index_columns_are_refused():
    with pytest.raises(ValueError):
        SqliteStore(index_columns=["ok", "not ok"], event_manager=EventManager())
    with pytest.raises(ValueError):
        SqliteStore(index="sometimes", event_manager=EventManager())


def test_wal_mode_and_data_survive_reconnect(db_path):
    store = connected(db_path)
    store.set("k", (io.BytesIO(b"v" * 3_000_000), {"a": 1}))
    store.disconnect()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    store = connected(db_path)
    try:
        assert store.to_bytes("k") == b"v" * 3_000_000
        assert store.get_metadata("k") == {"a": 1}
    finally:
        store.disconnect()


def _indexes(path):
    with sqlite3.connect(path) as raw:
        names = {
            row[0]
            for row in raw.execute("SELECT name FROM sqlite_master WHERE type='index'")
        }
    raw.close()
    return names


def test_dynamic_index_is_created_and_used(db_path):
    store = connected(db_path)
    try:
        for i in range(50):
            store.set(f"k{i}", (io.BytesIO(b""), {"n": i % 5, "tag": f"t{i}"}))
        assert sorted(store.query_keys(n=3)) == sorted(f"k{i}" for i in range(3, 50, 5))
        plan = store._execute(
            "EXPLAIN QUERY PLAN SELECT key FROM store "
            "WHERE json_extract(metadata, '$.n') = ?",
            (3,),
        ).fetchall()
    finally:
        store.disconnect()
    assert "store__md_n" in _indexes(db_path)
    assert any("store__md_n" in str(row) for row in plan)


def test_static_index_columns_only(db_path):
    store = connected(db_path, index_columns=["a"])
    try:
        store.set("k", (io.BytesIO(b""), {"a": 1, "b": 2}))
        assert store.query_keys(b=2) == ["k"]
    finally:
        store.disconnect()
    assert {"store__md_a"} == {n for n in _indexes(db_path) if "__md_" in n}


def test_query_distinguishes_types(db_path):
    store = connected(db_path)
    try:
        store.set("int", (io.BytesIO(b""), {"v": 1}))
        store.set("str", (io.BytesIO(b""), {"v": "1"}))
        store.set("list", (io.BytesIO(b""), {"v": [1]}))
        assert store.query_keys(v=1) == ["int"]
        assert store.query_keys(v="1") == ["str"]
        assert store.query_keys(v=[1]) == ["list"]
    finally:
        store.disconnect()


def test_not_connected_is_a_clear_error():
    store = SqliteStore(event_manager=EventManager())
    with pytest.raises(StoreError, match="connect"):
        store.get("k")


def test_incompatible_existing_table(db_path):
    with sqlite3.connect(db_path) as raw:
        raw.execute("CREATE TABLE store (something TEXT)")
    raw.close()
    store = SqliteStore(db_path, event_manager=EventManager())
    with pytest.raises(StoreError, match="not a store table"):
        store.connect()
    assert not store.is_connected()


def test_replaced_while_reading_raises_not_mixes(db_path):
    store = connected(db_path)
    try:
        store.set("big", (io.BytesIO(b"a" * 3_000_000), {}))
        stream = store.get_data("big")
        first = stream.read(1_048_576)
        store.set("big", (io.BytesIO(b"b" * 3_000_000), {}))
        with pytest.raises(StoreError, match="replaced"):
            stream.read()
        stream.close()
        assert first == b"a" * 1_048_576
    finally:
        store.disconnect()


@pytest.mark.slow
def test_indexed_query_over_100k_keys_is_fast(db_path):
    import time

    store = connected(db_path)
    try:
        n = 100_000
        with store.transaction("load"):
            store.multiset(
                (f"key{i}" for i in range(n)),
                ((b"", {"group": f"g{i % 1000}", "i": i}) for i in range(n)),
            )
        keys = store.query_keys(group="g7")
        assert len(keys) == 100 and "key7" in keys and "key99007" in keys
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            result = store.query(group="g123")
            timings.append(time.perf_counter() - started)
        assert len(result) == 100
        # Aim: under 50 ms; measured ~1 ms. A full scan takes ~100 ms.
        assert min(timings) < 0.05, timings
    finally:
        store.disconnect()


def test_long_set_does_not_block_other_writers(db_path):
    store = connected(db_path)
    other = connected(db_path, timeout=0.5)
    written = []

    class Slow(io.RawIOBase):
        """A source during whose reads another connection writes."""

        def __init__(self):
            self.left = 3 if written else 20

        def readable(self):
            return True

        def readinto(self, buffer):
            if not self.left:
                return 0
            self.left -= 1
            # Would time out (StoreError) if the long set held the lock.
            other.set(f"small{self.left}", (io.BytesIO(b"s"), {}))
            written.append(self.left)
            buffer[: len(buffer)] = b"L" * len(buffer)
            return len(buffer)

    try:
        store.set("long", (Slow(), {"long": True}))
        assert len(written) == 20
        assert store.get("long").size == 20 * 1048576
        assert len(store.query_keys()) == 21
        assert other.to_bytes("long") == store.to_bytes("long")
        # The contrast: inside a transaction the write lock is held
        # throughout, and the other writer gives up after its timeout.
        with pytest.raises(StoreError, match="locked"):
            with store.transaction("holds the lock"):
                store.set("long2", (Slow(), {}))
        assert not store.exists("long2")
    finally:
        other.disconnect()
        store.disconnect()


def test_failed_long_set_leaves_no_chunks(db_path):
    store = connected(db_path)

    class Failing(io.RawIOBase):
        def __init__(self):
            self.calls = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            self.calls += 1
            if self.calls > 12:
                raise OSError("source broke")
            buffer[: len(buffer)] = b"x" * len(buffer)
            return len(buffer)

    try:
        with pytest.raises(OSError):
            store.set("k", (Failing(), {}))
        assert not store.exists("k")
        chunks = store._execute("SELECT count(*) FROM store__chunks").fetchone()[0]
        pending = store._execute("SELECT count(*) FROM store__pending").fetchone()[0]
        assert (chunks, pending) == (0, 0)
    finally:
        store.disconnect()


def test_failed_begin_emits_nothing_and_releases_the_store():
    import threading

    from encore.storage.events import StoreEvent

    store = SqliteStore(event_manager=EventManager())  # never connected
    heard = []
    store.event_manager.connect(StoreEvent, heard.append)
    with pytest.raises(StoreError, match="connect"):
        with store.transaction("cannot begin"):
            pass
    assert heard == []
    acquired = []
    thread = threading.Thread(
        target=lambda: acquired.append(store._lock.acquire(timeout=5))
    )
    thread.start()
    thread.join(10)
    assert acquired == [True]
