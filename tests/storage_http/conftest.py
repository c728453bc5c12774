"""Fixtures for the URL store tests: real HTTP servers on 127.0.0.1.

The server classes live in `encore.storage.http_test_servers` so that other
suites can start them too; these fixtures only tie their lifetime to a test
(stopped, sockets closed and threads joined even when the test fails).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from encore.storage.http_test_servers import RestStoreServer, StaticSiteServer


@pytest.fixture
def rest_server() -> Iterator[RestStoreServer]:
    """A running `RestStoreServer` with no authentication."""
    with RestStoreServer() as server:
        yield server


@pytest.fixture
def static_server() -> Iterator[StaticSiteServer]:
    """A running `StaticSiteServer` over a fresh temporary directory."""
    with StaticSiteServer() as server:
        yield server


@pytest.fixture
def wait_for() -> Callable[..., None]:
    """Wait until ``condition()`` is true, failing the test at a deadline."""

    def wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        event = threading.Event()
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {timeout} s")
            event.wait(0.01)

    return wait


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
