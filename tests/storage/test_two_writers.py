"""Two processes write the same store at once (a SQLite database, a
file system store directory), without deadlock or lost updates."""

import io
import pathlib
import subprocess
import sys

import pytest

from encore.events.api import EventManager
from encore.storage.filesystem_store import FileSystemStore, init_shared_store
from encore.storage.sqlite_store import SqliteStore

CHILD = pathlib.Path(__file__).with_name("writer_child.py")
ROUNDS = {"sqlite": 150, "filesystem": 60}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "filesystem"])
def test_two_writer_processes(kind, tmp_path, child_env):
    if kind == "sqlite":
        location = str(tmp_path / "shared.db")
        store = SqliteStore(location, event_manager=EventManager())
    else:
        location = str(tmp_path / "store")
        init_shared_store(location)
        store = FileSystemStore(location, event_manager=EventManager())
    store.connect()
    rounds = ROUNDS[kind]
    store.set("counter", (io.BytesIO(b""), {"n": 0}))
    store.set("shared", (io.BytesIO(b""), {}))
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), kind, location, name, str(rounds)],
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("alpha", "beta")
    ]
    try:
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            assert out == "done\n"
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
    try:
        assert store.get_metadata("counter") == {"n": 2 * rounds}
        assert store.get_metadata("shared") == {"alpha": rounds - 1, "beta": rounds - 1}
        for name in ("alpha", "beta"):
            keys = store.query_keys(writer=name)
            assert len(keys) == rounds
            assert store.to_bytes(f"{name}-0") == b"0" * 1_200_000
            assert store.to_bytes(f"{name}-7") == b"7" * 100
    finally:
        store.disconnect()
