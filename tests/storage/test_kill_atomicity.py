"""A value is replaced all at once, even when the writer is killed (-9).

A child process rewrites keys in a loop (``rewriter_child.py``); it is
killed with SIGKILL at a random moment, many times over. After each kill
every key must hold a complete value whose metadata matches its data,
generations never go back, and in transaction mode all keys hold the same
generation.
"""

import hashlib
import os
import pathlib
import random
import signal
import subprocess
import sys

import pytest

from encore.events.api import EventManager
from encore.storage.filesystem_store import FileSystemStore, init_shared_store
from encore.storage.sqlite_store import SqliteStore

CHILD = pathlib.Path(__file__).with_name("rewriter_child.py")
KILLS = 12
KEYS = ["k0", "k1", "k2", "a/b", "caf\u00e9", "x" * 300]


def open_store(kind, directory):
    manager = EventManager()
    if kind == "sqlite":
        store = SqliteStore(os.path.join(directory, "kill.db"), event_manager=manager)
    else:
        store = FileSystemStore(os.path.join(directory, "store"), event_manager=manager)
    store.connect()
    return store


def run_and_kill(kind, directory, mode, env, rng):
    child = subprocess.Popen(
        [sys.executable, str(CHILD), kind, str(directory), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline()
        assert line == "ready\n", child.stderr.read()
        # Let it run a random while so the kill lands anywhere in a write.
        try:
            child.wait(timeout=rng.uniform(0.0, 0.08))
        except subprocess.TimeoutExpired:
            pass
        assert child.poll() is None, child.stderr.read()
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()


def check(kind, directory, mode, previous):
    store = open_store(kind, directory)
    try:
        assert sorted(store.query_keys()) == sorted(KEYS)
        generations = {}
        for key in KEYS:
            value = store.get(key)
            with value.data as stream:
                data = stream.read()
            metadata = value.metadata
            assert hashlib.sha256(data).hexdigest() == metadata["sha256"], key
            assert len(data) == metadata["size"] == value.size, key
            header = f"{key}:{metadata['generation']}:".encode()
            assert data == (header * (len(data) // len(header) + 1))[: len(data)]
            assert metadata["generation"] >= previous.get(key, 0), key
            generations[key] = metadata["generation"]
        if mode == "transaction":
            assert len(set(generations.values())) == 1, generations
        if kind == "sqlite":
            # Chunks staged by the killed writer were cleaned up on connect.
            orphans = store._execute(
                "SELECT count(*) FROM store__chunks WHERE blob_id NOT IN "
                "(SELECT blob_id FROM store WHERE blob_id IS NOT NULL)"
            ).fetchone()[0]
            pending = store._execute("SELECT count(*) FROM store__pending").fetchone()
            assert (orphans, pending[0]) == (0, 0)
        return generations
    finally:
        store.disconnect()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["set", "transaction"])
@pytest.mark.parametrize("kind", ["filesystem", "sqlite"])
def test_values_survive_kill_9(kind, mode, tmp_path, child_env):
    if kind == "filesystem":
        init_shared_store(str(tmp_path / "store"))
    rng = random.Random(f"{kind}-{mode}")
    previous = {}
    for _ in range(KILLS):
        run_and_kill(kind, tmp_path, mode, child_env, rng)
        previous = check(kind, tmp_path, mode, previous)
    assert min(previous.values()) > 1
    if kind == "filesystem":
        names = os.listdir(tmp_path / "store")
        assert not [n for n in names if n.startswith((".undo", ".tmp"))], names
