"""MountedStore: key mapping, read-only backing, copy-in writes, push."""

from __future__ import annotations

import io

import pytest

from encore.events.event_manager import EventManager
from encore.storage.abstract_store import ReadOnlyStoreError
from encore.storage.dict_memory_store import DictMemoryStore
from encore.storage.events import (
    StoreDeleteEvent,
    StoreModificationEvent,
    StoreProgressStartEvent,
    StoreSetEvent,
    StoreTransactionEndEvent,
)
from encore.storage.filesystem_store import FileSystemStore, init_shared_store
from encore.storage.http_test_servers import StaticSiteServer
from encore.storage.mounted_store import MountedStore
from encore.storage.sqlite_store import SqliteStore
from encore.storage.static_url_store import StaticURLStore


def snapshot(store) -> dict:
    return {k: (store.to_bytes(k), store.get_metadata(k)) for k in store.query_keys()}


@pytest.fixture
def mount_store(tmp_path):
    store = SqliteStore(str(tmp_path / "cache.db"), event_manager=EventManager())
    store.connect()
    store.set("a", (io.BytesIO(b"local a"), {"kind": "local"}))
    yield store
    store.disconnect()


@pytest.fixture
def backing_store(tmp_path):
    init_shared_store(str(tmp_path / "remote"))
    store = FileSystemStore(str(tmp_path / "remote"), event_manager=EventManager())
    store.connect()
    store.set("cache/a", (io.BytesIO(b"remote a"), {"kind": "remote"}))
    store.set("cache/b", (io.BytesIO(b"remote b"), {"kind": "remote"}))
    store.set("other", (io.BytesIO(b"outside"), {"kind": "remote"}))
    yield store
    store.disconnect()


@pytest.fixture
def mounted(mount_store, backing_store, event_manager):
    store = MountedStore("cache/", mount_store, backing_store, event_manager)
    store.connect()
    return store


def test_key_mapping(mounted) -> None:
    assert mounted.to_bytes("cache/a") == b"local a"  # mount store first
    assert mounted.get_metadata("cache/a") == {"kind": "local"}
    assert mounted.to_bytes("cache/b") == b"remote b"  # falls through
    assert mounted.to_bytes("other") == b"outside"
    with mounted.get_data("cache/b") as stream:
        assert stream.read() == b"remote b"
    assert mounted.exists("cache/a") and mounted.exists("other")
    # A mount store key is only reachable under the mount point.
    assert not mounted.exists("a")
    with pytest.raises(KeyError):
        mounted.get("a")
    with pytest.raises(KeyError):
        mounted.get_metadata("cache/nothing")


def test_queries_merge_both_stores(mounted) -> None:
    assert sorted(mounted.query_keys()) == ["cache/a", "cache/b", "other"]
    # cache/a is "remote" in the backing store but shows as "local".
    assert sorted(mounted.query_keys(kind="remote")) == ["cache/b", "other"]
    assert dict(mounted.query(kind="local")) == {"cache/a": {"kind": "local"}}
    assert sorted(mounted.glob("cache/*")) == ["cache/a", "cache/b"]
    assert mounted.glob("o*") == ["other"]


def test_writes_outside_the_mount_point_are_refused(mounted, backing_store) -> None:
    before = snapshot(backing_store)
    for write in (
        lambda: mounted.set("other", (b"x", {})),
        lambda: mounted.set("new", (b"x", {})),
        lambda: mounted.set_data("other", b"x"),
        lambda: mounted.set_metadata("other", {}),
        lambda: mounted.update_metadata("other", {"a": 1}),
        lambda: mounted.delete("other"),
        lambda: mounted.from_bytes("elsewhere", b"x"),
    ):
        with pytest.raises(ReadOnlyStoreError):
            write()
    assert snapshot(backing_store) == before


def test_writes_under_the_mount_point_go_to_the_mount_store(
    mounted, mount_store, backing_store
) -> None:
    before = snapshot(backing_store)
    mounted.set("cache/new", (io.BytesIO(b"n"), {"n": 1}))
    assert mount_store.to_bytes("new") == b"n"
    mounted.set_metadata("cache/b", {"edited": True})  # copied in with its data
    assert mount_store.to_bytes("b") == b"remote b"
    assert mount_store.get_metadata("b") == {"edited": True}
    assert snapshot(backing_store) == before


def test_set_data_and_update_metadata_copy_in(
    mounted, mount_store, backing_store
) -> None:
    mounted.set_data("cache/b", io.BytesIO(b"new b"))
    assert mount_store.get_metadata("b") == {"kind": "remote"}
    assert mount_store.to_bytes("b") == b"new b"
    mount_store.delete("b")
    mounted.update_metadata("cache/b", {"x": 1})
    assert mount_store.get_metadata("b") == {"kind": "remote", "x": 1}
    assert mount_store.to_bytes("b") == b"remote b"
    assert backing_store.get_metadata("cache/b") == {"kind": "remote"}
    with pytest.raises(KeyError):
        mounted.update_metadata("cache/none", {"x": 1})


def test_delete(mounted, mount_store) -> None:
    mounted.delete("cache/a")
    assert not mount_store.exists("a")
    assert mounted.to_bytes("cache/a") == b"remote a"  # local change discarded
    with pytest.raises(ReadOnlyStoreError, match="backing store"):
        mounted.delete("cache/a")
    with pytest.raises(KeyError):
        mounted.delete("cache/none")


def test_push_moves_a_key_into_the_backing_store(
    mounted, mount_store, backing_store, recorder
) -> None:
    backing_events = []
    backing_store.event_manager.connect(StoreModificationEvent, backing_events.append)
    mount_events = []
    mount_store.event_manager.connect(StoreModificationEvent, mount_events.append)
    mounted.set("cache/fresh", (io.BytesIO(b"fresh"), {"f": 1}))
    recorder.clear()
    mounted.push("cache/fresh")
    assert not mount_store.exists("fresh")
    assert backing_store.to_bytes("cache/fresh") == b"fresh"
    assert backing_store.get_metadata("cache/fresh") == {"f": 1}
    assert mounted.to_bytes("cache/fresh") == b"fresh"  # same visible value
    mounted.push("cache/a")  # replaces the backing store's older value
    assert backing_store.to_bytes("cache/a") == b"local a"
    assert recorder.of(StoreModificationEvent) == []
    assert [(type(e).__name__, e.key) for e in backing_events] == [
        ("StoreSetEvent", "cache/fresh"),
        ("StoreSetEvent", "cache/a"),
    ]
    assert [type(e).__name__ for e in mount_events][-2:] == [
        "StoreDeleteEvent",
        "StoreDeleteEvent",
    ]


def test_push_errors(mounted, mount_store, backing_store) -> None:
    with pytest.raises(KeyError):
        mounted.push("other")  # outside the mount point
    with pytest.raises(KeyError):
        mounted.push("cache/b")  # only in the backing store
    with pytest.raises(KeyError):
        mounted.push("cache/none")
    assert mount_store.exists("a")


def test_push_is_atomic_across_both_stores(mounted, mount_store, backing_store) -> None:
    before = snapshot(mount_store), snapshot(backing_store)
    with pytest.raises(RuntimeError):
        with mounted.transaction("push then fail"):
            mounted.push("cache/a")
            assert backing_store.to_bytes("cache/a") == b"local a"
            raise RuntimeError("boom")
    assert (snapshot(mount_store), snapshot(backing_store)) == before


def test_transaction_holds_and_drops_events(mounted, recorder) -> None:
    with mounted.transaction("ok"):
        mounted.set("cache/t", (b"t", {}))
        assert recorder.of(StoreSetEvent) == []
    assert [e.key for e in recorder.of(StoreSetEvent)] == ["cache/t"]
    recorder.clear()
    with pytest.raises(RuntimeError):
        with mounted.transaction("fail"):
            mounted.delete("cache/t")
            raise RuntimeError("boom")
    assert mounted.exists("cache/t")
    assert recorder.of(StoreDeleteEvent) == []
    assert not recorder.of(StoreTransactionEndEvent)[0].committed


def test_long_writes_report_progress(mounted, recorder) -> None:
    data = b"m" * (2 * 1048576 + 3)
    mounted.set("cache/long", (io.BytesIO(data), {}))
    (start,) = recorder.of(StoreProgressStartEvent, source=mounted)
    assert start.key == "cache/long" and start.steps == len(data)


def test_over_a_static_url_backing_store(event_manager) -> None:
    with StaticSiteServer() as site:
        site.publish("pkg/one", b"remote one", {"v": 1})
        site.publish("pkg/two", b"remote two", {"v": 2})
        remote = StaticURLStore(
            site.root_url,
            site.data_path,
            site.query_path,
            poll=None,
            event_manager=EventManager(),
        )
        cache = DictMemoryStore(EventManager())
        mounted = MountedStore("pkg/", cache, remote, event_manager=event_manager)
        mounted.connect()
        try:
            assert mounted.to_bytes("pkg/one") == b"remote one"
            mounted.update_metadata("pkg/one", {"pinned": True})
            assert cache.get_metadata("one") == {"v": 1, "pinned": True}
            assert sorted(mounted.query_keys()) == ["pkg/one", "pkg/two"]
            remote_events = []
            remote.event_manager.connect(StoreTransactionEndEvent, remote_events.append)
            with pytest.raises(ReadOnlyStoreError):
                mounted.push("pkg/one")
            assert cache.exists("one")  # the failed push changed nothing
            with mounted.transaction("local only"):
                mounted.set("pkg/three", (b"3", {}))
            assert remote_events == []  # the read-only store is not involved
        finally:
            mounted.disconnect()
        assert not remote.is_connected() and not cache.is_connected()


def test_constructor_and_info(mount_store, backing_store) -> None:
    with pytest.raises(TypeError, match="mount_point"):
        MountedStore(None, mount_store, backing_store)
    with pytest.raises(TypeError, match="not a store"):
        MountedStore("x/", mount_store, object())
    info = MountedStore("x/", mount_store, backing_store, EventManager()).info()
    assert info["type"] == "mounted" and info["mount_point"] == "x/"
