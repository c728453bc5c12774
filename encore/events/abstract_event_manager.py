"""The event base class and the abstract event manager API.

:class:`BaseEvent` is the root of every event class; :class:`BaseEventManager`
is the interface every event manager implements. The concrete manager lives
in :mod:`encore.events.event_manager`.
"""

from __future__ import annotations

import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["BaseEvent", "BaseEventManager"]


class BaseEvent:
    """Base class for all events.

    Parameters
    ----------
    source : object
        The object which generated the event.
    **kwargs
        Further attributes; each becomes an attribute of the event.

    Listeners are matched on the event's class and its bases, and filtered
    on its attributes.
    """

    #: Set by :meth:`mark_as_handled`; later listeners are then skipped.
    _handled = False

    def __init__(self, source: Any = None, **kwargs: Any) -> None:
        # An instance attribute, not only the class default: dispatch reads
        # it after every listener, and an instance hit is the fastest lookup.
        self._handled = False
        self.source = source
        self.__dict__.update(kwargs)

    def mark_as_handled(self) -> None:
        """Mark the event as handled so later listeners are not called.

        Call this method rather than setting ``_handled``: a long run of
        listeners is dispatched without a check between calls, and this
        method is what ends it (see `encore.events.event_manager`).
        """
        self._handled = True
        run = self.__dict__.get("_dispatch_run")
        if run is not None:
            # End the run being dispatched: its iterator is moved past the
            # end, so the dispatcher's loop stops after this listener.
            run.__setstate__(sys.maxsize)

    def pre_emit(self) -> None:
        """Called just before the event is dispatched to its listeners."""

    def post_emit(self) -> None:
        """Called just after the event has been dispatched to its listeners."""

    def __repr__(self) -> str:
        attrs = ", ".join(
            f"{name}={value!r}"
            for name, value in vars(self).items()
            if not name.startswith("_")
        )
        return f"{type(self).__name__}({attrs})"


class BaseEventManager(ABC):
    """The API every event manager implements.

    ``connect``, ``disconnect`` and ``emit`` are thread-safe. Listeners of a
    class are also called for events of its subclasses.
    """

    @abstractmethod
    def connect(
        self,
        cls: type[BaseEvent],
        func: Callable[[Any], Any],
        filter: Mapping[str, Any] | None = None,
        priority: int = 0,
    ) -> None:
        """Add a listener for events of ``cls`` and its subclasses.

        Parameters
        ----------
        cls : class
            The class of events the listener is called for.
        func : callable
            Called with the event instance as its only argument.
        filter : dict, optional
            Attribute name (or dotted path) to value; the listener is called
            only for events whose attributes equal every value. A missing
            attribute fails the filter.
        priority : int
            Higher priorities are called first.
        """

    @abstractmethod
    def disconnect(self, cls: type[BaseEvent], func: Callable[[Any], Any]) -> None:
        """Remove a listener.

        Raises
        ------
        KeyError
            If ``func`` is not connected to ``cls``.
        """

    @abstractmethod
    def emit(self, event: BaseEvent, block: bool = True) -> threading.Thread | None:
        """Call every listener of the event's class and its bases.

        With ``block=False`` the dispatch runs on a new thread, which is
        returned already started.
        """

    @abstractmethod
    def disable(self, cls: type[BaseEvent]) -> None:
        """Silence events of ``cls`` and of its subclasses."""

    @abstractmethod
    def enable(self, cls: type[BaseEvent]) -> None:
        """Undo :meth:`disable` for ``cls`` (not for a subclass disabled on
        its own)."""

    @abstractmethod
    def is_enabled(self, cls: type[BaseEvent]) -> bool:
        """Whether events of ``cls`` are dispatched."""
