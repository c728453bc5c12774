"""ProgressDisplay in-process: plain output, listeners, threads, errors."""

import io
import logging
import re
import threading

import pytest

from encore.events.event_manager import EventManager
from encore.events.progress_events import (
    ProgressEndEvent,
    ProgressManager,
    ProgressStartEvent,
    ProgressStepEvent,
)
from encore.terminal.progress_display import (
    BarWriter,
    ProgressDisplay,
    SpinnerWriter,
    fit,
    make_writer,
    sanitize,
)

DEADLINE = 10.0


def strip_times(text):
    return re.sub(r" \(\d+\.\d s\)", "", text)


def test_plain_lines_on_a_non_terminal():
    em = EventManager()
    out = io.StringIO()
    with ProgressDisplay(em, out) as display:
        assert display.ansi is False
        with ProgressManager(em, None, "a", "Copying", steps=10) as progress:
            for _ in range(10):
                progress()
        with pytest.raises(ValueError):
            with ProgressManager(em, None, "b", "Parsing"):
                raise ValueError("bad header")
        progress = ProgressManager(em, None, "c", "Syncing", steps=3)
        progress.start()
        progress.end("2 files skipped", exit_state="warning")
    text = strip_times(out.getvalue())
    assert "\x1b" not in text
    assert text.splitlines() == [
        "Copying ...",
        *[f"Copying: {n * 10}% ({n}/10)" for n in range(1, 10)],
        "[done] Copying",
        "Parsing ...",
        "[EXCEPTION] Parsing: bad header",
        "Syncing ...",
        "[WARNING] Syncing: 2 files skipped",
    ]


def test_close_disconnects_listeners_and_is_idempotent():
    em = EventManager()
    display = ProgressDisplay(em, io.StringIO())
    for cls in (ProgressStartEvent, ProgressStepEvent, ProgressEndEvent):
        assert len(em.get_listeners(cls)) == 1
    display.close()
    assert display.closed
    for cls in (ProgressStartEvent, ProgressStepEvent, ProgressEndEvent):
        assert em.get_listeners(cls) == []
    assert not display._thread.is_alive()
    display.close()
    # events after close change nothing
    em.emit(ProgressStartEvent(operation_id=1, message="late", steps=2))
    assert display.stream.getvalue() == ""


def test_operations_from_many_threads_all_end_on_screen():
    em = EventManager()
    out = io.StringIO()
    go = threading.Barrier(8)

    def work(n):
        go.wait(DEADLINE)
        state = ["normal", "warning", "error", "exception"][n % 4]
        progress = ProgressManager(em, None, n, f"job {n}", steps=500)
        progress.start()
        for _ in range(500):
            progress()
        progress.end(f"job {n}", exit_state=state)

    with ProgressDisplay(em, out, ansi=True, min_interval=0.01):
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
    labels = {0: "done", 1: "WARNING", 2: "ERROR", 3: "EXCEPTION"}
    text = strip_times(out.getvalue())
    for n in range(8):
        assert f"[{labels[n % 4]}] job {n}\n" in text


def test_steps_before_the_start_was_seen_still_show():
    em = EventManager()
    out = io.StringIO()
    with ProgressDisplay(em, out):
        em.emit(ProgressStepEvent(operation_id="x", message="joined late", step=3))
        em.emit(
            ProgressEndEvent(operation_id="y", message="only end", exit_state="error")
        )
    assert strip_times(out.getvalue()).splitlines() == ["[ERROR] only end"]


def test_malformed_event_fields_do_not_break_the_display(caplog):
    em = EventManager()
    out = io.StringIO()
    with ProgressDisplay(em, out, ansi=True):
        em.emit(ProgressStartEvent(operation_id=[1], message=None, steps="many"))
        em.emit(ProgressEndEvent(operation_id=[1], message="ok", exit_state="normal"))
        em.emit(
            ProgressStartEvent(operation_id="s", message=b"bytes", steps=float("nan"))
        )
        em.emit(ProgressStepEvent(operation_id="s", step=object(), message=42))
        em.emit(ProgressEndEvent(operation_id="s", message="x", exit_state="weird\x1b"))
    text = strip_times(out.getvalue())
    assert "[weird?] b'bytes': x" in text
    assert "[done] ok" in text
    assert not caplog.records  # no listener raised


def test_failing_stream_is_logged_once_and_drawing_stops(caplog):
    class Broken(io.StringIO):
        def write(self, text):
            raise BrokenPipeError("reader went away")

    em = EventManager()
    display = ProgressDisplay(em, Broken(), ansi=True, min_interval=0)
    with caplog.at_level(logging.ERROR, logger="encore.terminal.progress_display"):
        em.emit(ProgressStartEvent(operation_id=1, message="m", steps=2))
        display._thread.join(DEADLINE)
    assert not display._thread.is_alive()
    assert "drawing failed" in caplog.text
    assert "BrokenPipeError" in caplog.text
    # emitting still works; closing reports the broken stream
    em.emit(ProgressStepEvent(operation_id=1, step=1, message="m"))
    with pytest.raises(BrokenPipeError):
        display.close()
    assert em.get_listeners(ProgressStepEvent) == []


def test_defaults_use_process_manager_and_stdout(capsys):
    from encore.events.package_globals import get_event_manager

    with ProgressDisplay() as display:
        assert display.event_manager is get_event_manager()
        with ProgressManager(None, None, "d", "Default", steps=1) as p:
            p()
    assert "[done] Default" in capsys.readouterr().out


def test_bad_min_interval():
    with pytest.raises(ValueError, match="min_interval"):
        ProgressDisplay(EventManager(), io.StringIO(), min_interval=-1)


def test_unencodable_text_is_replaced():
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    em = EventManager()
    with ProgressDisplay(em, out):
        with ProgressManager(em, None, 1, "caf\u00e9", steps=1):
            pass
    out.flush()
    assert b"[done] caf? (" in out.buffer.getvalue()


def test_writers():
    assert isinstance(make_writer(1, "m", 5), BarWriter)
    for steps in (-1, 0, None, "x"):
        assert isinstance(make_writer(1, "m", steps), SpinnerWriter)
    bar = BarWriter(1, "Copy", 4)
    bar.step(2)
    assert bar.render(80) == "[############------------]  50% 2/4 Copy"
    bar.step(9)  # more steps than announced: stays full
    assert bar.render(80).startswith("[" + "#" * 24 + "] 100% 4/4")
    spin = SpinnerWriter(1, "Scan")
    assert spin.render(80) == "[|] Scan"
    assert spin.render(80) == "[|] Scan"  # no progress: the spinner stays
    spin.step()
    assert spin.render(80) == "[/] Scan (1)"


def test_sanitize_and_fit():
    assert sanitize("a\tb\nc\x1b[31md\x00") == "a b c?[31md?"
    assert sanitize(None) == ""
    assert fit("abcdef", 4) == "abc~"
    assert fit("abc", 3) == "abc"
    assert fit("\u5bbd\u5bbd\u5bbd", 5) == "\u5bbd\u5bbd~"
    assert fit("e\u0301" * 3, 3) == "e\u0301" * 3
    assert fit("anything", 0) == ""


def test_key_keeps_equal_ids_from_different_origins_apart():
    em = EventManager()
    out = io.StringIO()
    with ProgressDisplay(em, out, key=lambda e: (e.origin, e.operation_id)):
        for origin in ("pid 1", "pid 2"):
            em.emit(
                ProgressStartEvent(
                    origin=origin, operation_id=1, message=origin, steps=2
                )
            )
        for origin in ("pid 2", "pid 1"):
            em.emit(
                ProgressEndEvent(
                    origin=origin, operation_id=1, message=origin, exit_state="normal"
                )
            )
    assert strip_times(out.getvalue()).splitlines() == [
        "pid 1 ...",
        "pid 2 ...",
        "[done] pid 2",
        "[done] pid 1",
    ]


def test_api_reexports():
    from encore.terminal import api, progress_display

    for name in api.__all__:
        assert getattr(api, name) is getattr(progress_display, name)


def test_plain_lines_are_never_cut():
    em = EventManager()
    out = io.StringIO()
    with ProgressDisplay(em, out):
        with ProgressManager(em, None, 1, "x" * 500, steps=1):
            pass
    assert out.getvalue().splitlines()[0] == "x" * 500 + " ..."
    assert strip_times(out.getvalue()).splitlines()[1] == "[done] " + "x" * 500
