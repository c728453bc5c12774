"""Child process for the kill -9 atomicity tests (run as a script).

Usage: python rewriter_child.py {sqlite|filesystem} DIRECTORY {set|transaction}

Rewrites a set of keys in an endless loop, generation after generation,
each value's metadata naming its generation and the SHA-256 of its data.
``set`` mode writes key by key; ``transaction`` mode writes each
generation in one transaction. Prints ``ready`` once the first generation
is written, then keeps going until it is killed.
"""

import hashlib
import os
import sys

from encore.events.api import EventManager
from encore.storage.filesystem_store import FileSystemStore
from encore.storage.sqlite_store import SqliteStore

KEYS = ["k0", "k1", "k2", "a/b", "caf\u00e9", "x" * 300]
SIZES = [0, 7, 5000, 1_500_000, 70_000]


def value(key, generation):
    """Data and metadata of ``key`` at ``generation``."""
    size = SIZES[(generation + KEYS.index(key)) % len(SIZES)]
    header = f"{key}:{generation}:".encode()
    data = (header * (size // len(header) + 1))[:size]
    metadata = {
        "generation": generation,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": size,
    }
    return data, metadata


def open_store(kind, directory):
    manager = EventManager()
    if kind == "sqlite":
        store = SqliteStore(os.path.join(directory, "kill.db"), event_manager=manager)
    else:
        store = FileSystemStore(os.path.join(directory, "store"), event_manager=manager)
    store.connect()
    return store


def main():
    kind, directory, mode = sys.argv[1:4]
    store = open_store(kind, directory)
    generation = max(
        (md["generation"] for _, md in store.query(select=["generation"])), default=0
    )
    announced = False
    while True:
        generation += 1
        if mode == "transaction":
            with store.transaction(f"generation {generation}"):
                for key in KEYS:
                    store.set(key, value(key, generation))
        else:
            for key in KEYS:
                store.set(key, value(key, generation))
        if not announced:
            print("ready", flush=True)
            announced = True


if __name__ == "__main__":
    main()
