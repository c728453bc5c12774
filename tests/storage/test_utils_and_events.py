"""utils, the event hierarchy, Value and the base-class defaults."""

import io
import unittest

import pytest

from encore.events.api import EventManager, ProgressEndEvent, ProgressEvent
from encore.events.progress_events import ProgressStartEvent, ProgressStepEvent
from encore.storage.abstract_store import (
    AbstractReadOnlyStore,
    AbstractStore,
    ReadOnlyStoreError,
    ReadOnlyWritersMixin,
    StoreError,
    metadata_matches,
)
from encore.storage.events import (
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
from encore.storage.testing import (
    StoreKeyTests,
    StoreReadTests,
    StoreTransactionTests,
    StoreWriteTests,
)
from encore.storage.utils import (
    BufferIteratorIO,
    StoreProgressManager,
    add_context_manager_support,
    buffer_iterator,
    check_metadata,
    copy_metadata,
    copy_stream,
    tee,
)
from encore.storage.values import BytesValue, StreamValue

# -- events -----------------------------------------------------------------


def test_event_hierarchy():
    assert issubclass(StoreKeyEvent, StoreEvent)
    for cls in (StoreSetEvent, StoreUpdateEvent, StoreDeleteEvent):
        assert issubclass(cls, StoreModificationEvent)
        assert issubclass(cls, StoreKeyEvent)
    assert issubclass(StoreProgressEvent, ProgressEvent)
    assert issubclass(StoreProgressEvent, StoreKeyEvent)
    for cls, base in [
        (StoreProgressStartEvent, ProgressStartEvent),
        (StoreProgressStepEvent, ProgressStepEvent),
        (StoreProgressEndEvent, ProgressEndEvent),
    ]:
        assert issubclass(cls, base) and issubclass(cls, StoreProgressEvent)
    assert issubclass(StoreTransactionStartEvent, StoreEvent)
    assert not issubclass(StoreTransactionEndEvent, StoreKeyEvent)
    assert [StoreSetEvent.action, StoreUpdateEvent.action, StoreDeleteEvent.action] == [
        "set",
        "update",
        "delete",
    ]
    hierarchy = EventManager().get_event_hierarchy(StoreProgressStepEvent)
    assert hierarchy[0] is StoreProgressStepEvent
    assert ProgressEvent in hierarchy and StoreKeyEvent in hierarchy


def test_progress_listeners_hear_store_progress():
    manager = EventManager()
    heard = []
    manager.connect(ProgressEvent, heard.append)
    keyed = []
    manager.connect(StoreKeyEvent, keyed.append, filter={"key": "k"})
    with StoreProgressManager(manager, "src", "op", "copying", 10, key="k") as p:
        p.step(step=5)
    assert [type(e) for e in heard] == [
        StoreProgressStartEvent,
        StoreProgressStepEvent,
        StoreProgressEndEvent,
    ]
    assert heard == keyed
    assert heard[1].step == 5 and heard[0].steps == 10 and heard[-1].key == "k"


# -- utils --------------------------------------------------------------------


def test_buffer_iterator_and_progress():
    steps = []
    chunks = list(
        buffer_iterator(io.BytesIO(b"abcdefg"), 3, lambda step: steps.append(step))
    )
    assert chunks == [b"abc", b"def", b"g"]
    assert steps == [3, 6, 7]
    assert list(buffer_iterator(io.BytesIO(b"abcdefg"), 3, max_bytes=4)) == [
        b"abc",
        b"d",
    ]
    with pytest.raises(ValueError):
        buffer_iterator(io.BytesIO(b""), 0)


def test_buffer_iterator_io():
    stream = BufferIteratorIO(iter([b"ab", b"", b"cde", b"f"]))
    assert stream.read(1) == b"a"
    assert stream.read(3) == b"b"
    assert stream.read(2) == b"cd"
    assert stream.read() == b"ef"
    assert stream.read() == b""
    with BufferIteratorIO([b"xy", b"z"]) as stream:
        assert stream.read() == b"xyz"
    assert stream.closed
    with pytest.raises(ValueError):
        stream.read()


def test_tee():
    a, b, c = tee(io.BytesIO(b"0123456789"), 3, buffer_size=4)
    assert a.read() == b"0123456789"
    assert b.read(3) == b"012"
    assert c.read() == b"0123456789"
    assert b.read() == b"3456789"
    with pytest.raises(ValueError):
        tee(io.BytesIO(b""), 0)


def test_add_context_manager_support():
    class Bare:
        closed = False

        def read(self, n=-1):
            return b"x"

        def close(self):
            self.closed = True

    bare = Bare()
    wrapped = add_context_manager_support(bare)
    with wrapped as f:
        assert f.read() == b"x"
    assert bare.closed
    stream = io.BytesIO(b"")
    assert add_context_manager_support(stream) is stream


@pytest.mark.parametrize(
    "bad",
    [
        {"a": object()},
        {"a": b"bytes"},
        {"a": {1: 2}},
        {"a": float("inf")},
        {"a": [1, {2}]},
        {1: 1},
        [1, 2],
        "text",
        None,
    ],
)
def test_check_metadata_refuses(bad):
    with pytest.raises(ValueError):
        check_metadata(bad)


def test_check_metadata_refuses_cycles():
    cyclic = {}
    cyclic["self"] = cyclic
    with pytest.raises(ValueError):
        check_metadata(cyclic)


def test_check_metadata_normalizes_and_copies():
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    original = {"t": (1, 2), "n": {"x": [True, None, 1.5]}, "e": Level.HIGH}
    checked = check_metadata(original)
    assert checked == {"t": [1, 2], "n": {"x": [True, None, 1.5]}, "e": 3}
    assert type(checked["e"]) is int
    checked["n"]["x"].append(1)
    assert original["n"]["x"] == [True, None, 1.5]
    copy = copy_metadata(checked)
    copy["n"]["x"].append(2)
    assert checked["n"]["x"] == [True, None, 1.5, 1]


def test_metadata_matches_absent_is_not_none():
    assert metadata_matches({"a": None}, {"a": None})
    assert not metadata_matches({}, {"a": None})


# -- values -------------------------------------------------------------------


def test_value_is_a_pair():
    value = BytesValue(b"test2\n", {"a": 1}, 1.0, 2.0)
    data, metadata = value
    assert data.read() == b"test2\n" and metadata == {"a": 1}
    assert value[1] == {"a": 1} and value[-1] == {"a": 1}
    assert value[0].read() == b"test2\n"
    assert len(value) == 2
    with pytest.raises(IndexError):
        value[2]
    assert value.range(1, 3).read() == b"es"
    with pytest.raises(ValueError):
        value.range(3, 1)


def test_default_range_reads_through_a_stream():
    value = StreamValue(io.BufferedReader(io.BytesIO(b"0123456789")), {})
    assert value.range(2, 5).read() == b"234"
    value = StreamValue(BufferIteratorIO([b"0123", b"456789"]), {})
    assert value.range(5).read() == b"56789"


# -- a store built only from the primitives --------------------------------


class PrimitiveStore(AbstractStore):
    """Implements only the primitives, so the base class does the rest.

    The model for composite stores: this is what the defaults in
    ``abstract_store`` must make conformant. It cannot roll back.
    """

    def __init__(self, event_manager=None):
        super().__init__(event_manager)
        self._values = {}
        self._connected = False
        self._clock = 0.0

    def connect(self, credentials=None):
        self._connected = True

    def disconnect(self):
        self._connected = False

    def is_connected(self):
        return self._connected

    def _tick(self):
        self._clock += 1.0
        return self._clock

    def get(self, key):
        data, metadata, created, modified = self._values[key]
        return BytesValue(data, check_metadata(metadata), created, modified)

    def get_metadata(self, key, select=None):
        metadata = check_metadata(self._values[key][1])
        if select is None:
            return metadata
        return {k: metadata[k] for k in select if k in metadata}

    def exists(self, key):
        return key in self._values

    def query(self, select=None, **kwargs):
        return [
            (key, self.get_metadata(key, select))
            for key, (_, metadata, _, _) in list(self._values.items())
            if metadata_matches(metadata, kwargs)
        ]

    def set(self, key, value, buffer_size=1048576):
        if type(key) is not str:
            raise TypeError("keys are str")
        from encore.storage.abstract_store import unpack_value

        stream, metadata, owned = unpack_value(value)
        parts = []
        try:
            metadata = check_metadata(metadata)
            copy_stream(stream, parts.append, buffer_size, store=self, key=key)
            data = b"".join(parts)
        finally:
            if owned:
                stream.close()
        old = self._values.get(key)
        now = self._tick()
        self._values[key] = (data, metadata, now if old is None else old[2], now)
        self._emit([StoreSetEvent(source=self, key=key, metadata=metadata)])

    def set_metadata(self, key, metadata):
        metadata = check_metadata(metadata)
        old = self._values.get(key)
        now = self._tick()
        if old is None:
            self._values[key] = (b"", metadata, now, now)
        else:
            self._values[key] = (old[0], metadata, old[2], now)
        self._emit([StoreSetEvent(source=self, key=key, metadata=metadata)])

    def delete(self, key):
        old = self._values.pop(key)
        self._emit([StoreDeleteEvent(source=self, key=key, metadata=old[1])])


class TestPrimitiveStoreDefaults(
    StoreReadTests,
    StoreWriteTests,
    StoreTransactionTests,
    StoreKeyTests,
    unittest.TestCase,
):
    can_rollback = False

    def make_store(self):
        return PrimitiveStore(EventManager())

    def test_update_metadata_event_is_update(self):
        # The default update_metadata is built on set_metadata, so it emits
        # a StoreSetEvent; stores that override it emit StoreUpdateEvent.
        events = self.listen()
        self.store.update_metadata("test2.txt", {"x": 1})
        self.settle_events()
        self.assertEqual(events.of(StoreUpdateEvent), [])
        self.assertEqual(len(events.of(StoreSetEvent)), 1)
        self.assertEqual(self.store.get_metadata("test2.txt")["x"], 1)

    def test_dummy_transaction_emits_held_events_even_on_error(self):
        events = self.listen()
        with self.assertRaises(RuntimeError):
            with self.store.transaction("no rollback"):
                self.store.set("t", (io.BytesIO(b"t"), {}))
                raise RuntimeError("boom")
        self.assertTrue(self.store.exists("t"))
        kinds = [type(e) for e in events.events]
        self.assertEqual(
            kinds, [StoreTransactionStartEvent, StoreTransactionEndEvent, StoreSetEvent]
        )
        self.assertFalse(events.events[1].committed)


class ReadOnly(ReadOnlyWritersMixin, AbstractReadOnlyStore):
    def connect(self, credentials=None):
        pass

    def disconnect(self):
        pass

    def is_connected(self):
        return True

    def get(self, key):
        raise KeyError(key)

    def get_metadata(self, key, select=None):
        raise KeyError(key)

    def exists(self, key):
        return False

    def query(self, select=None, **kwargs):
        return []


def test_read_only_writers_refuse_clearly():
    store = ReadOnly(EventManager())
    for call in [
        lambda: store.set("k", (io.BytesIO(b""), {})),
        lambda: store.set_data("k", io.BytesIO(b"")),
        lambda: store.set_metadata("k", {}),
        lambda: store.update_metadata("k", {}),
        lambda: store.delete("k"),
        lambda: store.from_bytes("k", b""),
        lambda: store.multiset(["k"], [(io.BytesIO(b""), {})]),
    ]:
        with pytest.raises(ReadOnlyStoreError, match="read-only") as info:
            call()
        assert isinstance(info.value, StoreError)
        assert isinstance(info.value, NotImplementedError)
    with store.transaction("nothing"):
        pass
