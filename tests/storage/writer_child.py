"""Child process for the two-writer tests (run as a script).

Usage: python writer_child.py {sqlite|filesystem} LOCATION NAME ROUNDS

Each round increments a shared counter inside a transaction (a lost update
would show as a wrong total), updates a shared key's metadata, writes a
key of its own (every fifth one longer than a chunk) and runs a query.
"""

import io
import sys

from encore.events.api import EventManager
from encore.storage.filesystem_store import FileSystemStore
from encore.storage.sqlite_store import SqliteStore


def main():
    kind, location, name, rounds = sys.argv[1:5]
    rounds = int(rounds)
    if kind == "sqlite":
        store = SqliteStore(location, event_manager=EventManager(), timeout=60)
    else:
        # fsync is not what this test is about, and slow on a busy disk.
        store = FileSystemStore(location, event_manager=EventManager(), durable=False)
    store.connect()
    for i in range(rounds):
        with store.transaction(f"{name} round {i}"):
            count = store.get_metadata("counter")["n"]
            store.set_metadata("counter", {"n": count + 1})
        store.update_metadata("shared", {name: i})
        size = 1_200_000 if i % 5 == 0 else 100
        store.set(
            f"{name}-{i}", (io.BytesIO(b"%d" % i * size), {"writer": name, "i": i})
        )
        store.query_keys(writer=name, i=i)
    store.disconnect()
    print("done")


if __name__ == "__main__":
    main()
