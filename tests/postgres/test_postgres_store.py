"""PostgresStore specifics: change events, identifiers, indexes, import."""

import io
import json
import subprocess
import sys
import threading
import time

import pytest

from encore.events.api import EventManager
from encore.storage.abstract_store import StoreError
from encore.storage.events import (
    StoreChangesMissedEvent,
    StoreDeleteEvent,
    StoreEvent,
    StoreModificationEvent,
    StoreSetEvent,
    StoreUpdateEvent,
)

psycopg = pytest.importorskip("psycopg")

from encore.storage.postgres_store import PostgresStore  # noqa: E402


class Recorder:
    """Records events; ``wait_for`` waits on a condition with a deadline."""

    def __init__(self, manager, cls=StoreEvent):
        self.events = []
        self.condition = threading.Condition()
        manager.connect(cls, self)

    def __call__(self, event):
        with self.condition:
            self.events.append(event)
            self.condition.notify_all()

    def wait_for(self, predicate, timeout=30.0):
        deadline = time.monotonic() + timeout
        with self.condition:
            while not predicate(self.events):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out; events: {self.events!r}")
                self.condition.wait(remaining)

    def modifications(self):
        with self.condition:
            return [
                (type(e).__name__, e.key, e.metadata)
                for e in self.events
                if isinstance(e, StoreModificationEvent)
            ]


@pytest.fixture
def make_store(pg, table):
    stores = []

    def make(**kwargs):
        store = PostgresStore(pg.dsn, table, event_manager=EventManager(), **kwargs)
        store.connect()
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.disconnect()


def test_other_connections_changes_are_events_exactly_once(make_store):
    a = make_store()
    b = make_store()
    heard_a = Recorder(a.event_manager, StoreModificationEvent)
    heard_b = Recorder(b.event_manager, StoreModificationEvent)
    a.set("k", (b"v", {"x": 1}))
    a.update_metadata("k", {"y": 2})
    a.set_metadata("m", {"z": 3})
    with a.transaction("two"):
        a.set("t1", (b"1", {}))
        a.set("t2", (b"2", {}))
    a.delete("k")
    expected = [
        ("StoreSetEvent", "k", {"x": 1}),
        ("StoreUpdateEvent", "k", {"x": 1, "y": 2}),
        ("StoreSetEvent", "m", {"z": 3}),
        ("StoreSetEvent", "t1", {}),
        ("StoreSetEvent", "t2", {}),
        ("StoreDeleteEvent", "k", {"x": 1, "y": 2}),
    ]
    heard_b.wait_for(lambda events: len(events) >= len(expected))
    # A marker written last: once B heard it, anything extra would be in.
    a.set("marker", (b"", {}))
    heard_b.wait_for(lambda events: events and events[-1].key == "marker")
    assert heard_b.modifications()[:-1] == expected
    assert all(e.source is b for e in heard_b.events)
    # A's own changes: emitted once, locally, never again by its listener.
    heard_a.wait_for(lambda events: events and events[-1].key == "marker")
    b.set("from-b", (b"", {}))
    heard_a.wait_for(lambda events: events[-1].key == "from-b")
    assert heard_a.modifications()[:-2] == expected


def test_rolled_back_transaction_is_not_heard(make_store):
    a = make_store()
    b = make_store()
    heard_b = Recorder(b.event_manager, StoreModificationEvent)
    with pytest.raises(RuntimeError):
        with a.transaction():
            a.set("gone", (b"x", {}))
            raise RuntimeError("roll back")
    a.set("after", (b"", {}))
    heard_b.wait_for(lambda events: events)
    assert [e.key for e in heard_b.events] == ["after"]
    assert not b.exists("gone")


def test_another_process_change_is_heard(pg, table, make_store):
    b = make_store()
    heard = Recorder(b.event_manager, StoreModificationEvent)
    script = (
        "import sys\n"
        "from encore.events.api import EventManager\n"
        "from encore.storage.postgres_store import PostgresStore\n"
        "s = PostgresStore(sys.argv[1], sys.argv[2], event_manager=EventManager(),"
        " listen=False)\n"
        "s.connect(); s.set('p', (b'data', {'who': 'child'})); s.disconnect()\n"
    )
    subprocess.run([sys.executable, "-c", script, pg.dsn, table], check=True)
    heard.wait_for(lambda events: events)
    assert heard.modifications() == [("StoreSetEvent", "p", {"who": "child"})]
    assert b.to_bytes("p") == b"data"


def test_metadata_too_large_for_a_payload_is_read_back(make_store):
    a = make_store()
    b = make_store()
    heard = Recorder(b.event_manager, StoreSetEvent)
    big = {"text": "x" * 20000}
    a.set("big", (b"", big))
    heard.wait_for(lambda events: events)
    assert heard.events[0].metadata == big


def test_update_and_delete_event_classes(make_store):
    a = make_store()
    b = make_store()
    heard = Recorder(b.event_manager, StoreModificationEvent)
    a.set("k", (b"", {}))
    a.update_metadata("k", {"a": 1})
    a.delete("k")
    heard.wait_for(lambda events: len(events) == 3)
    assert [type(e) for e in heard.events] == [
        StoreSetEvent,
        StoreUpdateEvent,
        StoreDeleteEvent,
    ]


@pytest.mark.parametrize(
    "table_name",
    ["a b", 'x"; DROP TABLE y; --', "1abc", "", None, "t" * 42, "caf\u00e9"],
)
def test_bad_table_names_are_refused(pg, table_name):
    with pytest.raises(ValueError):
        PostgresStore(pg.dsn, table_name, event_manager=EventManager())


def test_values_are_bound_parameters(make_store, pg, table):
    store = make_store()
    key = "x'); DROP TABLE encore_store; --"
    metadata = {"q": "'\"; DROP TABLE x", "nul": "a\x00b"}
    store.set(key, (b"d", metadata))
    assert store.query(q="x' OR 1=1 --") == []
    assert store.query(nul="a\x00b") == [(key, metadata)]
    assert store.query(nul="a\ufffdb") == []
    with psycopg.connect(pg.dsn) as raw:
        rows = raw.execute(f'SELECT key, meta FROM "{table}"').fetchall()
    assert [(bytes(k).decode(), json.loads(m)) for k, m in rows] == [(key, metadata)]


def test_query_semantics_match_python_equality(make_store):
    store = make_store()
    store.set("t", (b"", {"v": True, "l": [1, 2], "d": {"a": 1, "b": 2}}))
    store.set("one", (b"", {"v": 1, "l": [1], "d": {"a": 1}}))
    store.set("f", (b"", {"v": 1.0}))
    store.set("zero", (b"", {"v": 0}))
    assert sorted(store.query_keys(v=True)) == ["f", "one", "t"]
    assert sorted(store.query_keys(v=1)) == ["f", "one", "t"]
    assert store.query_keys(v=False) == ["zero"]
    assert store.query_keys(l=[1]) == ["one"]
    assert store.query_keys(d={"a": 1}) == ["one"]


def test_query_and_glob_use_indexes(make_store, pg, table):
    store = make_store()
    with psycopg.connect(pg.dsn) as raw:
        raw.execute("SET enable_seqscan = off")
        plan = raw.execute(
            f'EXPLAIN SELECT key, meta FROM "{table}" WHERE meta_index @> '
            "'{\"a\": 1}'::jsonb"
        ).fetchall()
        assert "Bitmap Index Scan" in str(plan), plan
        plan = raw.execute(
            f"EXPLAIN SELECT key FROM \"{table}\" WHERE key >= 'ab'::bytea "
            "AND key < 'ac'::bytea"
        ).fetchall()
        assert "Index" in str(plan), plan
    for name in ["ab1", "ab2", "abc", "b", "a\xff", "\U0001f600x"]:
        store.set(name, (b"", {}))
    assert sorted(store.glob("ab*")) == ["ab1", "ab2", "abc"]
    assert sorted(store.glob("ab?")) == ["ab1", "ab2", "abc"]
    assert store.glob("a\xff") == ["a\xff"]
    assert store.glob("\U0001f600*") == ["\U0001f600x"]
    assert sorted(store.glob("*")) == sorted(store.query_keys())


def index_options(dsn, table):
    with psycopg.connect(dsn) as raw:
        return raw.execute(
            "SELECT reloptions FROM pg_class WHERE relname = %s", (f"{table}__meta",)
        ).fetchone()[0]


def test_the_metadata_index_has_no_pending_list(make_store, pg, table):
    # GIN's fastupdate makes queries scan a list of recent entries: off, in
    # a new table and in one made before (turned off when a store connects).
    store = make_store()
    assert index_options(pg.dsn, table) == ["fastupdate=off"]
    store.disconnect()
    with psycopg.connect(pg.dsn, autocommit=True) as raw:
        raw.execute(f'ALTER INDEX "{table}__meta" SET (fastupdate = on)')
        raw.execute(
            f'INSERT INTO "{table}" (key, meta, meta_index, size, created, modified) '
            "SELECT ('k' || i)::bytea, '{\"g\": 1}', '{\"g\": 1}', 0, 0, 0 "
            "FROM generate_series(1, 500) i"
        )
    assert index_options(pg.dsn, table) == ["fastupdate=on"]
    again = make_store()
    assert index_options(pg.dsn, table) == ["fastupdate=off"]
    with psycopg.connect(pg.dsn, autocommit=True) as raw:
        cleaned = raw.execute(
            "SELECT gin_clean_pending_list(%s::regclass)", (f'"{table}__meta"',)
        ).fetchone()[0]
    assert cleaned == 0  # the store emptied it
    assert len(again.query_keys(g=1)) == 500


def test_streamed_value_replaced_while_read_is_an_error(make_store):
    store = make_store()
    size = 3 * 1048576 + 5
    store.set("big", (io.BytesIO(b"a" * size), {}))
    stream = store.get("big").data
    assert stream.read(10) == b"a" * 10
    store.set("big", (io.BytesIO(b"b" * size), {}))
    with pytest.raises(StoreError):
        stream.read()
    stream.close()
    assert store.to_bytes("big") == b"b" * size


def test_unreachable_server_is_a_store_error(tmp_path):
    store = PostgresStore(
        f"host={tmp_path} port=1 dbname=x user=x",
        event_manager=EventManager(),
        connect_timeout=2,
    )
    with pytest.raises(StoreError, match="cannot connect"):
        store.connect()
    assert not store.is_connected()
    assert store.connection_state == "disconnected"


def test_a_table_of_another_shape_is_refused(pg, table):
    with psycopg.connect(pg.dsn, autocommit=True) as raw:
        raw.execute(f'CREATE TABLE "{table}" (id int)')
    store = PostgresStore(pg.dsn, table, event_manager=EventManager())
    with pytest.raises(StoreError, match="not a store table"):
        store.connect()


def test_import_error_names_the_extra():
    script = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "import encore.storage, encore.storage.sqlite_store\n"
        "try:\n"
        "    import encore.storage.postgres_store\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert "'postgres' extra" in result.stdout


def test_missed_event_class_is_a_store_event():
    assert issubclass(StoreChangesMissedEvent, StoreEvent)
