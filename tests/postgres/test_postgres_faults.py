"""PostgresStore under faults: a writer killed mid-set, a server restart."""

import hashlib
import io
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

from encore.events.api import EventManager
from encore.storage.abstract_store import StoreError
from encore.storage.events import StoreChangesMissedEvent, StoreSetEvent

psycopg = pytest.importorskip("psycopg")

from encore.storage.postgres_store import PostgresStore  # noqa: E402

CHILD = pathlib.Path(__file__).with_name("pg_writer_child.py")
ROOT = pathlib.Path(__file__).resolve().parents[2]


def wait_until(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.slow
def test_writer_killed_mid_set_leaves_the_old_value(pg, table):
    store = PostgresStore(pg.dsn, table, event_manager=EventManager())
    store.connect()
    try:
        old = os.urandom(1048576) * 3 + b"tail"
        store.set("big", (io.BytesIO(old), {"generation": "old"}))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        child = subprocess.Popen(
            [sys.executable, str(CHILD), pg.dsn, table, "big"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout.readline() == "writing\n", child.stderr.read()
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=30) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
            child.stderr.close()
        assert store.get_metadata("big") == {"generation": "old"}
        value = store.get("big")
        assert value.size == len(old)
        digest = hashlib.sha256()
        for part in value.iterdata():
            digest.update(part)
        assert digest.digest() == hashlib.sha256(old).digest()
        # Nothing of the half value is left once the server notices the
        # dead client (its transaction is rolled back).
        with psycopg.connect(pg.dsn) as raw:
            wait_until(
                lambda: (
                    raw.execute(f'SELECT count(*) FROM "{table}__chunks"').fetchone()[0]
                    == 4
                ),
                what="the dead writer's chunks to go",
            )
    finally:
        store.disconnect()


@pytest.mark.slow
def test_server_restart_reconnects_reports_the_gap_and_serves(pg, table):
    a = PostgresStore(pg.dsn, table, event_manager=EventManager(), reconnect_max=0.5)
    b = PostgresStore(pg.dsn, table, event_manager=EventManager(), reconnect_max=0.5)
    a.connect()
    b.connect()
    events = []
    lock = threading.Lock()

    def record(event):
        with lock:
            events.append(event)

    a.event_manager.connect(StoreChangesMissedEvent, record)
    a.event_manager.connect(StoreSetEvent, record)
    try:
        b.set("before", (b"1", {}))
        wait_until(
            lambda: any(getattr(e, "key", None) == "before" for e in list(events))
        )
        pg.restart()
        wait_until(
            lambda: any(isinstance(e, StoreChangesMissedEvent) for e in list(events)),
            what="StoreChangesMissedEvent",
        )
        assert a.connection_state == "connected"
        assert a.reconnections >= 1
        # Both main connections were cut: the next calls reconnect by
        # themselves, reads and writes alike.
        assert a.to_bytes("before") == b"1"
        b.set("after", (b"2", {"n": 2}))
        wait_until(
            lambda: any(getattr(e, "key", None) == "after" for e in list(events))
        )
        missed = [e for e in events if isinstance(e, StoreChangesMissedEvent)]
        assert len(missed) == 1
        assert [e.key for e in events if isinstance(e, StoreSetEvent)] == [
            "before",
            "after",
        ]
    finally:
        a.disconnect()
        b.disconnect()


def test_calls_fail_clearly_while_the_server_is_away(pg, table):
    store = PostgresStore(pg.dsn, table, event_manager=EventManager(), listen=False)
    store.connect()
    store.disconnect()
    with pytest.raises(StoreError, match="not connected"):
        store.get("x")


def test_two_writers_of_one_new_key_leave_only_the_last_value(pg, table):
    # The first writer has inserted the new key's row but not committed
    # (it is inside a transaction); the second writer of that key must
    # wait for it and then replace its value, chunks included, instead of
    # overwriting its row and leaving its chunks behind.
    first = PostgresStore(pg.dsn, table, event_manager=EventManager(), listen=False)
    second = PostgresStore(pg.dsn, table, event_manager=EventManager(), listen=False)
    first.connect()
    second.connect()
    big = 3 * 1048576
    errors = []

    def write_second():
        try:
            second.set("new", (io.BytesIO(b"b" * big), {"by": "second"}))
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    writer = threading.Thread(target=write_second)
    try:
        with psycopg.connect(pg.dsn, autocommit=True) as raw:
            with first.transaction("first"):
                first.set("new", (io.BytesIO(b"a" * big), {"by": "first"}))
                writer.start()
                wait_until(
                    lambda: (
                        raw.execute(
                            # Nothing else runs on the private cluster now.
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE wait_event_type = 'Lock'"
                        ).fetchone()[0]
                        == 1
                    ),
                    what="the second writer to wait for the first",
                )
            writer.join(60)
            assert not writer.is_alive() and not errors, errors
            assert second.get_metadata("new") == {"by": "second"}
            assert first.to_bytes("new") == b"b" * big
            chunks = raw.execute(
                f'SELECT count(*), count(DISTINCT blob_id) FROM "{table}__chunks"'
            ).fetchone()
            assert chunks == (3, 1)
    finally:
        if writer.is_alive():
            writer.join(60)
        first.disconnect()
        second.disconnect()
