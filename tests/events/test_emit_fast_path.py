"""The emit fast path: long runs of plain listeners called by a bare loop.

``EventManager`` calls a run of at least ``_RUN_MIN`` unfiltered, strongly
held listeners without a check between calls (issue 14's speed aim). These
tests pin that it keeps every rule of SEMANTICS.md: ``mark_as_handled``
stops later listeners, a failing listener is logged and the rest still
run, re-entrant emits, and connect/disconnect taking effect on the next
emit. Each runs at run lengths on both sides of the threshold.
"""

from __future__ import annotations

import logging

import pytest

from encore.events import event_manager as event_manager_module
from encore.events.api import BaseEvent, EventManager

RUN_MIN = event_manager_module._RUN_MIN
LENGTHS = [1, RUN_MIN - 1, RUN_MIN, RUN_MIN + 1, 50]


class Ping(BaseEvent):
    """The event emitted."""


class SubPing(Ping):
    """A subclass, for the hierarchy."""


def recorders(calls, n, tag="l"):
    """``n`` distinct listeners appending ``(tag, i)`` to ``calls``."""
    return [lambda e, i=i: calls.append((tag, i)) for i in range(n)]


@pytest.mark.parametrize("n", LENGTHS)
def test_all_called_in_order(n):
    em, calls = EventManager(), []
    for f in recorders(calls, n):
        em.connect(Ping, f)
    event = Ping()
    em.emit(event)
    assert calls == [("l", i) for i in range(n)]
    assert "_dispatch_run" not in vars(event)


@pytest.mark.parametrize("n", LENGTHS)
def test_mark_as_handled_stops_the_run(n):
    em, calls = EventManager(), []
    stop_at = n // 2
    for i, f in enumerate(recorders(calls, n)):
        if i == stop_at:

            def stopper(e, f=f):
                f(e)
                e.mark_as_handled()

            em.connect(Ping, stopper)
        else:
            em.connect(Ping, f)
    em.connect(Ping, lambda e: calls.append("low"), priority=-1)
    event = Ping()
    em.emit(event)
    assert calls == [("l", i) for i in range(stop_at + 1)]
    assert event._handled
    assert "_dispatch_run" not in vars(event)


@pytest.mark.parametrize("n", LENGTHS)
def test_failing_listener_logged_and_the_rest_run(n, caplog):
    em, calls = EventManager(), []
    bad_at = n // 2
    for i, f in enumerate(recorders(calls, n)):
        if i == bad_at:

            def bad(e, f=f):
                f(e)
                raise RuntimeError(f"listener {bad_at} broke")

            em.connect(Ping, bad)
        else:
            em.connect(Ping, f)
    event = Ping()
    with caplog.at_level(logging.ERROR, logger="encore.events.event_manager"):
        em.emit(event)
    assert calls == [("l", i) for i in range(n)]
    [record] = caplog.records
    assert record.exc_info[0] is RuntimeError
    assert "_dispatch_run" not in vars(event)


@pytest.mark.parametrize("n", LENGTHS)
def test_handled_then_raising_still_stops(n, caplog):
    em, calls = EventManager(), []
    for i, f in enumerate(recorders(calls, n)):
        if i == 0:

            def first(e, f=f):
                f(e)
                e.mark_as_handled()
                raise ValueError("after marking")

            em.connect(Ping, first)
        else:
            em.connect(Ping, f)
    with caplog.at_level(logging.ERROR, logger="encore.events.event_manager"):
        em.emit(Ping())
    assert calls == [("l", 0)]
    assert len(caplog.records) == 1


@pytest.mark.parametrize("n", LENGTHS)
def test_reemitting_the_same_event_from_a_listener(n):
    em, calls = EventManager(), []
    depth = []

    def reemit(e):
        calls.append("re")
        if not depth:
            depth.append(1)
            em.emit(e)

    em.connect(Ping, reemit)
    for f in recorders(calls, n):
        em.connect(Ping, f)
    event = Ping()
    em.emit(event)
    inner = ["re"] + [("l", i) for i in range(n)]
    # Depth first: the nested emit runs everything, then the outer run goes on.
    assert calls == ["re"] + inner + [("l", i) for i in range(n)]
    assert "_dispatch_run" not in vars(event)


@pytest.mark.parametrize("n", LENGTHS)
def test_handled_in_a_nested_emit_stops_the_outer_run(n):
    em, calls = EventManager(), []
    nested = []

    def reemit(e):
        calls.append("re")
        if not nested:
            nested.append(1)
            em.emit(e)  # in there, the stopper below marks it handled

    listeners = recorders(calls, n)
    em.connect(Ping, listeners[0])
    em.connect(Ping, reemit)
    for f in listeners[1:]:
        em.connect(Ping, f)

    def stopper(e):
        calls.append("stop")
        e.mark_as_handled()

    em.connect(Ping, stopper)
    em.connect(Ping, lambda e: calls.append("never"), priority=-1)
    em.emit(Ping())
    assert "never" not in calls
    # The outer run stops right after the listener that re-emitted.
    outer_after_reemit = calls[calls.index("stop") + 1 :]
    assert outer_after_reemit == []


@pytest.mark.parametrize("n", LENGTHS)
def test_connect_and_disconnect_during_emit_apply_next_time(n):
    em, calls = EventManager(), []
    listeners = recorders(calls, n)
    late = lambda e: calls.append("late")  # noqa: E731

    def changer(e):
        calls.append("changer")
        em.connect(Ping, late)
        em.disconnect(Ping, listeners[-1])

    em.connect(Ping, changer)
    for f in listeners:
        em.connect(Ping, f)
    em.emit(Ping())
    assert calls == ["changer"] + [("l", i) for i in range(n)]
    calls.clear()
    em.disconnect(Ping, changer)
    em.emit(SubPing())
    assert calls == [("l", i) for i in range(n - 1)] + ["late"]


def test_long_run_around_filtered_and_weak_listeners():
    em, calls = EventManager(), []

    class Holder:
        def method(self, e):
            calls.append("weak")

    holder = Holder()
    first = recorders(calls, 20, "a")
    second = recorders(calls, 20, "b")
    for f in first:
        em.connect(Ping, f)
    em.connect(Ping, lambda e: calls.append("match"), filter={"n": 1})
    em.connect(Ping, lambda e: calls.append("no match"), filter={"n": 2})
    em.connect(Ping, holder.method)
    for f in second:
        em.connect(Ping, f)
    em.emit(Ping(n=1))
    assert calls == (
        [("a", i) for i in range(20)]
        + ["match", "weak"]
        + [("b", i) for i in range(20)]
    )


def test_handled_in_the_second_run_of_a_plan():
    em, calls = EventManager(), []
    for f in recorders(calls, 20, "a"):
        em.connect(Ping, f)
    em.connect(Ping, lambda e: calls.append("match"), filter={"n": 1})
    second = recorders(calls, 20, "b")
    for f in second[:10]:
        em.connect(Ping, f)
    em.connect(Ping, lambda e: e.mark_as_handled())
    for f in second[10:]:
        em.connect(Ping, f)
    em.emit(Ping(n=1))
    assert calls == (
        [("a", i) for i in range(20)] + ["match"] + [("b", i) for i in range(10)]
    )


def test_event_handled_before_emit_behaves_as_before():
    """An event already marked handled gets its first listener only."""
    em, calls = EventManager(), []
    for f in recorders(calls, 20):
        em.connect(Ping, f)
    event = Ping()
    event.mark_as_handled()
    em.emit(event)
    assert calls == [("l", 0)]
