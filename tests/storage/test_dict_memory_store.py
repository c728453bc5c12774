"""DictMemoryStore: the conformance suite plus what is specific to it."""

import io
import threading
import unittest

from encore.events.api import EventManager
from encore.storage.dict_memory_store import DictMemoryStore
from encore.storage.testing import (
    StoreKeyTests,
    StoreReadTests,
    StoreTransactionTests,
    StoreWriteTests,
)


class TestDictMemoryStore(
    StoreReadTests,
    StoreWriteTests,
    StoreTransactionTests,
    StoreKeyTests,
    unittest.TestCase,
):
    def make_store(self):
        return DictMemoryStore(event_manager=EventManager())


def test_instances_do_not_share_data():
    a = DictMemoryStore(event_manager=EventManager())
    b = DictMemoryStore(event_manager=EventManager())
    a.set("k", (io.BytesIO(b"x"), {}))
    assert not b.exists("k")


def test_default_event_manager_is_process_wide():
    from encore.events.api import get_event_manager

    assert DictMemoryStore().event_manager is get_event_manager()


def test_event_manager_positional():
    manager = EventManager()
    assert DictMemoryStore(manager).event_manager is manager


def test_transaction_excludes_other_threads():
    store = DictMemoryStore(event_manager=EventManager())
    inside = threading.Event()
    release = threading.Event()
    seen = []

    def writer():
        inside.wait(10)
        store.set("other", (io.BytesIO(b"o"), {}))
        seen.append(store.exists("t"))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with store.transaction("exclusive"):
            store.set("t", (io.BytesIO(b"t"), {}))
            inside.set()
            # The writer must be blocked on the store until we leave.
            thread.join(0.2)
            assert thread.is_alive()
            assert not store.exists("other")
            release.set()
    finally:
        thread.join(10)
    assert seen == [True]
