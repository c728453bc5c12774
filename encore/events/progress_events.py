"""Progress events and :class:`ProgressManager`, which emits them.

A long operation reports a :class:`ProgressStartEvent`, any number of
:class:`ProgressStepEvent` and one :class:`ProgressEndEvent`, all carrying
the same ``operation_id`` so that listeners (a progress bar, possibly in
another process) can follow each operation separately.
"""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any

from .abstract_event_manager import BaseEvent, BaseEventManager

__all__ = [
    "EXIT_STATES",
    "ProgressEndEvent",
    "ProgressEvent",
    "ProgressManager",
    "ProgressStartEvent",
    "ProgressStepEvent",
]

#: The values ``ProgressEndEvent.exit_state`` may take.
EXIT_STATES = ("normal", "warning", "error", "exception")


class ProgressEvent(BaseEvent):
    """Base class of all progress events; listen to it to see them all.

    Attributes
    ----------
    operation_id : object
        Identifies the operation.
    message : str
        Human-readable description of the operation or its state.
    """


class ProgressStartEvent(ProgressEvent):
    """Emitted when an operation starts.

    Attributes
    ----------
    steps : int
        The number of steps, or -1 if unknown.
    """


class ProgressStepEvent(ProgressEvent):
    """Emitted as an operation advances.

    Attributes
    ----------
    step : int
        The number of the step just reached, or -1 if unknown.
    """


class ProgressEndEvent(ProgressEvent):
    """Emitted when an operation ends.

    Attributes
    ----------
    exit_state : str
        One of ``'normal'``, ``'warning'``, ``'error'``, ``'exception'``.
    """


class ProgressManager:
    """Emits the start, step and end events of one operation.

    Use it as a context manager, which guarantees the end event even when
    the block raises::

        with ProgressManager(event_manager, source, op_id, "Saving", steps) as p:
            for i in range(steps):
                ...
                p("Saving", step=i + 1)

    On an exception the end event has ``exit_state='exception'`` and the
    exception's text as its message, and the exception propagates. For finer
    control call :meth:`start`, :meth:`step` (also by calling the object) and
    :meth:`end` directly.

    Parameters
    ----------
    event_manager : BaseEventManager, optional
        Where to emit; defaults to the process-wide manager.
    source : object
        The events' source.
    operation_id : object, optional
        Identifies the operation; a fresh unique string if not given.
    message : str
        The default message of the events.
    steps : int
        The number of steps, -1 if unknown.
    **kwargs
        Extra attributes added to every event.
    """

    StartEventType: type[ProgressStartEvent] = ProgressStartEvent
    StepEventType: type[ProgressStepEvent] = ProgressStepEvent
    EndEventType: type[ProgressEndEvent] = ProgressEndEvent

    def __init__(
        self,
        event_manager: BaseEventManager | None = None,
        source: Any = None,
        operation_id: Any = None,
        message: str = "Performing operation",
        steps: int = -1,
        **kwargs: Any,
    ) -> None:
        if event_manager is None:
            from .package_globals import get_event_manager

            event_manager = get_event_manager()
        self.event_manager = event_manager
        self.source = source
        self.operation_id = uuid.uuid4().hex if operation_id is None else operation_id
        self.message = message
        self.steps = steps
        self.extra_kwargs = kwargs
        self._step_count = 0
        self._ended = False

    def _emit(self, cls: type[ProgressEvent], message: Any, extra: dict) -> None:
        attrs = dict(self.extra_kwargs)
        attrs.update(extra)
        self.event_manager.emit(
            cls(
                source=self.source,
                operation_id=self.operation_id,
                message=self.message if message is None else message,
                **attrs,
            )
        )

    def start(self, **extra_kwargs: Any) -> None:
        """Emit the start event (with ``steps``)."""
        self._emit(self.StartEventType, None, {"steps": self.steps, **extra_kwargs})

    def step(
        self, message: Any = None, step: int | None = None, **extra_kwargs: Any
    ) -> None:
        """Emit a step event.

        Parameters
        ----------
        message : str, optional
            Defaults to the manager's message. A bare integer in this place
            (``progress(i)``, as some examples write it) is taken as the
            step number.
        step : int, optional
            The step reached; by default a count of the calls so far.
        """
        if step is None and isinstance(message, int) and not isinstance(message, bool):
            message, step = None, message
        if step is None:
            self._step_count += 1
            step = self._step_count
        else:
            self._step_count = step
        self._emit(self.StepEventType, message, {"step": step, **extra_kwargs})

    __call__ = step
    progress = step

    def end(
        self,
        message: str | None = None,
        exit_state: str = "normal",
        **extra_kwargs: Any,
    ) -> None:
        """Emit the end event.

        Parameters
        ----------
        message : str, optional
            Defaults to the manager's message.
        exit_state : str
            ``'normal'``, ``'warning'``, ``'error'`` or ``'exception'``.
            ``end_state=`` is accepted as another spelling, as in the
            original documentation's example.

        Raises
        ------
        ValueError
            For any other exit state.
        """
        exit_state = extra_kwargs.pop("end_state", exit_state)
        if exit_state not in EXIT_STATES:
            raise ValueError(
                f"exit_state must be one of {EXIT_STATES}, not {exit_state!r}"
            )
        self._ended = True
        self._emit(
            self.EndEventType, message, {"exit_state": exit_state, **extra_kwargs}
        )

    def __enter__(self) -> ProgressManager:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.end(
                message=str(exc) or exc_type.__name__,  # type: ignore[union-attr]
                exit_state="exception",
            )
        elif not self._ended:
            self.end()
