"""Behaviour of EventManager: dispatch, filters, priority, enable/disable,
weak references, re-entrancy, introspection and tracing."""

import gc
import logging
import threading

import pytest

from encore.events.api import BaseEvent, BaseEventManager, EventManager


class FileEvent(BaseEvent):
    pass


class OpenEvent(FileEvent):
    pass


class SaveEvent(FileEvent):
    pass


class Other(BaseEvent):
    pass


@pytest.fixture
def em():
    return EventManager()


def recorder():
    calls = []
    return calls, calls.append


def test_base_event_sets_keyword_attributes():
    src = object()
    event = SaveEvent(source=src, directory="foo/bar", filename="baz.txt")
    assert event.source is src
    assert (event.directory, event.filename) == ("foo/bar", "baz.txt")
    assert "directory='foo/bar'" in repr(event)


def test_event_manager_implements_abstract_api(em):
    assert isinstance(em, BaseEventManager)
    with pytest.raises(TypeError):
        BaseEventManager()


def test_listener_called_for_class_and_subclasses_only(em):
    calls, listen = recorder()
    em.connect(FileEvent, listen)
    save, other, base = SaveEvent(), Other(), BaseEvent()
    for event in (save, other, base):
        em.emit(event)
    assert calls == [save]


def test_emit_returns_none_when_blocking(em):
    assert em.emit(SaveEvent()) is None


def test_disconnect_stops_calls_and_missing_raises_keyerror(em):
    calls, listen = recorder()
    em.connect(SaveEvent, listen)
    em.disconnect(SaveEvent, listen)
    em.emit(SaveEvent())
    assert calls == []
    with pytest.raises(KeyError):
        em.disconnect(SaveEvent, listen)
    em.connect(FileEvent, listen)
    with pytest.raises(KeyError):  # a base-class connection does not count
        em.disconnect(SaveEvent, listen)


def test_priority_then_connection_order(em):
    order = []
    em.connect(FileEvent, lambda e: order.append("file-low"), priority=1)
    em.connect(SaveEvent, lambda e: order.append("save-high"), priority=10)
    em.connect(BaseEvent, lambda e: order.append("base-low"), priority=1)
    em.connect(SaveEvent, lambda e: order.append("save-low"), priority=1)
    em.emit(SaveEvent())
    assert order == ["save-high", "file-low", "base-low", "save-low"]


def test_reconnect_replaces_and_moves_to_end(em):
    order = []

    def a(e):
        order.append("a")

    def b(e):
        order.append("b")

    em.connect(SaveEvent, a)
    em.connect(SaveEvent, b)
    em.connect(SaveEvent, a, filter={"directory": "x"})
    em.emit(SaveEvent(directory="x"))
    em.emit(SaveEvent(directory="y"))
    assert order == ["b", "a", "b"]
    assert em.get_listeners(SaveEvent) == [b, a]


def test_mark_as_handled_stops_later_listeners(em):
    order = []

    def save_logger(event):
        order.append("save")
        event.mark_as_handled()

    em.connect(SaveEvent, save_logger, priority=100)
    em.connect(FileEvent, lambda e: order.append("file"), priority=50)
    em.emit(SaveEvent())
    em.emit(OpenEvent())
    assert order == ["save", "file"]


def test_filters_plain_dotted_and_missing(em):
    calls, listen = recorder()

    class Holder:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    em.connect(SaveEvent, listen, filter={"directory": "d", "prop1.real": 2})
    match = SaveEvent(directory="d", prop1=2 + 5j)
    em.emit(match)
    em.emit(SaveEvent(directory="d", prop1=3 + 5j))
    em.emit(SaveEvent(directory="x", prop1=2 + 5j))
    em.emit(SaveEvent(directory="d"))  # prop1 missing: filter fails
    assert calls == [match]

    deep, listen_deep = recorder()
    em.connect(OpenEvent, listen_deep, filter={"a.b.c": 1})
    hit = OpenEvent(a=Holder(b=Holder(c=1)))
    em.emit(hit)
    em.emit(OpenEvent(a=Holder(b=Holder())))
    em.emit(OpenEvent(a=Holder(b=Holder(c=2))))
    assert deep == [hit]


def test_filter_comparison_that_raises_fails_quietly(em):
    class Weird:
        def __eq__(self, other):
            raise RuntimeError("no comparing me")

        __hash__ = object.__hash__

    calls, listen = recorder()
    em.connect(SaveEvent, listen, filter={"value": 1})
    others, listen_others = recorder()
    em.connect(SaveEvent, listen_others)
    event = SaveEvent(value=Weird())
    em.emit(event)
    assert calls == [] and others == [event]


@pytest.mark.parametrize("n_filtered", [1, 3, 4, 50])
def test_many_filtered_listeners_exactly_the_matching_ones(em, n_filtered):
    """Same results whether or not the per-value index kicks in."""
    order = []
    for i in range(n_filtered):
        em.connect(
            FileEvent,
            (lambda n: lambda e: order.append(("op", n)))(i),
            filter={"operation_id": i},
            priority=i % 3,
        )
    em.connect(FileEvent, lambda e: order.append("all"), priority=1)
    em.connect(
        FileEvent,
        lambda e: order.append("two-keys"),
        filter={"operation_id": 0, "kind": "k"},
        priority=5,
    )
    em.connect(
        FileEvent, lambda e: order.append("unhashable"), filter={"operation_id": [0]}
    )
    em.emit(SaveEvent(operation_id=0, kind="k"))
    expected_first = ["two-keys", "all", ("op", 0)]
    assert order == expected_first
    order.clear()
    em.emit(SaveEvent(operation_id=0))  # kind missing
    assert order == ["all", ("op", 0)]
    order.clear()
    em.emit(SaveEvent())  # operation_id missing
    assert order == ["all"]
    order.clear()
    em.emit(SaveEvent(operation_id=[0]))  # unhashable value
    assert order == ["all", "unhashable"]
    order.clear()
    last = n_filtered - 1
    em.emit(SaveEvent(operation_id=last))
    assert set(order) == {"all", ("op", last)} and len(order) == 2
    order.clear()
    em.emit(SaveEvent(operation_id=10_000))
    assert order == ["all"]


def test_index_treats_equal_values_alike(em):
    calls = []
    for i in range(5):
        em.connect(SaveEvent, (lambda n: lambda e: calls.append(n))(i), filter={"n": i})
    em.emit(SaveEvent(n=1.0))
    em.emit(SaveEvent(n=True))
    assert calls == [1, 1]


def test_listener_exception_is_logged_and_others_still_run(em, caplog):
    calls, listen = recorder()

    def broken(event):
        raise RuntimeError("boom")

    em.connect(SaveEvent, broken, priority=10)
    em.connect(SaveEvent, listen)
    event = SaveEvent()
    with caplog.at_level(logging.ERROR, logger="encore.events.event_manager"):
        em.emit(event)
    assert calls == [event]
    [record] = caplog.records
    assert "boom" in record.exc_text and "SaveEvent" in record.getMessage()


def test_bound_methods_are_weak_functions_strong(em):
    calls = []

    class Listener:
        def on_event(self, event):
            calls.append(event)

    obj = Listener()
    em.connect(SaveEvent, obj.on_event)
    em.connect(SaveEvent, lambda e: calls.append("lambda"))
    em.emit(SaveEvent())
    assert len(calls) == 2
    assert len(em.get_listeners(SaveEvent)) == 2
    del obj
    gc.collect()
    calls.clear()
    em.emit(SaveEvent())
    assert calls == ["lambda"]
    assert len(em.get_listeners(SaveEvent)) == 1


def test_bound_method_disconnect_by_fresh_method_object(em):
    calls = []

    class Listener:
        def on_event(self, event):
            calls.append(event)

    obj = Listener()
    em.connect(SaveEvent, obj.on_event)
    em.disconnect(SaveEvent, obj.on_event)
    em.emit(SaveEvent())
    assert calls == []


def test_disable_covers_subclasses_and_state_is_per_class(em):
    calls, listen = recorder()
    em.connect(BaseEvent, listen)
    em.disable(SaveEvent)
    em.disable(FileEvent)
    em.enable(FileEvent)
    assert not em.is_enabled(SaveEvent)
    assert em.is_enabled(FileEvent) and em.is_enabled(OpenEvent)
    em.emit(SaveEvent())
    opened = OpenEvent()
    em.emit(opened)
    assert calls == [opened]
    em.disable(BaseEvent)
    em.emit(OpenEvent())
    em.emit(Other())
    assert calls == [opened]
    em.enable(SaveEvent)  # base still disabled
    assert not em.is_enabled(SaveEvent)
    em.enable(BaseEvent)
    saved = SaveEvent()
    em.emit(saved)
    assert calls == [opened, saved]


def test_pre_and_post_emit_hooks_wrap_dispatch(em):
    order = []

    class Hooked(BaseEvent):
        def pre_emit(self):
            order.append("pre")

        def post_emit(self):
            order.append("post")

    em.connect(Hooked, lambda e: order.append("listen"))
    em.emit(Hooked())
    assert order == ["pre", "listen", "post"]
    em.disable(Hooked)
    em.emit(Hooked())
    assert order == ["pre", "listen", "post"]


def test_reentrant_emit_is_depth_first(em):
    order = []

    def on_save(event):
        order.append("save-start")
        em.emit(OpenEvent())
        order.append("save-end")

    em.connect(SaveEvent, on_save)
    em.connect(OpenEvent, lambda e: order.append("open"))
    em.emit(SaveEvent())
    assert order == ["save-start", "open", "save-end"]


def test_connect_and_disconnect_inside_listener_affect_later_emits(em):
    calls = []

    def late(event):
        calls.append("late")

    def first(event):
        calls.append("first")
        em.disconnect(SaveEvent, first)
        em.connect(SaveEvent, late)

    em.connect(SaveEvent, first)
    em.emit(SaveEvent())
    assert calls == ["first"]
    em.emit(SaveEvent())
    assert calls == ["first", "late"]


def test_non_blocking_emit_returns_started_thread(em):
    seen = []
    em.connect(SaveEvent, lambda e: seen.append(threading.current_thread()))
    thread = em.emit(SaveEvent(), block=False)
    assert isinstance(thread, threading.Thread)
    thread.join(10)
    assert not thread.is_alive()
    assert seen == [thread]


def test_introspection(em):
    def f(e):
        pass

    def g(e):
        pass

    em.connect(FileEvent, f, filter={"directory": "d"}, priority=5)
    em.connect(SaveEvent, g)
    em.register(Other)
    assert em.get_listeners(SaveEvent) == [f, g]
    assert em.get_listeners(SaveEvent(directory="x")) == [g]
    assert em.get_listeners(SaveEvent(directory="d")) == [f, g]
    assert em.get_listeners(Other) == []
    assert {FileEvent, SaveEvent, Other} <= set(em.get_event())
    assert em.get_event_hierarchy(SaveEvent) == (SaveEvent, FileEvent, BaseEvent)
    with pytest.raises(TypeError):
        em.register(int)


def test_hierarchy_with_multiple_inheritance(em):
    class KeyEvent(BaseEvent):
        pass

    class Both(SaveEvent, KeyEvent):
        pass

    assert em.get_event_hierarchy(Both) == (
        Both,
        SaveEvent,
        FileEvent,
        KeyEvent,
        BaseEvent,
    )
    calls, listen = recorder()
    em.connect(KeyEvent, listen)
    em.connect(FileEvent, listen)  # same function on two bases: called twice
    em.emit(Both())
    assert len(calls) == 2


def test_trace_sees_actions_and_can_veto(em):
    trace = []
    vetoed = set()

    def tracer(name, method, args):
        trace.append((name, method, args))
        return name in vetoed

    calls, listen = recorder()
    em.set_trace(tracer)
    em.connect(SaveEvent, listen, filter=None, priority=3)
    event = SaveEvent()
    em.emit(event)
    assert trace == [
        ("connect", listen, (SaveEvent, None, 3)),
        ("emit", None, (event,)),
        ("listen", listen, (event,)),
    ]
    assert calls == [event]
    vetoed.add("listen")
    em.emit(SaveEvent())
    assert calls == [event]
    vetoed.add("emit")
    trace.clear()
    em.emit(SaveEvent())
    assert [t[0] for t in trace] == ["emit"]
    vetoed.add("disconnect")
    em.disconnect(SaveEvent, listen)  # vetoed: still connected
    em.set_trace(None)
    em.emit(event2 := SaveEvent())
    assert calls == [event, event2]


@pytest.mark.parametrize("filtered_first", [True, False])
def test_mark_as_handled_stops_across_filtered_and_plain_listeners(em, filtered_first):
    order = []

    def stopper(event):
        order.append("stopper")
        event.mark_as_handled()

    em.connect(
        SaveEvent,
        stopper,
        priority=10,
        filter={"directory": "d"} if filtered_first else None,
    )
    em.connect(SaveEvent, lambda e: order.append("plain"), priority=5)
    em.connect(
        SaveEvent,
        lambda e: order.append("filtered"),
        priority=1,
        filter={"directory": "d"},
    )
    em.emit(SaveEvent(directory="d"))
    assert order == ["stopper"]
