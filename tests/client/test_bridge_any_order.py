"""A BusBridge started before its daemon joins the bus when it comes.

Issue 16, item 5: desktop applications start in any order.  The default
bridge returns from ``start()`` at once without a daemon, reports its state
(``state``/``joined`` and a local ``BusStateEvent``), joins when the daemon
arrives, waits again when it stops and joins the next one; ``strict=True``
raises instead.  Real daemons, real sockets.
"""

import threading
import time

import pytest

from encore.events.api import BaseEvent, EventManager
from encore_client import BusBridge, BusStateEvent, DaemonUnavailableError

CONFIG = "[daemon]\nheartbeat_interval = 0.1\n"


class PingEvent(BaseEvent):
    """An event for these tests."""


def wait(condition, timeout=30.0, message="condition"):
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, f"{message}: not within {timeout} s"
        pause.wait(0.01)


class Recorder:
    def __init__(self, manager, cls):
        self.events = []
        self.lock = threading.Lock()
        manager.connect(cls, self)

    def __call__(self, event):
        with self.lock:
            self.events.append(event)

    def values(self, name):
        with self.lock:
            return [getattr(e, name) for e in self.events]


def test_bridge_started_before_the_daemon_joins_when_it_comes(make_daemon):
    daemon = make_daemon(CONFIG, start=False)
    manager = EventManager()
    states = Recorder(manager, BusStateEvent)
    pings = Recorder(manager, PingEvent)
    bridge = BusBridge(manager, daemon.runtime_dir, timeout=30)
    started = time.monotonic()
    bridge.start()
    try:
        # No socket at all: known at once, not after the 30 s timeout.
        assert time.monotonic() - started < 5
        assert bridge.state == "waiting" and not bridge.joined
        manager.emit(PingEvent(n=0))  # kept until a daemon takes it

        daemon.start()
        wait(lambda: bridge.joined, message="joined after the daemon started")
        wait(lambda: states.values("state") == ["joined"], message="state event")
        assert states.events[0].instance == bridge.instance_id

        with BusBridge(EventManager(), daemon.runtime_dir, timeout=30) as other:
            assert other.joined  # a daemon runs: start() waits for it
            seen = Recorder(other.event_manager, PingEvent)
            manager.emit(PingEvent(n=1))
            wait(lambda: 1 in seen.values("n"), message="event from the first")
            other.event_manager.emit(PingEvent(n=2))
            wait(lambda: 2 in pings.values("n"), message="event to the first")

            first_instance = bridge.instance_id
            daemon.stop()
            wait(lambda: not bridge.joined, message="waiting after the stop")
            # The state event is queued after the state changes: wait for it.
            wait(
                lambda: states.values("state") == ["joined", "waiting"],
                message="one waiting event",
            )

            daemon.start()
            wait(lambda: bridge.joined, message="joined the restarted daemon")
            wait(
                lambda: states.values("state") == ["joined", "waiting", "joined"],
                message="one joined event",
            )
            wait(lambda: bridge.instance_id != first_instance, message="instance")
            wait(lambda: other.joined, message="the other bridge is back")
            manager.emit(PingEvent(n=3))
            wait(lambda: 3 in seen.values("n"), message="events flow again")
    finally:
        bridge.close()
    assert bridge.state == "closed"


def test_strict_bridge_raises_without_a_daemon(runtime_dir):
    bridge = BusBridge(EventManager(), runtime_dir, timeout=0.5, strict=True)
    with pytest.raises(DaemonUnavailableError):
        bridge.start()
    assert bridge.state == "closed"


def test_state_events_stay_local(make_daemon):
    daemon = make_daemon(CONFIG)
    listener_manager = EventManager()
    everything = Recorder(listener_manager, BaseEvent)
    with BusBridge(listener_manager, daemon.runtime_dir, timeout=30):
        manager = EventManager()
        bridge = BusBridge(manager, daemon.runtime_dir, timeout=30)
        bridge.start()
        try:
            bridge._set_state("waiting")  # as after a silence
            bridge._set_state("joined")
            manager.emit(PingEvent(n=9))
            wait(lambda: any(isinstance(e, PingEvent) for e in everything.events))
        finally:
            bridge.close()
    assert not [e for e in everything.events if isinstance(e, BusStateEvent)]
