"""The process-wide event manager.

Libraries that emit events without being handed a manager (stores, for
instance) use :func:`get_event_manager`.
"""

from __future__ import annotations

import threading

from .abstract_event_manager import BaseEventManager

__all__ = ["get_event_manager", "set_event_manager"]

_lock = threading.Lock()
_event_manager: BaseEventManager | None = None


def get_event_manager() -> BaseEventManager:
    """Return the process-wide event manager, creating an
    :class:`~encore.events.event_manager.EventManager` on first use."""
    global _event_manager
    manager = _event_manager
    if manager is None:
        with _lock:
            if _event_manager is None:
                from .event_manager import EventManager

                _event_manager = EventManager()
            manager = _event_manager
    return manager


def set_event_manager(event_manager: BaseEventManager) -> None:
    """Install ``event_manager`` as the process-wide manager.

    Raises
    ------
    ValueError
        If a manager is already set (explicitly or by an earlier
        :func:`get_event_manager`): components may already hold it.
    """
    global _event_manager
    with _lock:
        if _event_manager is not None:
            raise ValueError("the process-wide event manager is already set")
        _event_manager = event_manager
