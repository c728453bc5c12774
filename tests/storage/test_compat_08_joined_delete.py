"""``JoinedStore.delete`` as in encore 0.8 (issue 14): the key goes from the
first member store that has it, not only from the first store."""

from __future__ import annotations

import pytest

from encore.events.event_manager import EventManager
from encore.storage.abstract_store import ReadOnlyStoreError
from encore.storage.dict_memory_store import DictMemoryStore
from encore.storage.events import StoreDeleteEvent
from encore.storage.http_test_servers import StaticSiteServer
from encore.storage.joined_store import JoinedStore
from encore.storage.sqlite_store import SqliteStore
from encore.storage.static_url_store import StaticURLStore


@pytest.fixture
def parts(tmp_path):
    """Memory first, then SQLite, then memory; a join over them."""
    first = DictMemoryStore(EventManager())
    second = SqliteStore(str(tmp_path / "two.db"), event_manager=EventManager())
    third = DictMemoryStore(EventManager())
    for store in (first, second, third):
        store.connect()
    first.set("a", (b"1a", {"n": 1}))
    second.set("b", (b"2b", {"n": 2}))
    third.set("c", (b"3c", {"n": 3}))
    second.set("bc", (b"2bc", {"n": 2}))
    third.set("bc", (b"3bc", {"n": 3}))
    manager = EventManager()
    deleted = []
    manager.connect(StoreDeleteEvent, deleted.append)
    joined = JoinedStore([first, second, third], event_manager=manager)
    joined.connect()
    yield joined, (first, second, third), deleted
    second.disconnect()


def test_delete_from_a_later_member(parts):
    joined, (first, second, third), deleted = parts
    joined.delete("c")
    assert not third.exists("c") and not joined.exists("c")
    joined.delete("b")
    assert not second.exists("b")
    assert [(e.key, e.metadata) for e in deleted] == [("c", {"n": 3}), ("b", {"n": 2})]
    assert all(e.source is joined for e in deleted)


def test_only_the_first_holder_loses_the_key(parts):
    joined, (_, second, third), _ = parts
    joined.delete("bc")
    assert not second.exists("bc")
    assert third.to_bytes("bc") == b"3bc"
    assert joined.to_bytes("bc") == b"3bc"
    joined.delete("bc")
    assert not joined.exists("bc")


def test_first_store_still_first(parts):
    joined, (first, _, _), _ = parts
    joined.delete("a")
    assert not first.exists("a")


def test_keyerror_when_no_member_has_it(parts):
    joined, members, deleted = parts
    before = [sorted(m.query_keys()) for m in members]
    with pytest.raises(KeyError):
        joined.delete("nowhere")
    assert [sorted(m.query_keys()) for m in members] == before
    assert deleted == []


def test_read_only_member_refuses_clearly():
    with StaticSiteServer() as site:
        site.publish("web", b"from the web", {})
        remote = StaticURLStore(
            site.root_url,
            site.data_path,
            site.query_path,
            poll=None,
            event_manager=EventManager(),
        )
        joined = JoinedStore([DictMemoryStore(EventManager()), remote])
        joined.connect()
        try:
            with pytest.raises(ReadOnlyStoreError):
                joined.delete("web")
            assert joined.to_bytes("web") == b"from the web"
        finally:
            joined.disconnect()
