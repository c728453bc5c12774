"""RemoteStore passes the storage conformance suite through the in-process transport.

The same classes as ``test_remote_conformance.py`` (which runs them against
a real daemon), each test on a fresh :class:`InProcessDaemon` hosting only
the stores it needs: requests and replies go through the wire's envelope
functions, store calls through the daemon's ``StoreService``, events from
their published frames to the test's manager.  Then checks of the
transport itself.
"""

import io
import tempfile
import unittest

import pytest

from encore.events.event_manager import EventManager
from encore.storage._password import sha1_hasher
from encore.storage.events import StoreEvent, StoreSetEvent
from encore.storage.simple_auth_store import add_user
from encore.storage.testing import (
    StoreKeyTests,
    StoreReadTests,
    StoreTransactionTests,
    StoreWriteTests,
    _Recorder,
)
from encore_client import (
    RemoteStore,
    RequestTooLargeError,
    UnknownOperationError,
    UnknownStoreError,
    _codec,
    bus_info,
)
from encore_client.testing import InProcessDaemon, in_process_store


class InProcessConformance(
    StoreReadTests, StoreWriteTests, StoreTransactionTests, StoreKeyTests
):
    store_name = ""

    def stores(self, base: str) -> dict:
        """The store tables this class's daemon hosts."""
        raise NotImplementedError

    def make_store(self):
        base = tempfile.TemporaryDirectory(prefix="encip")
        self.addCleanup(base.cleanup)
        self.daemon = InProcessDaemon(stores=self.stores(base.name))
        # Cleanups run last in, first out: the daemon closes before its
        # directory goes.
        self.addCleanup(self.daemon.close)
        return self.daemon.store(self.store_name)

    def setUp(self):
        super().setUp()
        # The fill's events arrive on the dispatch thread: let them pass
        # before the test listens.
        self.daemon.settle()

    def settle_events(self):
        self.daemon.settle()

    def listen(self, cls=StoreEvent):
        recorder = _Recorder()
        manager = self.store.event_manager
        manager.connect(cls, recorder, filter={"source": self.store})
        self.addCleanup(manager.disconnect, cls, recorder)
        return recorder


class TestInProcessMemoryStore(InProcessConformance, unittest.TestCase):
    store_name = "mem"

    def stores(self, base):
        return {"mem": {"type": "memory"}}


class TestInProcessSqliteStore(InProcessConformance, unittest.TestCase):
    store_name = "sq"

    def stores(self, base):
        return {"sq": {"type": "sqlite", "location": f"{base}/store.db"}}


class TestInProcessFileSystemStore(InProcessConformance, unittest.TestCase):
    # FileSystemStore values have no creation time.
    tracks_created = False
    store_name = "fs"

    def stores(self, base):
        return {
            "fs": {"type": "filesystem", "path": f"{base}/fs", "create": True},
        }


class TestInProcessWatchedFileSystemStore(InProcessConformance, unittest.TestCase):
    """With its watcher running: the daemon's own writes are not reported twice."""

    tracks_created = False
    store_name = "fs"

    def stores(self, base):
        return {
            "fs": {
                "type": "filesystem",
                "path": f"{base}/fs",
                "create": True,
                "watch": True,
            },
        }


class TestInProcessJoinedStore(InProcessConformance, unittest.TestCase):
    store_name = "joined"

    def stores(self, base):
        return {
            "jmem": {"type": "memory"},
            "jsq": {"type": "sqlite", "location": f"{base}/joined.db"},
            "joined": {"type": "joined", "stores": ["jmem", "jsq"]},
        }


class TestInProcessMountedStore(InProcessConformance, unittest.TestCase):
    store_name = "mounted"

    def stores(self, base):
        return {
            "mmount": {"type": "memory"},
            "mbacking": {"type": "sqlite", "location": f"{base}/backing.db"},
            "mounted": {
                "type": "mounted",
                "mount_point": "",
                "mount_store": "mmount",
                "backing_store": "mbacking",
            },
        }


class TestInProcessSimpleAuthStore(InProcessConformance, unittest.TestCase):
    """Through a session of a logged-in user; user records stay hidden."""

    store_name = "auth"

    def stores(self, base):
        return {
            "authrec": {"type": "memory"},
            "auth": {"type": "simple_auth", "store": "authrec", "encoder": "sha1"},
        }

    def make_store(self):
        store = super().make_store()
        records = self.daemon.store("authrec")
        add_user(records, sha1_hasher, "ann", "pw")
        records.disconnect()
        store.connect({"username": "ann", "password": "pw"})
        return store


# -- the transport itself ---------------------------------------------------------


def test_events_carry_bus_info_and_the_proxy_as_source():
    manager = EventManager()
    with InProcessDaemon(stores={"m": {"type": "memory"}}, event_manager=manager) as d:
        sets = []
        manager.connect(StoreSetEvent, sets.append)
        store = d.store("m")
        store.set("k", (io.BytesIO(b"v"), {"a": 1}))
        store.set("k", (io.BytesIO(b"w"), {"a": 2}))
        d.settle()
        assert [e.metadata for e in sets] == [{"a": 1}, {"a": 2}]
        assert all(e.source is store for e in sets)
        infos = [bus_info(e) for e in sets]
        assert infos[0].instance == d.instance_id and infos[0].origin is None
        assert infos[1].seq > infos[0].seq
        # The frames delivered are the ones the replay buffer holds.
        first, held = d.log.fetch(d.epoch, infos[0].seq, infos[0].seq)
        assert first == infos[0].seq and len(held) == 1


def test_building_a_daemon_leaves_the_process_codec_as_it_was():
    # A hosted store's descriptor must still decode to a RemoteStore here
    # after an in-process daemon came and went (bridges rely on it).
    with InProcessDaemon(stores={"m": {"type": "memory"}}):
        pass
    proxy = RemoteStore("m")
    assert _codec.decode_source({"kind": "store", "name": "m", "pid": 1}) is proxy


def test_errors_come_back_as_their_exceptions():
    with in_process_store("m") as store:
        with pytest.raises(KeyError):
            store.get("missing")
        with pytest.raises(RequestTooLargeError, match="key is too long"):
            store.exists("k" * 70_000)
        with pytest.raises(UnknownOperationError):
            store._transport.request("status")
        with pytest.raises(UnknownStoreError):
            RemoteStore("nothere", transport=store._transport).exists("k")


def test_a_request_over_the_message_limit_is_refused_by_the_daemon():
    # parse_request's size check, not the client's: the data frame is what
    # makes the message too large.
    with InProcessDaemon(
        stores={"m": {"type": "memory"}}, daemon={"max_message_size": 1024 * 1024}
    ) as d:
        transport = d.transport()
        with pytest.raises(RequestTooLargeError, match="exceeds the limit"):
            transport.request(
                "store.set", {"store": "m", "key": "k"}, [b"x" * (2 * 1024 * 1024)]
            )
        reply = transport.request("hello", {"name": "test"})
        assert reply.result["max_message_size"] == 1024 * 1024


def test_a_closed_transport_refuses_requests():
    with InProcessDaemon(stores={"m": {"type": "memory"}}) as d:
        transport = d.transport()
        assert transport.request("ping").result["instance"] == d.instance_id
        transport.close()
        with pytest.raises(RuntimeError, match="closed"):
            transport.request("ping")


def test_large_values_stream_in_chunks_through_the_service():
    data = bytes(range(256)) * 40_000  # 10 MB: uploads and reads by chunks
    with InProcessDaemon(stores={"m": {"type": "memory"}}) as d:
        store = d.store("m", chunk_size=1024 * 1024)
        store.set("big", (io.BytesIO(data), {}))
        assert d.service.transfer_counts()["uploads"] == 0  # ended, forgotten
        with store.get("big").data as stream:
            assert stream.read() == data
