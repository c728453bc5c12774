"""Two processes write the same SQLite database at once, without deadlock
or lost updates."""

import io
import pathlib
import subprocess
import sys

import pytest

from encore.events.api import EventManager
from encore.storage.sqlite_store import SqliteStore

CHILD = pathlib.Path(__file__).with_name("sqlite_writer_child.py")
ROUNDS = 150


@pytest.mark.slow
def test_two_writer_processes(tmp_path, child_env):
    database = str(tmp_path / "shared.db")
    store = SqliteStore(database, event_manager=EventManager())
    store.connect()
    store.set("counter", (io.BytesIO(b""), {"n": 0}))
    store.set("shared", (io.BytesIO(b""), {}))
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), database, name, str(ROUNDS)],
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
        assert store.get_metadata("counter") == {"n": 2 * ROUNDS}
        assert store.get_metadata("shared") == {"alpha": ROUNDS - 1, "beta": ROUNDS - 1}
        for name in ("alpha", "beta"):
            keys = store.query_keys(writer=name)
            assert len(keys) == ROUNDS
            assert store.to_bytes(f"{name}-0") == b"0" * 1_200_000
            assert store.to_bytes(f"{name}-7") == b"7" * 100
    finally:
        store.disconnect()
