"""PostgresStore against the conformance suite of encore.storage.testing."""

import unittest

from encore.events.api import EventManager
from encore.storage.testing import (
    StoreKeyTests,
    StoreReadTests,
    StoreTransactionTests,
    StoreWriteTests,
)

from .conftest import cluster, drop_table, new_table


class TestPostgresStoreConformance(
    StoreReadTests,
    StoreWriteTests,
    StoreTransactionTests,
    StoreKeyTests,
    unittest.TestCase,
):
    def make_store(self):
        from encore.storage.postgres_store import PostgresStore

        self.dsn = cluster().dsn
        self.table = new_table()
        return PostgresStore(self.dsn, self.table, event_manager=EventManager())

    def destroy_store(self):
        drop_table(self.dsn, self.table)
