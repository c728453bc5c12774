"""Child process for tests/storage/test_locking_filesystem_store.py.

``locking_store_child.py exchange DIR`` opens its own LockingFileSystemStore
on DIR, prints ``ready``, sets, updates and deletes the key ``child``, then
waits (with a deadline) until it has heard the parent's set, update and
delete of ``parent`` as events, and prints every modification event it got
(the local ones of its own writes too) as one JSON line of
``[class name, key, metadata]``.

``locking_store_child.py hang-in-transaction DIR`` sets the key ``doomed``
inside a transaction, prints ``in transaction`` and waits to be killed.
"""

import io
import json
import sys
import threading
import time

from encore.events.api import EventManager
from encore.storage.events import StoreModificationEvent
from encore.storage.locking_filesystem_store import LockingFileSystemStore

DEADLINE = 60.0


def hang_in_transaction(directory: str) -> None:
    """Write inside a transaction, then wait there until killed."""
    store = LockingFileSystemStore(directory, event_manager=EventManager())
    store.connect()
    with store.transaction("never committed"):
        store.set("doomed", (io.BytesIO(b"x" * 100_000), {"doomed": True}))
        print("in transaction", flush=True)
        time.sleep(DEADLINE)
    raise SystemExit("was not killed")


def exchange(directory: str) -> None:
    """Run the exchange described in the module docstring."""
    manager = EventManager()
    heard = []
    done = threading.Event()

    def record(event):
        heard.append([type(event).__name__, event.key, event.metadata])
        if event.key == "parent" and event.action == "delete":
            done.set()

    manager.connect(StoreModificationEvent, record)
    store = LockingFileSystemStore(
        directory, remote_event_poll_interval=0.05, event_manager=manager
    )
    store.connect()
    print("ready", flush=True)
    store.set("child", (io.BytesIO(b"from the child"), {"by": "child"}))
    store.update_metadata("child", {"step": 2})
    store.delete("child")
    end = time.monotonic() + DEADLINE
    while not done.wait(0.05):
        if time.monotonic() > end:
            raise SystemExit(f"no delete of 'parent' heard; heard {heard}")
    store.disconnect()
    print(json.dumps(heard), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "exchange":
        exchange(sys.argv[2])
    elif sys.argv[1] == "hang-in-transaction":
        hang_in_transaction(sys.argv[2])
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]!r}")
