"""One store object used from several threads at once."""

import io
import threading

import pytest

from encore.events.api import EventManager
from encore.storage.dict_memory_store import DictMemoryStore
from encore.storage.events import StoreSetEvent
from encore.storage.filesystem_store import FileSystemStore, init_shared_store
from encore.storage.sqlite_store import SqliteStore

THREADS = 4
ROUNDS = 40


def make(kind, tmp_path):
    manager = EventManager()
    if kind == "memory":
        return DictMemoryStore(manager)
    if kind == "sqlite":
        return SqliteStore(str(tmp_path / "t.db"), event_manager=manager)
    init_shared_store(str(tmp_path / "fs"))
    return FileSystemStore(str(tmp_path / "fs"), event_manager=manager, durable=False)


@pytest.mark.parametrize("kind", ["memory", "sqlite", "filesystem"])
def test_threads_share_a_store(kind, tmp_path):
    store = make(kind, tmp_path)
    store.connect()
    store.set("counter", (io.BytesIO(b""), {"n": 0}))
    seen = []
    store.event_manager.connect(StoreSetEvent, lambda e: seen.append(e.key))
    errors = []

    def work(name):
        try:
            for i in range(ROUNDS):
                with store.transaction(f"{name} {i}"):
                    n = store.get_metadata("counter")["n"]
                    store.set_metadata("counter", {"n": n + 1})
                key = f"{name}-{i}"
                store.set(key, (io.BytesIO(key.encode() * 50), {"t": name}))
                value = store.get(key)
                with value.data as stream:
                    assert stream.read() == key.encode() * 50
                assert store.query_keys(t=name)
        except Exception as error:  # reported below, in the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(f"t{n}",)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    try:
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert store.get_metadata("counter") == {"n": THREADS * ROUNDS}
        for n in range(THREADS):
            assert len(store.query_keys(t=f"t{n}")) == ROUNDS
        assert seen.count("counter") == THREADS * ROUNDS
    finally:
        store.disconnect()
