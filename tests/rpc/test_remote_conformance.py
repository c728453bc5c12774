"""RemoteStore passes the storage conformance suite against a live daemon.

One class per locally writable store type hosted by the shared daemon of
``rpc_env``.  Each test empties its store, fills the fixture and waits for
the fill's events, so tests do not see each other's writes or events.  The
store's events arrive through a real bridge; ``listen`` keeps those whose
source is this test's proxy (the joined store's members emit their own).
"""

import unittest

import pytest

from encore.storage._password import sha1_hasher
from encore.storage.events import StoreEvent
from encore.storage.simple_auth_store import add_user
from encore.storage.testing import (
    StoreKeyTests,
    StoreReadTests,
    StoreTransactionTests,
    StoreWriteTests,
    _Recorder,
)
from encore_client import RemoteStore


@pytest.mark.usefixtures("rpc_class_env")
class RemoteConformance(
    StoreReadTests, StoreWriteTests, StoreTransactionTests, StoreKeyTests
):
    store_name = ""

    def make_store(self):
        store = RemoteStore(
            self.store_name, self.env.runtime_dir, event_manager=self.env.event_manager
        )
        for key in store.query_keys():
            store.delete(key)
        return store

    def setUp(self):
        super().setUp()
        self.env.settle()

    def settle_events(self):
        self.env.settle()

    def listen(self, cls=StoreEvent):
        recorder = _Recorder()
        manager = self.store.event_manager
        manager.connect(cls, recorder, filter={"source": self.store})
        self.addCleanup(manager.disconnect, cls, recorder)
        return recorder


class TestRemoteMemoryStore(RemoteConformance, unittest.TestCase):
    store_name = "mem"


class TestRemoteSqliteStore(RemoteConformance, unittest.TestCase):
    store_name = "sq"


class TestRemoteFileSystemStore(RemoteConformance, unittest.TestCase):
    # FileSystemStore values have no creation time.
    tracks_created = False
    store_name = "fs"


class TestRemoteJoinedStore(RemoteConformance, unittest.TestCase):
    store_name = "joined"


class TestRemoteMountedStore(RemoteConformance, unittest.TestCase):
    store_name = "mounted"


class TestRemoteSimpleAuthStore(RemoteConformance, unittest.TestCase):
    """Through a session of a logged-in user; user records stay hidden."""

    store_name = "auth"

    def make_store(self):
        records = RemoteStore("authrec", self.env.runtime_dir)
        add_user(records, sha1_hasher, "ann", "pw")
        records.disconnect()
        store = RemoteStore(
            self.store_name, self.env.runtime_dir, event_manager=self.env.event_manager
        )
        store.connect({"username": "ann", "password": "pw"})
        for key in store.query_keys():
            store.delete(key)
        return store
