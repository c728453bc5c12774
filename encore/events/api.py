"""The public names of :mod:`encore.events`, in one place."""

from .abstract_event_manager import BaseEvent, BaseEventManager
from .event_manager import EventManager
from .heartbeat import Heartbeat, HeartbeatEvent
from .package_globals import get_event_manager, set_event_manager
from .progress_events import (
    ProgressEndEvent,
    ProgressEvent,
    ProgressManager,
    ProgressStartEvent,
    ProgressStepEvent,
)

__all__ = [
    "BaseEvent",
    "BaseEventManager",
    "EventManager",
    "Heartbeat",
    "HeartbeatEvent",
    "ProgressEndEvent",
    "ProgressEvent",
    "ProgressManager",
    "ProgressStartEvent",
    "ProgressStepEvent",
    "get_event_manager",
    "set_event_manager",
]
