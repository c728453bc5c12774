"""Conformance tests for key-value store implementations.

Plain ``unittest`` mixins (no pytest needed), one per capability:

- ``StoreReadTests``: every read method, against the fixture ``FIXTURE``;
- ``StoreWriteTests``: every write method and its events;
- ``StoreTransactionTests``: transactions (commit, nesting, rollback, held
  events);
- ``StoreKeyTests``: keys with unusual characters.

Use them by subclassing ``unittest.TestCase`` and the mixins you need and
providing the store::

    class TestMyStore(StoreReadTests, StoreWriteTests, unittest.TestCase):
        def make_store(self):
            return MyStore(event_manager=EventManager())

The default ``setUp`` calls ``make_store()``, connects the store and fills
it with ``FIXTURE`` through ``set`` (``fill_store``); ``tearDown``
disconnects it and calls ``destroy_store()``. A read-only store overrides
``setUp`` instead and arranges for its backend to hold exactly
``FIXTURE``, then sets ``self.store``.

Class attributes switch checks off where a store legitimately differs:
``can_rollback`` (transactions undo writes), ``tracks_created`` (values
have a ``created`` time), ``unusual_keys`` (keys with ``/``, NUL,
non-ASCII ... are supported), ``reports_progress`` (long copies emit
``StoreProgress*`` events). Stores whose events arrive asynchronously
override ``settle_events()`` to wait until every event emitted so far has
been delivered.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any

from .abstract_store import Value
from .events import (
    StoreDeleteEvent,
    StoreEvent,
    StoreKeyEvent,
    StoreModificationEvent,
    StoreProgressEndEvent,
    StoreProgressEvent,
    StoreProgressStartEvent,
    StoreProgressStepEvent,
    StoreSetEvent,
    StoreTransactionEndEvent,
    StoreTransactionStartEvent,
    StoreUpdateEvent,
)

__all__ = [
    "FIXTURE",
    "fill_store",
    "StoreTestBase",
    "StoreReadTests",
    "StoreWriteTests",
    "StoreTransactionTests",
    "StoreKeyTests",
]

#: What a store holds at the start of every test: key -> (data, metadata).
FIXTURE: dict[str, tuple[bytes, dict]] = {
    "test1.txt": (
        b"test2\n",
        {
            "a_str": "test3",
            "an_int": 1,
            "a_float": 2.0,
            "a_bool": True,
            "a_list": ["one", "two", "three"],
            "a_dict": {"one": 1, "two": 2, "three": 3},
        },
    ),
    "test2.txt": (
        b"test4\n",
        {
            "a_str": "test5",
            "an_int": 2,
            "a_float": 3.0,
            "a_bool": False,
            "a_list": ["one", "two"],
            "a_dict": {"one": 1, "two": 2},
            "a_none": None,
        },
    ),
    "test3.jpg": (
        b"test6\n",
        {
            "a_str": "test7",
            "an_int": 3,
            "a_float": 4.0,
            "a_bool": True,
            "a_list": ["one", "two", "three"],
            "a_dict": {"one": 1, "two": 2, "three": 3},
        },
    ),
    "test4.jpg": (
        b"test8\n" * 10,
        {
            "a_str": "test9",
            "an_int": 4,
            "a_float": 5.0,
            "a_bool": False,
            "a_list": [],
            "a_dict": {},
        },
    ),
    "empty": (b"", {}),
}


def fill_store(store: Any, fixture: dict | None = None) -> None:
    """Write ``fixture`` (default ``FIXTURE``) into a writable store."""
    for key, (data, metadata) in (FIXTURE if fixture is None else fixture).items():
        store.set(key, (io.BytesIO(data), dict(metadata)))


class _Recorder:
    """A listener that records the events it receives."""

    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)

    def of(self, cls: type) -> list:
        return [event for event in self.events if isinstance(event, cls)]


class StoreTestBase:
    """Fixture handling shared by the mixins (see the module docstring)."""

    can_rollback = True
    tracks_created = True
    unusual_keys = True
    reports_progress = True
    #: Size of the value used to check progress events of long copies.
    long_value_size = 3 * 1048576 + 17

    store: Any

    # -- hooks -------------------------------------------------------------------

    def make_store(self) -> Any:
        """Return a new, empty store (override, or override ``setUp``)."""
        raise NotImplementedError("override make_store() or setUp()")

    def destroy_store(self) -> None:
        """Release what ``make_store`` created (override if needed)."""

    def settle_events(self) -> None:
        """Wait until events emitted so far were delivered (override)."""

    # -- unittest ------------------------------------------------------------------

    def setUp(self) -> None:
        """Make the store with :meth:`make_store`, connect it and fill it."""
        self.store = self.make_store()
        if not self.store.is_connected():
            self.store.connect()
        fill_store(self.store)

    def tearDown(self) -> None:
        """Disconnect the store, then release what the subclass made."""
        try:
            self.store.disconnect()
        finally:
            self.destroy_store()

    # -- helpers -------------------------------------------------------------------

    def listen(self, cls: type = StoreEvent) -> _Recorder:
        """Record events of ``cls`` from the store's event manager."""
        recorder = _Recorder()
        manager = self.store.event_manager
        manager.connect(cls, recorder)
        self.addCleanup(manager.disconnect, cls, recorder)
        return recorder

    def read(self, stream: Any) -> bytes:
        """Read a stream to the end and close it."""
        with stream:
            return stream.read()

    def temp_path(self) -> str:
        """A path in a temporary directory removed after the test."""
        directory = tempfile.TemporaryDirectory(prefix="encst")
        self.addCleanup(directory.cleanup)
        return os.path.join(directory.name, "file.bin")

    def assertHasEntries(self, store_keys: Any, expected: Any) -> None:
        """Assert two collections of keys hold the same keys, in any order."""
        self.assertEqual(sorted(store_keys), sorted(expected))


class StoreReadTests(StoreTestBase):
    """Checks of the read API against ``FIXTURE``."""

    # exists / get -----

    def test_exists(self):
        for key in FIXTURE:
            self.assertTrue(self.store.exists(key), key)
        self.assertFalse(self.store.exists("missing"))
        self.assertFalse(self.store.exists("TEST1.TXT"))

    def test_get(self):
        for key, (data, metadata) in FIXTURE.items():
            value = self.store.get(key)
            self.assertIsInstance(value, Value)
            self.assertEqual(self.read(value.data), data)
            self.assertEqual(value.metadata, metadata)
            self.assertEqual(value.size, len(data))
            self.assertIsInstance(value.modified, float)
            if self.tracks_created:
                self.assertIsInstance(value.created, float)
                self.assertLessEqual(value.created, value.modified)

    def test_get_unpacks_as_pair(self):
        data, metadata = self.store.get("test1.txt")
        self.assertEqual(self.read(data), b"test2\n")
        self.assertEqual(metadata, FIXTURE["test1.txt"][1])
        value = self.store.get("test1.txt")
        self.assertEqual(value[1], FIXTURE["test1.txt"][1])
        self.assertEqual(self.read(value[0]), b"test2\n")

    def test_get_missing(self):
        with self.assertRaises(KeyError):
            self.store.get("missing")

    def test_get_returns_copies(self):
        value = self.store.get("test1.txt")
        value.metadata["a_str"] = "changed"
        value.metadata["a_list"].append("four")
        value.metadata["a_dict"]["four"] = 4
        self.assertEqual(self.store.get("test1.txt").metadata, FIXTURE["test1.txt"][1])
        metadata = self.store.get_metadata("test1.txt")
        metadata["a_list"].append("four")
        self.assertEqual(self.store.get_metadata("test1.txt"), FIXTURE["test1.txt"][1])

    def test_value_range_and_iterdata(self):
        value = self.store.get("test1.txt")
        self.assertEqual(self.read(value.range(1, 3)), b"es")
        self.assertEqual(self.read(value.range(2)), b"st2\n")
        self.assertEqual(self.read(value.range(end=2)), b"te")
        self.assertEqual(b"".join(value.iterdata(buffer_size=2)), b"test2\n")

    def test_get_data(self):
        for key, (data, _) in FIXTURE.items():
            self.assertEqual(self.read(self.store.get_data(key)), data)
        with self.assertRaises(KeyError):
            self.store.get_data("missing")

    def test_get_data_buffered_reads(self):
        with self.store.get_data("test4.jpg") as stream:
            parts = []
            while chunk := stream.read(7):
                self.assertLessEqual(len(chunk), 7)
                parts.append(chunk)
        self.assertEqual(b"".join(parts), FIXTURE["test4.jpg"][0])

    def test_get_data_range(self):
        get = self.store.get_data_range
        self.assertEqual(self.read(get("test1.txt", 1, 3)), b"es")
        self.assertEqual(self.read(get("test1.txt", None, 3)), b"tes")
        self.assertEqual(self.read(get("test1.txt", 3, None)), b"t2\n")
        self.assertEqual(self.read(get("test1.txt")), b"test2\n")
        self.assertEqual(self.read(get("test1.txt", 2, 100)), b"st2\n")
        self.assertEqual(self.read(get("test1.txt", 3, 3)), b"")
        with self.assertRaises(KeyError):
            get("missing", 0, 1)

    def test_get_metadata(self):
        for key, (_, metadata) in FIXTURE.items():
            self.assertEqual(self.store.get_metadata(key), metadata)
        with self.assertRaises(KeyError):
            self.store.get_metadata("missing")

    def test_get_metadata_select(self):
        self.assertEqual(
            self.store.get_metadata("test1.txt", select=["a_str", "an_int"]),
            {"a_str": "test3", "an_int": 1},
        )
        self.assertEqual(
            self.store.get_metadata("test1.txt", select=["a_str", "absent"]),
            {"a_str": "test3"},
        )
        self.assertEqual(self.store.get_metadata("test1.txt", select=[]), {})

    # multi -----

    def test_multiget(self):
        keys = ["test1.txt", "test2.txt", "empty"]
        values = list(self.store.multiget(keys))
        self.assertEqual(len(values), 3)
        for key, value in zip(keys, values):
            self.assertEqual(self.read(value.data), FIXTURE[key][0])
            self.assertEqual(value.metadata, FIXTURE[key][1])
        with self.assertRaises(KeyError):
            list(self.store.multiget(["test1.txt", "missing"]))

    def test_multiget_data(self):
        keys = ["test3.jpg", "test1.txt"]
        datas = [self.read(s) for s in self.store.multiget_data(keys)]
        self.assertEqual(datas, [FIXTURE[key][0] for key in keys])
        with self.assertRaises(KeyError):
            for stream in self.store.multiget_data(["missing"]):
                stream.close()

    def test_multiget_metadata(self):
        keys = ["test3.jpg", "test1.txt"]
        self.assertEqual(
            list(self.store.multiget_metadata(keys)),
            [FIXTURE[key][1] for key in keys],
        )
        self.assertEqual(
            list(self.store.multiget_metadata(keys, select=["an_int", "nope"])),
            [{"an_int": 3}, {"an_int": 1}],
        )
        with self.assertRaises(KeyError):
            list(self.store.multiget_metadata(["missing"]))

    # query -----

    def test_query_everything(self):
        result = dict(self.store.query())
        self.assertEqual(result, {key: md for key, (_, md) in FIXTURE.items()})

    def test_query(self):
        self.assertEqual(
            dict(self.store.query(a_str="test5")),
            {"test2.txt": FIXTURE["test2.txt"][1]},
        )
        self.assertHasEntries(
            [k for k, _ in self.store.query(a_bool=True)], ["test1.txt", "test3.jpg"]
        )
        self.assertHasEntries(
            [k for k, _ in self.store.query(a_bool=True, an_int=3)], ["test3.jpg"]
        )
        self.assertEqual(list(self.store.query(a_str="nothing")), [])
        self.assertEqual(list(self.store.query(absent_name=1)), [])

    def test_query_none_is_not_absent(self):
        self.assertEqual([k for k, _ in self.store.query(a_none=None)], ["test2.txt"])

    def test_query_structured_values(self):
        self.assertHasEntries(
            [k for k, _ in self.store.query(a_list=["one", "two", "three"])],
            ["test1.txt", "test3.jpg"],
        )
        self.assertHasEntries(
            [k for k, _ in self.store.query(a_dict={"one": 1, "two": 2})],
            ["test2.txt"],
        )
        self.assertHasEntries(
            [k for k, _ in self.store.query(a_float=3.0)], ["test2.txt"]
        )

    def test_query_select(self):
        result = dict(self.store.query(select=["an_int", "absent"], a_bool=False))
        self.assertEqual(
            result, {"test2.txt": {"an_int": 2}, "test4.jpg": {"an_int": 4}}
        )

    def test_query_keys(self):
        self.assertHasEntries(self.store.query_keys(), FIXTURE)
        self.assertHasEntries(
            self.store.query_keys(a_bool=False), ["test2.txt", "test4.jpg"]
        )
        self.assertEqual(list(self.store.query_keys(a_str="nothing")), [])

    def test_glob(self):
        self.assertHasEntries(self.store.glob("*.txt"), ["test1.txt", "test2.txt"])
        self.assertHasEntries(self.store.glob("test?.jpg"), ["test3.jpg", "test4.jpg"])
        self.assertHasEntries(self.store.glob("*"), FIXTURE)
        self.assertEqual(list(self.store.glob("*.TXT")), [])

    # copies -----

    def test_to_bytes(self):
        for key, (data, _) in FIXTURE.items():
            self.assertEqual(self.store.to_bytes(key), data)
        with self.assertRaises(KeyError):
            self.store.to_bytes("missing")

    def test_to_file(self):
        path = self.temp_path()
        self.store.to_file("test4.jpg", path)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), FIXTURE["test4.jpg"][0])
        other = path + ".2"
        with self.assertRaises(KeyError):
            self.store.to_file("missing", other)
        self.assertFalse(os.path.exists(other))


class StoreWriteTests(StoreTestBase):
    """Checks of the write API and of the events writes emit."""

    def _long_data(self) -> bytes:
        block = bytes(range(256)) * 4096
        repeat = self.long_value_size // len(block) + 1
        return (block * repeat)[: self.long_value_size]

    # set -----

    def test_set_new_key(self):
        events = self.listen()
        self.store.set("new", (io.BytesIO(b"new data"), {"n": 1}))
        self.settle_events()
        self.assertEqual(self.store.to_bytes("new"), b"new data")
        self.assertEqual(self.store.get_metadata("new"), {"n": 1})
        sets = events.of(StoreSetEvent)
        self.assertEqual(len(sets), 1)
        self.assertEqual(sets[0].key, "new")
        self.assertEqual(sets[0].metadata, {"n": 1})
        self.assertEqual(sets[0].action, "set")
        self.assertEqual(events.of(StoreProgressEvent), [])

    def test_set_replaces(self):
        self.store.set("test1.txt", (io.BytesIO(b"other"), {"x": "y"}))
        self.assertEqual(self.store.to_bytes("test1.txt"), b"other")
        self.assertEqual(self.store.get_metadata("test1.txt"), {"x": "y"})

    def test_set_copies_metadata(self):
        metadata = {"a": [1, 2], "b": {"c": 1}}
        self.store.set("new", (io.BytesIO(b""), metadata))
        metadata["a"].append(3)
        metadata["b"]["d"] = 2
        metadata["e"] = 1
        self.assertEqual(self.store.get_metadata("new"), {"a": [1, 2], "b": {"c": 1}})

    def test_set_from_value(self):
        self.store.set("copy", self.store.get("test1.txt"))
        self.assertEqual(self.store.to_bytes("copy"), FIXTURE["test1.txt"][0])
        self.assertEqual(self.store.get_metadata("copy"), FIXTURE["test1.txt"][1])

    def test_set_replaces_with_own_value(self):
        self.store.set("test4.jpg", self.store.get("test4.jpg"))
        self.assertEqual(self.store.to_bytes("test4.jpg"), FIXTURE["test4.jpg"][0])

    def test_set_refuses_unstorable_metadata(self):
        events = self.listen()
        bad = [
            {"a": object()},
            {"a": {1: "int key"}},
            {"a": float("nan")},
            {"a": {"b": [1, {2, 3}]}},
            {1: "x"},
            ["not", "a", "dict"],
        ]
        for metadata in bad:
            with self.subTest(metadata=repr(metadata)):
                with self.assertRaises(ValueError):
                    self.store.set("new", (io.BytesIO(b"x"), metadata))
                self.assertFalse(self.store.exists("new"))
                with self.assertRaises(ValueError):
                    self.store.set("test1.txt", (io.BytesIO(b"x"), metadata))
                with self.assertRaises(ValueError):
                    self.store.set_metadata("test1.txt", metadata)
                with self.assertRaises(ValueError):
                    self.store.update_metadata("test1.txt", metadata)
        self.assertEqual(self.store.to_bytes("test1.txt"), FIXTURE["test1.txt"][0])
        self.assertEqual(self.store.get_metadata("test1.txt"), FIXTURE["test1.txt"][1])
        self.settle_events()
        self.assertEqual(events.of(StoreModificationEvent), [])

    def test_set_failing_stream_keeps_old_value(self):
        class Failing(io.RawIOBase):
            def __init__(self):
                self.sent = 0

            def readable(self):
                return True

            def readinto(self, buffer):
                if self.sent > 3 * 1048576:
                    raise OSError("source broke")
                n = len(buffer)
                buffer[:n] = b"x" * n
                self.sent += n
                return n

        events = self.listen(StoreModificationEvent)
        with self.assertRaises(OSError):
            self.store.set("test1.txt", (Failing(), {"broken": True}))
        self.assertEqual(self.store.to_bytes("test1.txt"), FIXTURE["test1.txt"][0])
        self.assertEqual(self.store.get_metadata("test1.txt"), FIXTURE["test1.txt"][1])
        self.settle_events()
        self.assertEqual(events.events, [])

    def test_set_long_value_progress(self):
        if not self.reports_progress:
            return
        data = self._long_data()
        events = self.listen()
        self.store.set("long", (io.BytesIO(data), {"long": True}))
        self.settle_events()
        # Check the operation the set started; a store may also pass on the
        # progress of others (a composite's inner store, for instance).
        start = events.of(StoreProgressStartEvent)[0]
        progress = [
            e
            for e in events.of(StoreProgressEvent)
            if e.operation_id == start.operation_id
        ]
        kinds = [type(e) for e in events.events]
        self.assertEqual(self.store.to_bytes("long"), data)
        self.assertIsInstance(progress[0], StoreProgressStartEvent)
        self.assertIsInstance(progress[-1], StoreProgressEndEvent)
        self.assertEqual(progress[-1].exit_state, "normal")
        steps = [e for e in progress if isinstance(e, StoreProgressStepEvent)]
        self.assertGreaterEqual(len(steps), 2)
        self.assertEqual(steps[-1].step, len(data))
        from encore.events.progress_events import ProgressEvent

        for event in progress:
            self.assertIsInstance(event, ProgressEvent)
            self.assertIsInstance(event, StoreKeyEvent)
            self.assertEqual(event.key, "long")
            self.assertIs(event.source, self.store)
        # The set event comes after the copy has finished.
        end = events.events.index(progress[-1])
        self.assertLess(end, kinds.index(StoreSetEvent))

    def test_long_value_round_trip_through_files(self):
        data = self._long_data()
        source = self.temp_path()
        with open(source, "wb") as f:
            f.write(data)
        self.store.from_file("long", source)
        self.assertEqual(self.store.get_metadata("long"), {})
        events = self.listen(StoreProgressEvent)
        target = source + ".out"
        self.store.to_file("long", target)
        with open(target, "rb") as f:
            self.assertEqual(f.read(), data)
        self.settle_events()
        if self.reports_progress:
            self.assertTrue(events.of(StoreProgressEndEvent))
        with self.store.get_data_range("long", 1048570, 1048580) as stream:
            self.assertEqual(stream.read(), data[1048570:1048580])

    # set_data / set_metadata / update_metadata -----

    def test_set_data(self):
        events = self.listen()
        self.store.set_data("test1.txt", io.BytesIO(b"replaced"))
        self.assertEqual(self.store.to_bytes("test1.txt"), b"replaced")
        self.assertEqual(self.store.get_metadata("test1.txt"), FIXTURE["test1.txt"][1])
        self.settle_events()
        sets = events.of(StoreSetEvent)
        self.assertEqual([e.key for e in sets], ["test1.txt"])

    def test_set_data_new_key(self):
        self.store.set_data("new", io.BytesIO(b"data"))
        self.assertEqual(self.store.to_bytes("new"), b"data")
        self.assertEqual(self.store.get_metadata("new"), {})

    def test_set_metadata(self):
        events = self.listen()
        self.store.set_metadata("test1.txt", {"only": "this"})
        self.assertEqual(self.store.get_metadata("test1.txt"), {"only": "this"})
        self.assertEqual(self.store.to_bytes("test1.txt"), FIXTURE["test1.txt"][0])
        self.settle_events()
        sets = events.of(StoreSetEvent)
        self.assertEqual(
            [(e.key, e.metadata) for e in sets], [("test1.txt", {"only": "this"})]
        )

    def test_set_metadata_new_key(self):
        self.store.set_metadata("new", {"a": 1})
        self.assertEqual(self.store.to_bytes("new"), b"")
        self.assertEqual(self.store.get_metadata("new"), {"a": 1})

    def test_update_metadata(self):
        events = self.listen()
        self.store.update_metadata("test1.txt", {"a_str": "new", "added": [1]})
        expected = dict(FIXTURE["test1.txt"][1], a_str="new", added=[1])
        self.assertEqual(self.store.get_metadata("test1.txt"), expected)
        self.assertEqual(self.store.to_bytes("test1.txt"), FIXTURE["test1.txt"][0])
        self.settle_events()
        modifications = events.of(StoreModificationEvent)
        self.assertEqual(len(modifications), 1)
        self.assertEqual(modifications[0].key, "test1.txt")
        self.assertEqual(modifications[0].metadata, expected)
        with self.assertRaises(KeyError):
            self.store.update_metadata("missing", {"a": 1})
        self.assertFalse(self.store.exists("missing"))

    def test_update_metadata_event_is_update(self):
        events = self.listen()
        self.store.update_metadata("test2.txt", {"x": 1})
        self.settle_events()
        self.assertEqual(len(events.of(StoreUpdateEvent)), 1)
        self.assertEqual(events.of(StoreUpdateEvent)[0].action, "update")

    def test_modified_moves(self):
        before = self.store.get("test1.txt").modified
        self.store.set_metadata("test1.txt", {"a": 1})
        after_metadata = self.store.get("test1.txt").modified
        self.assertGreater(after_metadata, before)
        self.store.set_data("test1.txt", io.BytesIO(b"1"))
        after_data = self.store.get("test1.txt").modified
        self.assertGreater(after_data, after_metadata)
        if self.tracks_created:
            self.assertLessEqual(self.store.get("test1.txt").created, before)

    # delete -----

    def test_delete(self):
        events = self.listen()
        self.store.delete("test1.txt")
        self.assertFalse(self.store.exists("test1.txt"))
        with self.assertRaises(KeyError):
            self.store.get("test1.txt")
        self.assertNotIn("test1.txt", list(self.store.query_keys()))
        self.settle_events()
        deletes = events.of(StoreDeleteEvent)
        self.assertEqual(
            [(e.key, e.action) for e in deletes], [("test1.txt", "delete")]
        )
        with self.assertRaises(KeyError):
            self.store.delete("test1.txt")

    def test_delete_then_recreate(self):
        self.store.delete("test2.txt")
        self.store.set("test2.txt", (io.BytesIO(b"again"), {"v": 2}))
        self.assertEqual(self.store.to_bytes("test2.txt"), b"again")
        self.assertEqual(self.store.get_metadata("test2.txt"), {"v": 2})

    # multi -----

    def test_multiset(self):
        events = self.listen(StoreSetEvent)
        self.store.multiset(
            ["m1", "m2", "m3"],
            [(io.BytesIO(b"1"), {"i": 1}), (io.BytesIO(b"2"), {"i": 2})],
        )
        self.assertEqual(self.store.to_bytes("m1"), b"1")
        self.assertEqual(self.store.get_metadata("m2"), {"i": 2})
        self.assertFalse(self.store.exists("m3"))
        self.settle_events()
        self.assertEqual([e.key for e in events.events], ["m1", "m2"])

    def test_multiset_data(self):
        self.store.multiset_data(
            ["test1.txt", "n1"], [io.BytesIO(b"a"), io.BytesIO(b"b"), io.BytesIO(b"c")]
        )
        self.assertEqual(self.store.to_bytes("test1.txt"), b"a")
        self.assertEqual(self.store.get_metadata("test1.txt"), FIXTURE["test1.txt"][1])
        self.assertEqual(self.store.to_bytes("n1"), b"b")
        self.assertEqual(len(list(self.store.query_keys())), len(FIXTURE) + 1)

    def test_multiset_metadata(self):
        self.store.multiset_metadata(["test1.txt", "test2.txt"], [{"a": 1}])
        self.assertEqual(self.store.get_metadata("test1.txt"), {"a": 1})
        self.assertEqual(self.store.get_metadata("test2.txt"), FIXTURE["test2.txt"][1])

    def test_multiupdate_metadata(self):
        self.store.multiupdate_metadata(
            ["test1.txt", "test2.txt"], [{"a": 1}, {"b": 2}]
        )
        self.assertEqual(
            self.store.get_metadata("test1.txt"), dict(FIXTURE["test1.txt"][1], a=1)
        )
        self.assertEqual(
            self.store.get_metadata("test2.txt"), dict(FIXTURE["test2.txt"][1], b=2)
        )

    # from/to -----

    def test_from_bytes(self):
        self.store.from_bytes("test1.txt", b"from bytes")
        self.assertEqual(self.store.to_bytes("test1.txt"), b"from bytes")
        self.assertEqual(self.store.get_metadata("test1.txt"), FIXTURE["test1.txt"][1])
        self.store.from_bytes("brand new", b"xyz")
        self.assertEqual(self.store.get_metadata("brand new"), {})

    def test_from_file(self):
        path = self.temp_path()
        with open(path, "wb") as f:
            f.write(b"from file")
        self.store.from_file("test2.txt", path)
        self.assertEqual(self.store.to_bytes("test2.txt"), b"from file")
        self.assertEqual(self.store.get_metadata("test2.txt"), FIXTURE["test2.txt"][1])
        with self.assertRaises(OSError):
            self.store.from_file("test2.txt", path + ".missing")
        self.assertEqual(self.store.to_bytes("test2.txt"), b"from file")


class StoreTransactionTests(StoreTestBase):
    """Checks of ``transaction()``: commit, nesting, rollback and events."""

    def test_transaction_commits_and_holds_events(self):
        events = self.listen()
        with self.store.transaction("two sets"):
            self.store.set("t1", (io.BytesIO(b"1"), {"i": 1}))
            self.store.set_metadata("test1.txt", {"i": 2})
            self.store.delete("test2.txt")
            self.settle_events()
            self.assertEqual(events.of(StoreModificationEvent), [])
            self.assertEqual(self.store.to_bytes("t1"), b"1")
        self.settle_events()
        self.assertEqual(self.store.get_metadata("test1.txt"), {"i": 2})
        self.assertFalse(self.store.exists("test2.txt"))
        kinds = [
            type(e) for e in events.events if not isinstance(e, StoreProgressEvent)
        ]
        self.assertEqual(
            kinds,
            [
                StoreTransactionStartEvent,
                StoreTransactionEndEvent,
                StoreSetEvent,
                StoreSetEvent,
                StoreDeleteEvent,
            ],
        )
        self.assertEqual(events.events[0].notes, "two sets")
        self.assertTrue(events.of(StoreTransactionEndEvent)[0].committed)

    def test_nested_transactions_commit_once(self):
        events = self.listen()
        with self.store.transaction("outer"):
            with self.store.transaction("inner"):
                self.store.set("t1", (io.BytesIO(b"1"), {}))
            self.settle_events()
            self.assertEqual(events.of(StoreTransactionEndEvent), [])
            self.assertEqual(events.of(StoreSetEvent), [])
            self.store.set("t2", (io.BytesIO(b"2"), {}))
        self.settle_events()
        self.assertEqual(len(events.of(StoreTransactionStartEvent)), 1)
        self.assertEqual(len(events.of(StoreTransactionEndEvent)), 1)
        self.assertEqual([e.key for e in events.of(StoreSetEvent)], ["t1", "t2"])

    def test_transaction_rollback(self):
        if not self.can_rollback:
            return
        events = self.listen()
        with self.assertRaises(RuntimeError):
            with self.store.transaction("doomed"):
                self.store.set("t1", (io.BytesIO(b"1"), {"i": 1}))
                self.store.set("test1.txt", (io.BytesIO(b"changed"), {"c": 1}))
                self.store.set_metadata("test3.jpg", {"c": 2})
                self.store.update_metadata("test4.jpg", {"c": 3})
                self.store.delete("test2.txt")
                raise RuntimeError("boom")
        self.settle_events()
        self.assertFalse(self.store.exists("t1"))
        for key, (data, metadata) in FIXTURE.items():
            self.assertEqual(self.store.to_bytes(key), data, key)
            self.assertEqual(self.store.get_metadata(key), metadata, key)
        self.assertEqual(events.of(StoreModificationEvent), [])
        ends = events.of(StoreTransactionEndEvent)
        self.assertEqual(len(ends), 1)
        self.assertFalse(ends[0].committed)

    def test_nested_rollback_rolls_back_everything(self):
        if not self.can_rollback:
            return
        with self.assertRaises(RuntimeError):
            with self.store.transaction("outer"):
                self.store.set("t1", (io.BytesIO(b"1"), {}))
                with self.store.transaction("inner"):
                    self.store.set("t2", (io.BytesIO(b"2"), {}))
                raise RuntimeError("boom")
        self.assertFalse(self.store.exists("t1"))
        self.assertFalse(self.store.exists("t2"))

    def test_multiset_is_atomic(self):
        if not self.can_rollback:
            return
        events = self.listen(StoreModificationEvent)
        with self.assertRaises(ValueError):
            self.store.multiset(
                ["m1", "m2"],
                [(io.BytesIO(b"1"), {"i": 1}), (io.BytesIO(b"2"), {"bad": object()})],
            )
        self.assertFalse(self.store.exists("m1"))
        self.settle_events()
        self.assertEqual(events.events, [])

    def test_transaction_is_reusable(self):
        for i in range(3):
            with self.store.transaction(f"round {i}"):
                self.store.set(f"r{i}", (io.BytesIO(b"x"), {"i": i}))
        self.assertEqual(self.store.get_metadata("r2"), {"i": 2})


class StoreKeyTests(StoreTestBase):
    """Checks that keys are arbitrary, case-sensitive strings."""

    KEYS = [
        "a/b",
        "../escape",
        "/absolute",
        "with\x00nul",
        "CON",
        "nul.txt",
        "k" * 300,
        "Case",
        "case",
        "CASE",
        "snowman \u2603",
        "caf\u00e9",
        "cafe\u0301",
        "%41",
        ".hidden",
        "trailing.",
        "trailing ",
        " leading",
        "tab\there",
        "a*b?c[d]",
        "new\nline",
        "x.data",
        "x.metadata",
        "",
    ]

    def test_unusual_keys_round_trip(self):
        if not self.unusual_keys:
            return
        for i, key in enumerate(self.KEYS):
            self.store.set(key, (io.BytesIO(b"data %d" % i), {"i": i}))
        for i, key in enumerate(self.KEYS):
            with self.subTest(key=key):
                self.assertTrue(self.store.exists(key))
                self.assertEqual(self.store.to_bytes(key), b"data %d" % i)
                self.assertEqual(self.store.get_metadata(key), {"i": i})
        keys = set(self.store.query_keys())
        self.assertEqual(keys, set(self.KEYS) | set(FIXTURE))
        self.assertEqual(sorted(self.store.glob("[Cc]ase")), ["Case", "case"])
        for key in self.KEYS:
            self.store.delete(key)
        self.assertEqual(set(self.store.query_keys()), set(FIXTURE))

    def test_keys_must_be_strings(self):
        with self.assertRaises(TypeError):
            self.store.set(b"bytes key", (io.BytesIO(b""), {}))
