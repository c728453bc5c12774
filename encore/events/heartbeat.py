"""A heartbeat: a :class:`HeartbeatEvent` emitted at a steady interval.

Useful to drive periodic work (redraws, polling) from the event system.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .abstract_event_manager import BaseEvent, BaseEventManager

__all__ = ["Heartbeat", "HeartbeatEvent"]


class HeartbeatEvent(BaseEvent):
    """One beat.

    Attributes
    ----------
    time : float
        ``time.time()`` when the beat was emitted.
    frame : int
        The beat's number, counting from 0.
    interval : float
        The heartbeat's interval in seconds.
    """


class Heartbeat:
    """Emits a :class:`HeartbeatEvent` every ``interval`` seconds.

    Call :meth:`run` to beat on the calling thread until :meth:`stop`, or
    :meth:`serve` to beat on a daemon thread. :meth:`pause` and
    :meth:`resume` suspend it. ``state`` is ``'waiting'`` before it starts,
    then ``'running'``, ``'paused'`` or ``'stopped'``.

    Beats are scheduled on a monotonic clock, so a slow listener delays a
    beat but does not shift the ones after it; beats that fall entirely
    inside a slow listener are skipped rather than fired in a burst.
    """

    def __init__(
        self, interval: float = 1 / 50, event_manager: BaseEventManager | None = None
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        if event_manager is None:
            from .package_globals import get_event_manager

            event_manager = get_event_manager()
        self.interval = interval
        self.event_manager = event_manager
        self.frame = 0
        self.state = "waiting"
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Beat on the calling thread until :meth:`stop` is called."""
        with self._wake:
            if self.state == "stopped":
                return
            if self.state == "waiting":
                self.state = "running"
        deadline = time.monotonic()
        while True:
            with self._wake:
                while self.state == "paused":
                    self._wake.wait()
                    deadline = time.monotonic()
                if self.state == "stopped":
                    return
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue  # re-check state; a stop or pause may have come
            self.event_manager.emit(
                HeartbeatEvent(
                    source=self,
                    time=time.time(),
                    frame=self.frame,
                    interval=self.interval,
                )
            )
            self.frame += 1
            deadline += self.interval
            now = time.monotonic()
            if deadline < now:
                deadline = now

    def serve(self) -> threading.Thread:
        """Beat on a new daemon thread; return the thread."""
        thread = threading.Thread(target=self.run, name="encore-heartbeat", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def pause(self) -> None:
        """Suspend beating until :meth:`resume`."""
        self._set_state("paused", only_from=("running", "waiting"))

    def resume(self) -> None:
        """Resume after :meth:`pause`."""
        self._set_state("running", only_from=("paused",))

    def stop(self) -> None:
        """Stop for good; a thread started by :meth:`serve` is joined
        (unless called from it)."""
        self._set_state("stopped", only_from=("waiting", "running", "paused"))
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _set_state(self, state: str, only_from: tuple[str, ...]) -> None:
        with self._wake:
            if self.state in only_from:
                self.state = state
                self._wake.notify_all()

    def __repr__(self) -> str:
        return f"Heartbeat(interval={self.interval!r}, state={self.state!r})"

    def __enter__(self) -> Heartbeat:
        self.serve()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
