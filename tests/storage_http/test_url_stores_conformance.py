"""The conformance suite of `encore.storage.testing` on the URL stores.

Both run against real servers on 127.0.0.1: `DynamicURLStore` against a
`RestStoreServer`, `StaticURLStore` (read tests only: it is read-only)
against a `StaticSiteServer` that serves the suite's fixture.
"""

from __future__ import annotations

import unittest

from encore.events.event_manager import EventManager
from encore.storage.dynamic_url_store import DynamicURLStore
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
