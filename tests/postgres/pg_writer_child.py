"""Child for the kill -9 test: sets a large value slowly, forever.

Usage: python pg_writer_child.py DSN TABLE KEY

Prints ``writing`` once a few chunks of the new value have gone to the
server, then keeps streaming until it is killed.
"""

import sys

from encore.events.api import EventManager
from encore.storage.postgres_store import PostgresStore


class Endless:
    """A stream of ``b'N'`` that announces itself after 4 MiB."""

    def __init__(self):
        self.sent = 0

    def read(self, size=-1):
        size = 1048576 if size is None or size < 0 else size
        self.sent += size
        if self.sent >= 4 * 1048576 and self.sent - size < 4 * 1048576:
            print("writing", flush=True)
        return b"N" * size


def main():
    dsn, table, key = sys.argv[1:4]
    store = PostgresStore(dsn, table, event_manager=EventManager(), listen=False)
    store.connect()
    store.set(key, (Endless(), {"generation": "new"}))


if __name__ == "__main__":
    main()
