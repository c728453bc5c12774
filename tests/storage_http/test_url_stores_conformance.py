"""The conformance suite of `encore.storage.testing` on the URL stores.

Both run against real servers on 127.0.0.1: `DynamicURLStore` against a
`RestStoreServer`, `StaticURLStore` (read tests only: it is read-only)
against a `StaticSiteServer` that serves the suite's fixture.
"""

from __future__ import annotations

import io
import unittest

from encore.events.event_manager import EventManager
from encore.storage.dynamic_url_store import DynamicURLStore
from encore.storage.events import (
    StoreProgressEndEvent,
    StoreProgressEvent,
    StoreProgressStartEvent,
    StoreSetEvent,
)
from encore.storage.http_test_servers import RestStoreServer, StaticSiteServer
from encore.storage.static_url_store import StaticURLStore
from encore.storage.testing import (
    FIXTURE,
    StoreKeyTests,
    StoreReadTests,
    StoreTransactionTests,
    StoreWriteTests,
)


class TestDynamicURLStoreConformance(
    StoreReadTests,
    StoreWriteTests,
    StoreTransactionTests,
    StoreKeyTests,
    unittest.TestCase,
):
    # The REST protocol has no transactions: writes in a failed block stay.
    can_rollback = False

    def test_set_long_value_progress(self):
        # The suite's version also counts the progress of its own read-back
        # (``to_bytes`` of a long value reports progress too, as documented)
        # as if it belonged to the set. Same checks, on the set's operation.
        data = self._long_data()
        events = self.listen()
        self.store.set("long", (io.BytesIO(data), {"long": True}))
        self.assertEqual(self.store.to_bytes("long"), data)
        start = events.of(StoreProgressStartEvent)[0]
        mine = [
            e
            for e in events.events
            if getattr(e, "operation_id", None) == start.operation_id
        ]
        self.assertIsInstance(mine[-1], StoreProgressEndEvent)
        self.assertEqual(mine[-1].exit_state, "normal")
        self.assertGreaterEqual(len(mine), 4)
        self.assertEqual(mine[-2].step, len(data))
        self.assertTrue(all(isinstance(e, StoreProgressEvent) for e in mine))
        kinds = [type(e) for e in events.events]
        self.assertLess(events.events.index(mine[-1]), kinds.index(StoreSetEvent))

    def make_store(self) -> DynamicURLStore:
        server = RestStoreServer().start()
        self.addCleanup(server.close)
        return DynamicURLStore(
            server.base_url, server.query_url, event_manager=EventManager()
        )


class TestStaticURLStoreConformance(StoreReadTests, unittest.TestCase):
    def setUp(self) -> None:
        server = StaticSiteServer().start()
        self.addCleanup(server.close)
        for key, (data, metadata) in FIXTURE.items():
            server.publish(key, data, metadata, index=False)
        server.write_index()
        self.store = StaticURLStore(
            server.root_url,
            server.data_path,
            server.query_path,
            poll=None,
            event_manager=EventManager(),
        )
        self.store.connect()
