"""The daemon's own EventManager: client events are emitted on it, and its
events (from any thread) are published.  The daemon runs in a thread here so
that the test can listen on its manager."""

import threading

import pytest

from encore.events.api import BaseEvent, EventManager
from encore_client import BusBridge, ZmqTransport, bus_info
from encored import Daemon, RuntimeDir, parse_config


class PingEvent(BaseEvent):
    pass


class QuietEvent(BaseEvent):
    pass


@pytest.fixture
def inprocess_daemon(runtime_dir):
    config = parse_config("[daemon]\nheartbeat_interval = 0.1\n")
    directory = RuntimeDir(runtime_dir)
    directory.acquire()
    daemon = Daemon(config, directory)
    ready = threading.Event()
    thread = threading.Thread(target=daemon.run, kwargs={"on_ready": ready.set})
    thread.start()
    try:
        assert ready.wait(10)
        yield daemon
    finally:
        daemon.request_stop()
        thread.join(10)
        directory.release()


def test_client_events_reach_daemon_listeners_and_daemon_events_reach_clients(
    inprocess_daemon, runtime_dir, wait
):
    daemon = inprocess_daemon
    seen_by_daemon = []
    daemon.event_manager.connect(PingEvent, seen_by_daemon.append)
    manager = EventManager()
    received = []
    manager.connect(BaseEvent, received.append)
    with BusBridge(manager, runtime_dir) as bridge:
        manager.emit(PingEvent(n=1))  # has a daemon-side listener: rebuilt
        manager.emit(QuietEvent(n=2))  # has none: published as sent
        wait(lambda: bridge.stats["acknowledged"] == 2, message="acks")
        assert [e.n for e in seen_by_daemon] == [1]
        assert isinstance(seen_by_daemon[0], PingEvent)
        # An event emitted on the daemon's manager by another thread.
        daemon.event_manager.emit(QuietEvent(n=3))
        wait(lambda: any(getattr(e, "n", None) == 3 for e in received), message="3")
        event = next(e for e in received if getattr(e, "n", None) == 3)
        # The daemon numbers its own events under its own epoch.
        info = bus_info(event)
        assert info.origin is None and info.seq == 1
        assert info.instance == daemon.instance_id


def test_daemon_side_handled_and_disabled(inprocess_daemon, runtime_dir, wait):
    daemon = inprocess_daemon
    daemon.event_manager.connect(PingEvent, lambda e: e.mark_as_handled(), priority=99)
    daemon.event_manager.disable(QuietEvent)
    client = ZmqTransport(runtime_dir, timeout=5)
    try:
        with BusBridge(EventManager(), runtime_dir) as bridge:
            bridge.event_manager.emit(PingEvent())  # handled: still published
            # Disabled in the daemon: its listeners do not hear it, but the
            # bus is not the daemon's manager: still published.
            bridge.event_manager.emit(QuietEvent())
            wait(lambda: bridge.stats["acknowledged"] == 2, message="acks")
        assert client.request("status").result["events_published"] == 2
    finally:
        client.close()


def test_a_listener_connected_later_sees_the_next_events(
    inprocess_daemon, runtime_dir, wait
):
    # Events nobody in the daemon hears are published as they came, from a
    # cache of their headers: connecting, disabling or tracing must end
    # that at once.
    daemon = inprocess_daemon
    manager = EventManager()
    with BusBridge(manager, runtime_dir) as bridge:

        def emit_and_wait(n):
            manager.emit(QuietEvent(n=n))
            wait(lambda: bridge.stats["acknowledged"] == n, message=f"ack {n}")

        emit_and_wait(1)
        emit_and_wait(2)  # from the cache
        heard = []
        daemon.event_manager.connect(QuietEvent, lambda e: heard.append(e.n))
        emit_and_wait(3)
        assert heard == [3]
        traced = []
        daemon.event_manager.set_trace(lambda *args: traced.append(args[0]))
        emit_and_wait(4)
        assert heard == [3, 4] and traced
        daemon.event_manager.set_trace(None)
        daemon.event_manager.disable(QuietEvent)
        emit_and_wait(5)
    with ZmqTransport(runtime_dir, timeout=5) as client:
        assert client.request("status").result["events_published"] == 5
