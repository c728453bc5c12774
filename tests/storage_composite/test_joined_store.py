"""JoinedStore: priority, copy-up writes, deletes, transactions, members."""

from __future__ import annotations

import io
import os

import pytest

from encore.events.event_manager import EventManager
from encore.storage.abstract_store import ReadOnlyStoreError, StoreError
from encore.storage.dict_memory_store import DictMemoryStore
from encore.storage.dynamic_url_store import DynamicURLStore
from encore.storage.events import (
    StoreDeleteEvent,
    StoreProgressEndEvent,
    StoreProgressStartEvent,
    StoreSetEvent,
    StoreTransactionEndEvent,
    StoreUpdateEvent,
)
from encore.storage.filesystem_store import FileSystemStore, init_shared_store
from encore.storage.http_test_servers import RestStoreServer, StaticSiteServer
from encore.storage.joined_store import JoinedStore
from encore.storage.sqlite_store import SqliteStore
from encore.storage.static_url_store import StaticURLStore


def snapshot(store) -> dict:
    return {k: (store.to_bytes(k), store.get_metadata(k)) for k in store.query_keys()}


@pytest.fixture
def members(tmp_path):
    """A filesystem store first, then SQLite, then memory; each connected."""
    init_shared_store(str(tmp_path / "fs"))
    first = FileSystemStore(str(tmp_path / "fs"), event_manager=EventManager())
    second = SqliteStore(str(tmp_path / "s.db"), event_manager=EventManager())
    third = DictMemoryStore(EventManager())
    for store in (first, second, third):
        store.connect()
    first.set("both", (io.BytesIO(b"first's"), {"kind": "a", "who": 1}))
    second.set("both", (io.BytesIO(b"second's"), {"kind": "b", "who": 2}))
    second.set("only2", (io.BytesIO(b"two"), {"kind": "b"}))
    third.set("only3", (io.BytesIO(b"three"), {"kind": "b"}))
    third.set("both", (io.BytesIO(b"third's"), {"kind": "c"}))
    yield first, second, third
    for store in (first, second, third):
        store.disconnect()


@pytest.fixture
def joined(members, event_manager):
    store = JoinedStore(members, event_manager=event_manager)
    store.connect()
    return store


def test_first_store_wins(joined) -> None:
    assert joined.to_bytes("both") == b"first's"
    assert joined.get_metadata("both") == {"kind": "a", "who": 1}
    assert joined.get("both").metadata["who"] == 1
    with joined.get_data("both") as stream:
        assert stream.read() == b"first's"
    assert joined.to_bytes("only2") == b"two"
    assert joined.to_bytes("only3") == b"three"
    assert joined.exists("only3") and not joined.exists("nowhere")
    with pytest.raises(KeyError):
        joined.get("nowhere")
    with pytest.raises(KeyError):
        joined.get_metadata("nowhere")


def test_queries_judge_the_visible_value(joined) -> None:
    assert sorted(joined.query_keys()) == ["both", "only2", "only3"]
    # "both" has kind "b" in the second store, but the join shows kind "a".
    assert sorted(joined.query_keys(kind="b")) == ["only2", "only3"]
    assert joined.query_keys(kind="c") == []
    assert dict(joined.query(kind="a")) == {"both": {"kind": "a", "who": 1}}
    assert dict(joined.query(select=["who"])) == {
        "both": {"who": 1},
        "only2": {},
        "only3": {},
    }
    assert sorted(joined.glob("only*")) == ["only2", "only3"]
    assert joined.glob("b*") == ["both"]


def test_writes_go_to_the_first_store_only(joined, members) -> None:
    first, second, third = members
    before = snapshot(second), snapshot(third)
    joined.set("new", (io.BytesIO(b"n"), {"n": 1}))
    joined.set("both", (io.BytesIO(b"replaced"), {"r": 1}))
    joined.from_bytes("new2", b"from bytes")
    assert first.to_bytes("new") == b"n"
    assert first.to_bytes("both") == b"replaced"
    assert first.get_metadata("new2") == {}
    assert (snapshot(second), snapshot(third)) == before


def test_writes_to_later_keys_copy_them_up(joined, members) -> None:
    first, second, third = members
    before = snapshot(second), snapshot(third)
    joined.set_metadata("only2", {"new": "metadata"})
    assert first.to_bytes("only2") == b"two"
    assert first.get_metadata("only2") == {"new": "metadata"}
    joined.set_data("only3", io.BytesIO(b"new data"))
    assert first.to_bytes("only3") == b"new data"
    assert first.get_metadata("only3") == {"kind": "b"}
    (second_snapshot, third_snapshot) = before
    joined.update_metadata("both", {"extra": True})
    assert first.get_metadata("both") == {"kind": "a", "who": 1, "extra": True}
    assert (snapshot(second), snapshot(third)) == before
    with pytest.raises(KeyError):
        joined.update_metadata("nowhere", {"a": 1})
    assert not first.exists("nowhere")


def test_update_metadata_copies_up_with_merged_metadata(joined, members) -> None:
    joined.update_metadata("only3", {"extra": 1})
    assert members[0].get_metadata("only3") == {"kind": "b", "extra": 1}
    assert members[0].to_bytes("only3") == b"three"
    assert members[2].get_metadata("only3") == {"kind": "b"}


def test_delete(joined, members) -> None:
    first, second, _ = members
    joined.delete("both")
    assert not first.exists("both")
    # The second store's value shows through now.
    assert joined.to_bytes("both") == b"second's"
    # A key only a later store has is deleted there (as in encore 0.8).
    joined.delete("only2")
    assert not second.exists("only2") and not joined.exists("only2")
    with pytest.raises(KeyError):
        joined.delete("nowhere")


def test_events_come_from_the_join(joined, members, recorder) -> None:
    inner_events = []
    members[0].event_manager.connect(StoreSetEvent, inner_events.append)
    joined.set("k", (io.BytesIO(b"x"), {"a": 1}))
    joined.update_metadata("only2", {"b": 2})
    joined.delete("k")
    seen = [
        (type(e).__name__, e.key, e.metadata)
        for e in recorder.events
        if isinstance(e, (StoreSetEvent, StoreUpdateEvent, StoreDeleteEvent))
    ]
    assert seen == [
        ("StoreSetEvent", "k", {"a": 1}),
        ("StoreUpdateEvent", "only2", {"kind": "b", "b": 2}),
        ("StoreDeleteEvent", "k", {"a": 1}),
    ]
    assert all(e.source is joined for e in recorder.events)
    assert [e.source for e in inner_events] == [members[0], members[0]]


def test_long_writes_report_progress_as_the_join(joined, recorder) -> None:
    data = os.urandom(1024) * (3 * 1024 + 1)
    joined.set("long", (io.BytesIO(data), {}))
    starts = recorder.of(StoreProgressStartEvent, source=joined)
    ends = recorder.of(StoreProgressEndEvent, source=joined)
    assert len(starts) == 1 and starts[0].key == "long"
    assert starts[0].steps == len(data)
    assert len(ends) == 1 and ends[0].exit_state == "normal"
    assert joined.to_bytes("long") == data


def test_transaction_commits_through(joined, members, recorder) -> None:
    inner_events = []
    members[0].event_manager.connect(StoreSetEvent, inner_events.append)
    with joined.transaction("batch"):
        joined.set("t1", (io.BytesIO(b"1"), {}))
        joined.set_metadata("only2", {"copied": True})
        assert inner_events == []  # the inner store holds its events too
        assert recorder.of(StoreSetEvent) == []
    assert members[0].get_metadata("only2") == {"copied": True}
    names = [type(e).__name__ for e in recorder.events]
    end = names.index("StoreTransactionEndEvent")
    assert names[end + 1 :] == ["StoreSetEvent", "StoreSetEvent"]
    assert [e.key for e in inner_events] == ["t1", "only2"]


def test_transaction_rolls_back_the_first_store(joined, members, recorder) -> None:
    before = [snapshot(s) for s in members]
    with pytest.raises(RuntimeError, match="boom"):
        with joined.transaction("doomed"):
            joined.set("t1", (io.BytesIO(b"1"), {}))
            joined.set_metadata("only2", {"copied": True})
            joined.delete("both")
            raise RuntimeError("boom")
    assert [snapshot(s) for s in members] == before
    assert joined.to_bytes("both") == b"first's"
    assert recorder.of(StoreSetEvent) == recorder.of(StoreDeleteEvent) == []
    (end,) = recorder.of(StoreTransactionEndEvent)
    assert not end.committed


def test_multiset_is_one_transaction(joined, members) -> None:
    with pytest.raises(ValueError):
        joined.multiset(["m1", "m2"], [(b"1", {}), (b"2", {"bad": object()})])
    assert not members[0].exists("m1")


def test_transaction_over_a_store_that_cannot_roll_back(
    members, event_manager, recorder
) -> None:
    with RestStoreServer() as server:
        remote = DynamicURLStore(
            server.base_url, server.query_url, event_manager=EventManager()
        )
        joined = JoinedStore([remote, members[1]], event_manager=event_manager)
        joined.connect()
        try:
            with pytest.raises(RuntimeError):
                with joined.transaction("no rollback here"):
                    joined.set("kept", (b"k", {}))
                    raise RuntimeError("boom")
            # The write happened and stays; so its event is not withheld.
            assert server.data_of("kept") == b"k"
            assert [e.key for e in recorder.of(StoreSetEvent)] == ["kept"]
        finally:
            joined.disconnect()
        assert not remote.is_connected()  # the join connected it


def test_connect_and_disconnect(tmp_path, event_manager) -> None:
    connected = DictMemoryStore(EventManager())
    connected.connect()
    fresh = DictMemoryStore(EventManager())
    joined = JoinedStore([connected, fresh], event_manager=event_manager)
    assert not joined.is_connected()
    joined.connect()
    assert joined.is_connected() and fresh.is_connected()
    joined.disconnect()
    assert connected.is_connected()  # not ours to disconnect
    assert not fresh.is_connected()
    # A member that cannot connect: clear error, nothing left connected.
    broken = FileSystemStore(str(tmp_path / "no-magic"), event_manager=EventManager())
    other = DictMemoryStore(EventManager())
    joined = JoinedStore([other, broken], event_manager=event_manager)
    with pytest.raises(StoreError):
        joined.connect()
    assert not other.is_connected()
    assert not joined.is_connected()


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="at least one"):
        JoinedStore([])
    with pytest.raises(TypeError, match="not a store"):
        JoinedStore([DictMemoryStore(EventManager()), "store"])


def test_read_only_remote_member(event_manager) -> None:
    with StaticSiteServer() as site:
        site.publish("remote", b"from the web", {"kind": "remote"})
        remote = StaticURLStore(
            site.root_url,
            site.data_path,
            site.query_path,
            poll=None,
            event_manager=EventManager(),
        )
        local = DictMemoryStore(EventManager())
        joined = JoinedStore([local, remote], event_manager=event_manager)
        joined.connect()
        try:
            assert joined.to_bytes("remote") == b"from the web"
            joined.update_metadata("remote", {"seen": True})
            assert local.get_metadata("remote") == {"kind": "remote", "seen": True}
            assert local.to_bytes("remote") == b"from the web"
            assert remote.get_metadata("remote") == {"kind": "remote"}
            joined.delete("remote")  # the local copy
            with pytest.raises(ReadOnlyStoreError):
                joined.delete("remote")
        finally:
            joined.disconnect()
        assert not remote.is_connected()


def test_info(joined) -> None:
    info = joined.info()
    assert info["type"] == "joined" and len(info["stores"]) == 3
