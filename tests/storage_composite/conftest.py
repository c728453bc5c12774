"""Fixtures for the composite store tests (joined, mounted, simple-auth)."""

from __future__ import annotations

import threading

import pytest


class EventRecorder:
    """Collects the events a manager emits, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list = []

    def __call__(self, event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, cls, source=None) -> list:
        """The recorded events that are instances of ``cls`` (from ``source``)."""
        with self._lock:
            return [
                e
                for e in self.events
                if isinstance(e, cls) and (source is None or e.source is source)
            ]

    def clear(self) -> None:
        """Forget what was recorded."""
        with self._lock:
            self.events.clear()


@pytest.fixture
def event_manager():
    """A private `EventManager`, so tests never share listeners."""
    from encore.events.event_manager import EventManager

    return EventManager()


@pytest.fixture
def recorder(event_manager) -> EventRecorder:
    """Records every `BaseEvent` emitted on ``event_manager``."""
    from encore.events.abstract_event_manager import BaseEvent

    recorder = EventRecorder()
    event_manager.connect(BaseEvent, recorder)
    return recorder


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch) -> None:
    """Keep loopback requests off any proxy configured in the environment."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
