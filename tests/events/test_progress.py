"""ProgressManager and the progress events, including the documentation's
progress-bar example run for real."""

import gc
import io

import pytest

from encore.events.api import (
    EventManager,
    ProgressEndEvent,
    ProgressEvent,
    ProgressManager,
    ProgressStartEvent,
    ProgressStepEvent,
)


@pytest.fixture
def em():
    return EventManager()


def collect(em):
    events = []
    em.connect(ProgressEvent, events.append)
    return events


def test_context_manager_emits_start_steps_end(em):
    events = collect(em)
    src = object()
    with ProgressManager(em, src, "op1", "Working", 3, user="me") as progress:
        progress("first")
        progress.step()
        progress.step("third", step=3)
    kinds = [type(e) for e in events]
    assert kinds == [ProgressStartEvent] + [ProgressStepEvent] * 3 + [ProgressEndEvent]
    assert all(
        e.operation_id == "op1" and e.user == "me" and e.source is src for e in events
    )
    assert events[0].steps == 3 and events[0].message == "Working"
    assert [e.step for e in events[1:4]] == [1, 2, 3]
    assert [e.message for e in events[1:4]] == ["first", "Working", "third"]
    assert events[-1].exit_state == "normal"


def test_integer_first_argument_is_the_step(em):
    events = collect(em)
    with ProgressManager(em, None, "op", "msg", 10) as progress:
        for i in range(3):
            progress(i)
    assert [e.step for e in events if isinstance(e, ProgressStepEvent)] == [0, 1, 2]


def test_exception_ends_with_exception_state_and_propagates(em):
    events = collect(em)
    with pytest.raises(ZeroDivisionError):
        with ProgressManager(em, None, "op", "msg"):
            raise ZeroDivisionError("division by zero")
    end = events[-1]
    assert isinstance(end, ProgressEndEvent)
    assert end.exit_state == "exception" and "division" in end.message


def test_manual_end_inside_block_is_not_repeated(em):
    events = collect(em)
    with ProgressManager(em, None, "op", "msg") as progress:
        progress.end("Partial", exit_state="warning")
    ends = [e for e in events if isinstance(e, ProgressEndEvent)]
    assert [(e.message, e.exit_state) for e in ends] == [("Partial", "warning")]


def test_end_state_spelling_and_bad_state(em):
    events = collect(em)
    progress = ProgressManager(em, None, "op", "msg")
    progress.start()
    progress.end(message="Failure mode 1", end_state="warning")
    assert events[-1].exit_state == "warning"
    assert not hasattr(events[-1], "end_state")
    with pytest.raises(ValueError):
        progress.end(exit_state="fine")


def test_operation_id_defaults_to_unique_value(em):
    a, b = ProgressManager(em), ProgressManager(em)
    assert a.operation_id and a.operation_id != b.operation_id


def test_default_event_manager_is_process_wide():
    from encore.events.api import get_event_manager

    assert ProgressManager().event_manager is get_event_manager()


def test_custom_event_types(em):
    class MyStart(ProgressStartEvent):
        pass

    class MyProgress(ProgressManager):
        StartEventType = MyStart

    events = collect(em)
    with MyProgress(em, None, "op"):
        pass
    assert type(events[0]) is MyStart


# --- The documentation's "Example: Progress Bar", written out and run ------


class ProgressWriter:
    def __init__(self, display, operation_id, steps):
        self.display = display
        self.operation_id = operation_id
        self.steps = steps
        self._count = 0
        self._max = 75

    def step_listener(self, event):
        stars = int(round(float(event.step) / self.steps * self._max))
        if stars > self._count:
            self.display.out.write("*" * (stars - self._count))
            self._count = stars

    def end_listener(self, event):
        out = self.display.out
        if event.exit_state == "normal":
            out.write("]\n")
        else:
            out.write(f"\n{event.exit_state.upper()}: {event.message}\n")
        del self.display.writers[self.operation_id]


class ProgressDisplay:
    def __init__(self, event_manager, out):
        self.event_manager = event_manager
        self.out = out
        self.writers = {}
        event_manager.connect(ProgressStartEvent, self.start_listener)

    def start_listener(self, event):
        self.out.write(event.message + "\n[")
        writer = ProgressWriter(self, event.operation_id, event.steps)
        self.writers[event.operation_id] = writer
        self.event_manager.connect(
            ProgressStepEvent,
            writer.step_listener,
            filter={"operation_id": event.operation_id},
        )
        self.event_manager.connect(
            ProgressEndEvent,
            writer.end_listener,
            filter={"operation_id": event.operation_id},
        )


def test_documentation_progress_bar_example(em):
    out = io.StringIO()
    display = ProgressDisplay(em, out)
    data = b"x" * (5 * 2**20)
    path = "foo/bar/baz.txt"
    steps = range(0, len(data), 2**20)
    with ProgressManager(em, None, "op-1", f'Saving "{path}"', len(steps)) as p:
        for i, pos in enumerate(steps):
            p(f'Saving "{path}" ({pos} of {len(data)} bytes)', step=i + 1)
    assert out.getvalue() == 'Saving "foo/bar/baz.txt"\n[' + "*" * 75 + "]\n"
    assert display.writers == {}
    gc.collect()
    # The writer is gone, so its weakly held listeners disconnected themselves.
    assert em.get_listeners(ProgressStepEvent) == []
    with pytest.raises(KeyError):
        with ProgressManager(em, None, "op-2", "Failing", 4) as p:
            p(step=1)
            raise KeyError("missing")
    assert out.getvalue().endswith("\nEXCEPTION: 'missing'\n")
