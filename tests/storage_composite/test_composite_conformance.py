"""The conformance suite of `encore.storage.testing` on the composite stores.

The fixture is spread over the inner stores, so that reads, copy-up writes
and rollbacks cross store boundaries: for `JoinedStore` the first store
holds ``test1.txt`` and ``test2.txt``, the second ``test3.jpg`` and
``test4.jpg``, the third ``empty``; for `MountedStore` the mount store
holds the first two and the backing store the rest. Each inner store has
its own event manager, so the suite sees only the composite's events.
"""

from __future__ import annotations

import os
import tempfile
import unittest

from encore.events.event_manager import EventManager
from encore.storage.dict_memory_store import DictMemoryStore
from encore.storage.filesystem_store import FileSystemStore, init_shared_store
from encore.storage.joined_store import JoinedStore
from encore.storage.mounted_store import MountedStore
from encore.storage.simple_auth_store import SimpleAuthStore, add_user, make_encoder
from encore.storage.sqlite_store import SqliteStore
from encore.storage.testing import (
    FIXTURE,
    StoreKeyTests,
    StoreReadTests,
    StoreTransactionTests,
    StoreWriteTests,
    fill_store,
)


def subset(*keys):
    return {key: FIXTURE[key] for key in keys}


class InnerStores:
    """Makes real inner stores in temporary directories removed after the test."""

    def memory(self):
        return DictMemoryStore(EventManager())

    def sqlite(self):
        directory = tempfile.TemporaryDirectory(prefix="encsq")
        self.addCleanup(directory.cleanup)
        return SqliteStore(
            os.path.join(directory.name, "s.db"), event_manager=EventManager()
        )

    def filesystem(self):
        directory = tempfile.TemporaryDirectory(prefix="encfs")
        self.addCleanup(directory.cleanup)
        init_shared_store(directory.name)
        return FileSystemStore(directory.name, event_manager=EventManager())


class JoinedConformance(
    InnerStores,
    StoreReadTests,
    StoreWriteTests,
    StoreTransactionTests,
    StoreKeyTests,
):
    def make_inner(self):
        raise NotImplementedError

    def setUp(self):
        inner = self.make_inner()
        self.store = JoinedStore(inner, event_manager=EventManager())
        self.store.connect()
        fill_store(inner[0], subset("test1.txt", "test2.txt"))
        fill_store(inner[1], subset("test3.jpg", "test4.jpg"))
        fill_store(inner[2], subset("empty"))


class TestJoinedStoreMemory(JoinedConformance, unittest.TestCase):
    def make_inner(self):
        return [self.memory(), self.memory(), self.memory()]


class TestJoinedStoreFilesystemSqliteMemory(JoinedConformance, unittest.TestCase):
    # FileSystemStore values have no creation time.
    tracks_created = False

    def make_inner(self):
        return [self.filesystem(), self.sqlite(), self.memory()]


class TestJoinedStoreSqliteMemoryFilesystem(JoinedConformance, unittest.TestCase):
    # FileSystemStore values have no creation time.
    tracks_created = False

    def make_inner(self):
        return [self.sqlite(), self.memory(), self.filesystem()]


class MountedConformance(
    InnerStores,
    StoreReadTests,
    StoreWriteTests,
    StoreTransactionTests,
    StoreKeyTests,
):
    def make_inner(self):
        raise NotImplementedError

    def setUp(self):
        mount, backing = self.make_inner()
        self.store = MountedStore("", mount, backing, event_manager=EventManager())
        self.store.connect()
        fill_store(mount, subset("test1.txt", "test2.txt"))
        fill_store(backing, subset("test3.jpg", "test4.jpg", "empty"))


class TestMountedStoreMemory(MountedConformance, unittest.TestCase):
    def make_inner(self):
        return self.memory(), self.memory()


class TestMountedStoreSqliteOverFilesystem(MountedConformance, unittest.TestCase):
    # FileSystemStore values have no creation time.
    tracks_created = False

    def make_inner(self):
        return self.sqlite(), self.filesystem()


class TestMountedStoreFilesystemOverMemory(MountedConformance, unittest.TestCase):
    # FileSystemStore values have no creation time.
    tracks_created = False

    def make_inner(self):
        return self.filesystem(), self.memory()


class MountedPrefixReads(InnerStores, StoreReadTests):
    """Reads through a real prefix: ``test`` mounts the keys ``test*``."""

    def make_inner(self):
        raise NotImplementedError

    def setUp(self):
        mount, backing = self.make_inner()
        self.store = MountedStore("test", mount, backing, event_manager=EventManager())
        self.store.connect()
        # test1.txt and test2.txt live in the mount store as 1.txt, 2.txt;
        # test3.jpg in the backing store (under the prefix, not mounted);
        # the rest in the backing store outside the prefix.
        fill_store(
            mount, {k[4:]: v for k, v in subset("test1.txt", "test2.txt").items()}
        )
        fill_store(backing, subset("test3.jpg", "test4.jpg", "empty"))
        # A backing copy of test1.txt that the mount store shadows.
        fill_store(backing, {"test1.txt": (b"shadowed", {"shadowed": True})})


class TestMountedStorePrefixMemory(MountedPrefixReads, unittest.TestCase):
    def make_inner(self):
        return self.memory(), self.memory()


class TestMountedStorePrefixFilesystemOverSqlite(MountedPrefixReads, unittest.TestCase):
    # FileSystemStore values have no creation time.
    tracks_created = False

    def make_inner(self):
        return self.filesystem(), self.sqlite()


class SimpleAuthConformance(
    InnerStores,
    StoreReadTests,
    StoreWriteTests,
    StoreTransactionTests,
    StoreKeyTests,
):
    """Through an authenticated user; the user record must stay invisible."""

    def make_inner(self):
        raise NotImplementedError

    def make_store(self):
        store, users = self.make_inner()
        for inner in (store, users):
            if inner is not None:
                inner.connect()
                self.addCleanup(inner.disconnect)
        encoder = make_encoder(b"conformance-salt", iterations=1000)
        add_user(store if users is None else users, encoder, "ann", "pw")
        wrapper = SimpleAuthStore(
            store, encoder, user_key_store=users, event_manager=EventManager()
        )
        wrapper.connect({"username": "ann", "password": "pw"})
        return wrapper


class TestSimpleAuthStoreMemory(SimpleAuthConformance, unittest.TestCase):
    def make_inner(self):
        return self.memory(), None


class TestSimpleAuthStoreFilesystem(SimpleAuthConformance, unittest.TestCase):
    tracks_created = False

    def make_inner(self):
        return self.filesystem(), None


class TestSimpleAuthStoreSqliteUsersApart(SimpleAuthConformance, unittest.TestCase):
    def make_inner(self):
        return self.sqlite(), self.memory()
