"""Show the progress events of running operations on a terminal.

`ProgressDisplay` listens to `ProgressStartEvent`, `ProgressStepEvent`
and `ProgressEndEvent` on an event manager and draws one line per running
operation: a bar when the operation said how many steps it has, a spinner
otherwise.  When an operation ends, a line saying how it ended (done,
warning, error, exception) is printed above the running ones and stays.

On a terminal (a stream whose ``isatty()`` is true) the running lines are
redrawn in place with ANSI cursor movement.  Anywhere else (a pipe, a log
file) nothing is redrawn: it prints plain lines when an operation starts,
crosses each tenth of its steps, and ends.

Drawing is throttled: events only update state, and a drawing thread
redraws at most once per ``min_interval`` seconds (20 times a second by
default), so a million tiny steps cost a million cheap updates but only a
few frames.  End states are never dropped, only delayed to the next frame.

Text that arrives in events (possibly from other processes) is shown
literally: control characters, escape sequences included, are replaced so
an event cannot move the cursor or change the terminal.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Hashable
from typing import Any, TextIO

from encore.events.abstract_event_manager import BaseEventManager
from encore.events.progress_events import (
    ProgressEndEvent,
    ProgressStartEvent,
    ProgressStepEvent,
)

__all__ = [
    "BarWriter",
    "ProgressDisplay",
    "ProgressWriter",
    "SpinnerWriter",
    "format_size",
]

logger = logging.getLogger(__name__)

#: How each exit state is labelled on its end line.
STATE_LABELS = {
    "normal": "done",
    "warning": "WARNING",
    "error": "ERROR",
    "exception": "EXCEPTION",
}

_CSI = "\x1b["
_UNLIMITED = 1 << 30


def format_size(count: int) -> str:
    """A byte count as people read it: ``512 B``, ``1.5 KiB``, ``300.0 MiB``."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _percent(done: int, total: int) -> int:
    """Whole percent done, rounded down in exact integers (1/4 is 25)."""
    # int(0.29 * 100) is 28: float products read wrong at many counts.
    return max(0, min(100, done * 100 // total))


def sanitize(text: Any) -> str:
    """Return `text` as a one-line string without control characters.

    None becomes the empty string.  Tabs and newlines become spaces; every
    other control character (ESC included, so no escape sequence survives)
    becomes ``?``.
    """
    text = "" if text is None else str(text)
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else " " if ch in "\t\n\r" else "?" for ch in text
    )


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def fit(text: str, width: int) -> str:
    """Cut `text` so it takes at most `width` terminal columns.

    Wide (East Asian) characters count two columns, combining marks none.
    A cut line ends with ``~`` so the reader sees it was cut.
    """
    if width <= 0:
        return ""
    if len(text) <= width and text.isascii():
        return text
    used = 0
    for index, ch in enumerate(text):
        used += _char_width(ch)
        if used > width:
            head = text[:index]
            # make room for the marker
            while head and sum(map(_char_width, head)) > width - 1:
                head = head[:-1]
            return head + "~"
    return text


def _as_int(value: Any) -> int | None:
    """An event's number, or None when it is missing or not a number."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


class ProgressWriter:
    """The state of one operation, and how it is drawn.

    Subclasses decide how a running operation looks (`render`); the
    display calls `step` and `end` from the event listeners.  Writers are
    not thread-safe on their own: the display serializes calls to them.

    Parameters
    ----------
    operation_id : object
        The operation's identifier.
    message : str
        The operation's description (from its start event).
    steps : int
        The number of steps; -1 (or any value < 1) if unknown.
    """

    def __init__(self, operation_id: Any, message: str, steps: int = -1) -> None:
        self.operation_id = operation_id
        self.message = sanitize(message)
        self.current = self.message
        self._raw_current: Any = None
        self.steps = steps
        self.step_count = 0
        self.exit_state: str | None = None
        self.end_message: str | None = None
        self.started = time.monotonic()
        self.ended: float | None = None
        self._frames_seen = 0
        #: Steps are bytes (a store transfer): counts are shown as sizes.
        self.byte_counts = False

    def count_text(self, count: int) -> str:
        """A step count as shown: a size when the steps are bytes."""
        return format_size(count) if self.byte_counts else str(count)

    def step(self, step: Any = None, message: Any = None) -> None:
        """Record a step event; a missing or negative step counts one."""
        number = _as_int(step)
        if number is None or number < 0:
            self.step_count += 1
        else:
            self.step_count = number
        # Most operations repeat one message object on every step: skip
        # cleaning it again.
        if message is not None and message is not self._raw_current:
            self._raw_current = message
            self.current = sanitize(message)

    def end(self, exit_state: Any = "normal", message: Any = None) -> None:
        """Record the end event."""
        state = str(exit_state)
        self.exit_state = state if state in STATE_LABELS else sanitize(state)
        if message is not None:
            self.end_message = sanitize(message)
        self.ended = time.monotonic()

    def render(self, width: int) -> str:
        """The line for the running operation, at most `width` columns."""
        raise NotImplementedError

    def summary(self, width: int) -> str:
        """The line saying how the operation ended."""
        label = STATE_LABELS.get(self.exit_state or "normal", self.exit_state)
        text = self.message
        if self.end_message and self.end_message != self.message:
            text = f"{text}: {self.end_message}" if text else self.end_message
        elapsed = (self.ended or time.monotonic()) - self.started
        return fit(f"[{label}] {text} ({elapsed:.1f} s)", width)

    def milestone(self) -> str | None:
        """A line for logs when the operation passed a notable point.

        Returns None when nothing worth a line happened since the last
        call.  The base class reports nothing.
        """
        return None


class BarWriter(ProgressWriter):
    """Draws ``[#####-----]  50% 5/10 message`` for a known step count."""

    #: Columns of the bar between its brackets.
    bar_width = 24

    def __init__(self, operation_id: Any, message: str, steps: int) -> None:
        super().__init__(operation_id, message, steps)
        self._logged_tenths = 0

    def fraction(self) -> float:
        """Done part of the operation, between 0 and 1."""
        return min(max(self.step_count / self.steps, 0.0), 1.0)

    def render(self, width: int) -> str:
        done = min(max(self.step_count, 0), self.steps)
        filled = done * self.bar_width // self.steps
        bar = "#" * filled + "-" * (self.bar_width - filled)
        count = f"{self.count_text(done)}/{self.count_text(self.steps)}"
        percent = _percent(done, self.steps)
        return fit(f"[{bar}] {percent:3d}% {count} {self.current}", width)

    def milestone(self) -> str | None:
        # A line at each tenth crossed, saying where the operation really
        # is (1 of 4 steps is 25%, not the 20% of the tenth it crossed).
        done = min(max(self.step_count, 0), self.steps)
        tenths = done * 10 // self.steps
        if tenths <= self._logged_tenths or tenths >= 10:
            return None
        self._logged_tenths = tenths
        count = f"{self.count_text(done)}/{self.count_text(self.steps)}"
        return f"{self.message}: {_percent(done, self.steps)}% ({count})"


class SpinnerWriter(ProgressWriter):
    """Draws ``[/] message (123)`` when the step count is unknown.

    The spinner turns once per frame in which the operation made progress,
    so a stalled operation shows a still spinner.
    """

    frames = "|/-\\"

    def __init__(self, operation_id: Any, message: str, steps: int = -1) -> None:
        super().__init__(operation_id, message, steps)
        self._frame = 0
        self._last_count = 0

    def render(self, width: int) -> str:
        if self.step_count != self._last_count:
            self._last_count = self.step_count
            self._frame = (self._frame + 1) % len(self.frames)
        count = f" ({self.count_text(self.step_count)})" if self.step_count else ""
        return fit(f"[{self.frames[self._frame]}] {self.current}{count}", width)


def make_writer(operation_id: Any, message: str, steps: Any) -> ProgressWriter:
    """The writer for an operation: a bar if `steps` is a positive count."""
    count = _as_int(steps)
    if count is not None and count > 0:
        return BarWriter(operation_id, message, count)
    return SpinnerWriter(operation_id, message)


class ProgressDisplay:
    """Draw the progress of every running operation on a stream.

    Parameters
    ----------
    event_manager : BaseEventManager, optional
        Where to listen; defaults to the process-wide manager.
    stream : text stream, optional
        Where to draw; defaults to ``sys.stdout`` (as it is when the
        display is created).
    min_interval : float
        Least time between two frames, in seconds.
    ansi : bool, optional
        Redraw in place with ANSI escapes; defaults to whether `stream`
        is a terminal (and ``TERM`` is not ``dumb``).
    writer_factory : callable, optional
        ``writer_factory(operation_id, message, steps)`` returns the
        `ProgressWriter` of a new operation; defaults to `make_writer`.
    key : callable, optional
        ``key(event)`` returns the hashable value that tells operations
        apart; defaults to the event's ``operation_id`` (its ``repr`` if it
        cannot be hashed).  A display fed by several processes can pass
        one that adds the event's origin, so equal ids do not collide.

    The display starts listening at once and runs one daemon thread that
    draws.  Call `close` (or use it as a context manager) to disconnect
    its listeners, draw the final state and stop the thread.  Listeners
    are bound methods, which the event manager holds weakly; the drawing
    thread keeps the display alive until `close`.

    Operations are told apart by `key`.  A step or end event of
    an operation whose start was missed (the display was created later)
    still gets a line, a spinner since its step count is unknown.

    Raises
    ------
    ValueError
        If `min_interval` is negative.
    """

    def __init__(
        self,
        event_manager: BaseEventManager | None = None,
        stream: TextIO | None = None,
        *,
        min_interval: float = 0.05,
        ansi: bool | None = None,
        writer_factory: Callable[[Any, str, Any], ProgressWriter] | None = None,
        key: Callable[[Any], Hashable] | None = None,
    ) -> None:
        if event_manager is None:
            from encore.events.package_globals import get_event_manager

            event_manager = get_event_manager()
        if stream is None:
            stream = sys.stdout
        if not min_interval >= 0:
            raise ValueError(f"min_interval must be >= 0, not {min_interval!r}")
        if ansi is None:
            ansi = _is_terminal(stream)
        self.event_manager = event_manager
        self.stream = stream
        self.min_interval = float(min_interval)
        self.ansi = ansi
        self._make_writer = writer_factory or make_writer
        self._key = key or _operation_key
        self._cond = threading.Condition(threading.Lock())
        self._running: dict[Any, ProgressWriter] = {}
        # Lines to print once, above the running ones, in event order; an
        # ended operation's writer stands for its summary, made at drawing
        # time when the width is known.
        self._finished: list[str | ProgressWriter] = []
        self._dirty = False
        self._closed = False
        self._drawn = 0  # running lines on screen below the printed ones
        self._last_frame = 0.0
        #: Frames drawn so far (for tests and benchmarks).
        self.frames = 0
        self._listeners = (
            (ProgressStartEvent, self._on_start),
            (ProgressStepEvent, self._on_step),
            (ProgressEndEvent, self._on_end),
        )
        for cls, func in self._listeners:
            event_manager.connect(cls, func)
        self._thread = threading.Thread(
            target=self._draw_loop, name="ProgressDisplay", daemon=True
        )
        self._thread.start()

    # -- context manager and closing ---------------------------------------

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening, draw the final state and stop the drawing thread.

        Operations still running stay on screen as last drawn.  Calling it
        again does nothing.  Errors writing to the stream propagate.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        for cls, func in self._listeners:
            try:
                self.event_manager.disconnect(cls, func)
            except KeyError:
                pass  # already gone (e.g. disconnected by someone else)
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._draw()

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._closed

    # -- listeners (run on the emitting thread: cheap, never write) ----------

    def _on_start(self, event: ProgressStartEvent) -> None:
        op_id = self._key(event)
        message = sanitize(getattr(event, "message", ""))
        writer = self._make_writer(op_id, message, getattr(event, "steps", -1))
        if _counts_bytes(event):
            writer.byte_counts = True
        with self._cond:
            self._running[op_id] = writer
            if not self.ansi:
                self._finished.append(f"{message} ...")
            self._changed()

    def _on_step(self, event: ProgressStepEvent) -> None:
        op_id = self._key(event)
        with self._cond:
            writer = self._writer_for(op_id, event)
            writer.step(getattr(event, "step", None), getattr(event, "message", None))
            if not self.ansi:
                line = writer.milestone()
                if line is not None:
                    self._finished.append(line)
            self._changed()

    def _on_end(self, event: ProgressEndEvent) -> None:
        op_id = self._key(event)
        with self._cond:
            writer = self._writer_for(op_id, event)
            del self._running[op_id]
            writer.end(
                getattr(event, "exit_state", "normal"), getattr(event, "message", None)
            )
            self._finished.append(writer)
            self._changed()

    def _writer_for(self, op_id: Any, event: Any) -> ProgressWriter:
        writer = self._running.get(op_id)
        if writer is None:
            message = sanitize(getattr(event, "message", ""))
            writer = self._make_writer(op_id, message, -1)
            writer.byte_counts = _counts_bytes(event)
            self._running[op_id] = writer
        return writer

    def _changed(self) -> None:
        if not self._dirty:
            self._dirty = True
            self._cond.notify_all()

    # -- drawing -------------------------------------------------------------

    def _draw_loop(self) -> None:
        while True:
            with self._cond:
                while not (self._dirty or self._closed):
                    self._cond.wait()
                if self._closed:
                    return
                delay = self._last_frame + self.min_interval - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
            try:
                self._draw()
            except Exception:
                # A closed or broken stream: say so once and stop drawing,
                # rather than fail every emit or spin on the error.
                logger.exception("ProgressDisplay: drawing failed; display stopped")
                return

    def _draw(self) -> None:
        """Write one frame: new end lines, then the running operations."""
        width, height = self._size()
        with self._cond:
            self._dirty = False
            self._last_frame = time.monotonic()
            printed = [
                item if isinstance(item, str) else item.summary(width - 1)
                for item in self._finished
            ]
            self._finished = []
            if self.ansi:
                text = self._compose_ansi(printed, width, height)
            else:
                text = "".join(fit(line, width - 1) + "\n" for line in printed)
            if text:
                self.frames += 1
        if text:
            self._write(text)

    def _compose_ansi(self, printed: list[str], width: int, height: int) -> str:
        if not (printed or self._running or self._drawn):
            return ""
        parts = []
        if self._drawn:
            parts.append(f"\r{_CSI}{self._drawn}A")
        for line in printed:
            parts.append(f"{_CSI}2K{fit(line, width - 1)}\n")
        writers = list(self._running.values())
        # Lines beyond the screen's height would scroll away and could not
        # be reached again by moving the cursor up.
        room = max(height - 1, 1)
        if len(writers) > room:
            hidden = len(writers) - (room - 1)
            writers = writers[: room - 1]
            extra = [f"... and {hidden} more operation(s)"]
        else:
            extra = []
        rows = [writer.render(width - 1) for writer in writers] + extra
        for row in rows:
            parts.append(f"{_CSI}2K{fit(row, width - 1)}\n")
        parts.append(f"{_CSI}J")
        self._drawn = len(rows)
        return "".join(parts)

    def _size(self) -> tuple[int, int]:
        """Columns and rows to draw in, asked again for every frame."""
        if not self.ansi:
            # A pipe or a log file has no width: never cut its lines.
            return _UNLIMITED, _UNLIMITED
        try:
            size = os.get_terminal_size(self.stream.fileno())
        except (AttributeError, OSError, ValueError):
            # ansi forced on a stream that is not a terminal
            size = shutil.get_terminal_size()
        return max(size.columns, 10), max(size.lines, 2)

    def _write(self, text: str) -> None:
        encoding = getattr(self.stream, "encoding", None)
        if encoding:
            # A terminal that cannot show a character gets a "?" rather
            # than an exception in the drawing thread.
            text = text.encode(encoding, "replace").decode(encoding)
        self.stream.write(text)
        self.stream.flush()


def _counts_bytes(event: Any) -> bool:
    """Whether an operation's steps are bytes: a store's data transfer."""
    try:
        from encore.storage.events import StoreProgressEvent
    except ImportError:  # pragma: no cover - a partial install
        return False
    return isinstance(event, StoreProgressEvent)


def _operation_key(event: Any) -> Any:
    """The event's operation id, usable as a dict key."""
    op_id = getattr(event, "operation_id", None)
    try:
        hash(op_id)
    except TypeError:
        # e.g. a list decoded from another process's message
        return ("unhashable operation id", repr(op_id))
    return op_id


def _is_terminal(stream: Any) -> bool:
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    return os.environ.get("TERM", "") != "dumb"
