"""Story 6 (daemon restart under running clients) and story 7 (a subscriber
that falls behind gets the missed events replayed, or is told they are lost)."""

import signal
import threading

import pytest

from encore.events.api import BaseEvent, EventManager
from encore_client import EventsLostEvent, bus_info


class TickEvent(BaseEvent):
    pass


def slow_config(buffer):
    return f"""
[daemon]
heartbeat_interval = 0.1
publish_hwm = 20
event_buffer = {buffer}
"""


def run_behind(make_daemon, bridges, wait, buffer, count=3000):
    """Emit ``count`` events while B's only listener is blocked."""
    make_daemon(slow_config(buffer))
    em_a, em_b = EventManager(), EventManager()
    release = threading.Event()
    received, lost = [], []

    def slow(event):
        release.wait(30)
        received.append(event)

    em_b.connect(TickEvent, slow)
    em_b.connect(EventsLostEvent, lost.append)
    bridge_b = bridges(em_b, receive_hwm=10)
    bridge_a = bridges(em_a)
    payload = "x" * 1000  # fills socket buffers quickly, so ZeroMQ drops
    for i in range(count):
        em_a.emit(TickEvent(i=i, payload=payload))
    wait(lambda: bridge_a.stats["acknowledged"] == count, 60, "all acknowledged")
    release.set()
    wait(
        lambda: len(received) + sum(e.count for e in lost) == count,
        60,
        "every event delivered or reported lost",
    )
    return bridge_b, received, lost, bridge_a


@pytest.mark.slow
def test_slow_subscriber_gets_missed_events_replayed(make_daemon, bridges, wait):
    bridge_b, received, lost, _ = run_behind(make_daemon, bridges, wait, buffer=100000)
    assert lost == []
    assert [e.i for e in received] == list(range(3000))
    assert bridge_b.stats["replayed"] > 0, bridge_b.stats  # there was a gap
    assert any(bus_info(e).replayed for e in received)


@pytest.mark.slow
def test_slow_subscriber_is_told_what_was_lost(make_daemon, bridges, wait):
    bridge_b, received, lost, bridge_a = run_behind(
        make_daemon, bridges, wait, buffer=100
    )
    assert lost, bridge_b.stats
    # Every sequence number is accounted for exactly once, in order.
    seen = [bus_info(e).seq for e in received]
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    covered = set(seen)
    for event in lost:
        span = set(range(event.first_seq, event.last_seq + 1)) - covered
        assert len(span) == event.count
        covered |= span
        assert event.since > 0 and event.instance == bridge_a.epoch.hex()
    assert covered == set(range(1, 3001))
    # The last 100 are always still in the buffer (or arrived live).
    assert [e.i for e in received[-100:]] == list(range(2900, 3000))


LISTENER = """
import threading
from encore.events.api import BaseEvent, EventManager
from encore_client import BusBridge, EventsLostEvent

class TickEvent(BaseEvent):
    pass
TickEvent.__module__ = "ticks"

manager = EventManager()
manager.connect(TickEvent, lambda e: print("TICK", e.i, flush=True))
manager.connect(EventsLostEvent, lambda e: print("LOST", e.count, flush=True))
with BusBridge(manager):
    print("READY", flush=True)
    threading.Event().wait(60)
"""


@pytest.mark.parametrize("how", ["kill", "sigterm"])
def test_clients_follow_a_daemon_restart(daemon, bridges, clients, wait, how):
    em_a, em_b = EventManager(), EventManager()
    got = []
    em_b.connect(TickEvent, got.append)
    bridge_a, bridge_b = bridges(em_a), bridges(em_b)
    other = clients(LISTENER)
    other.wait_for("READY")
    TickEvent.__module__ = "ticks"  # the subprocess knows it by this name
    try:
        em_a.emit(TickEvent(i=1))
        assert other.wait_for("TICK") == "TICK 1"
        wait(lambda: len(got) == 1, message="first event")
        first_instance = bridge_b.instance_id
        if how == "kill":
            daemon.kill()
        else:
            assert daemon.stop(signal.SIGTERM) == 0
        # Emitted while no daemon runs: held and resent after the restart.
        em_a.emit(TickEvent(i=2))
        daemon.start()
        wait(lambda: bridge_b.instance_id != first_instance, 15, "B sees the restart")
        em_a.emit(TickEvent(i=3))
        wait(lambda: len(got) == 3, 15, "events after the restart")
        assert [e.i for e in got] == [1, 2, 3]
        assert other.wait_for("TICK") == "TICK 2"
        assert other.wait_for("TICK") == "TICK 3"
        # No false alarm: nothing was lost, so nothing is reported lost.
        assert bridge_b.stats["lost"] == 0 and bridge_a.stats["dropped"] == 0
        assert bridge_b.stats["restarts"] == 1
    finally:
        TickEvent.__module__ = __name__
    other.kill()
    assert not any(line.startswith("LOST") for line in other.lines)


def test_requests_ride_through_a_restart(daemon):
    from encore_client import ZmqTransport

    with ZmqTransport(daemon.runtime_dir, timeout=10) as transport:
        first = transport.request("ping").result["instance"]
        daemon.kill()
        restarter = threading.Timer(0.3, daemon.start)
        restarter.start()
        try:
            # Sent while no daemon runs: answered by the new one.
            second = transport.request("ping").result["instance"]
        finally:
            restarter.join()
        assert second != first


EMITTER_FOREVER = """
from encore.events.api import BaseEvent, EventManager
from encore_client import BusBridge

class TickEvent(BaseEvent):
    pass

manager = EventManager()
with BusBridge(manager):
    print("READY", flush=True)
    i = 0
    while True:
        manager.emit(TickEvent(i=i, payload="x" * 500))
        i += 1
"""


def test_a_client_killed_mid_stream_harms_nobody(daemon, clients, bridges, wait):
    em = EventManager()
    got = []
    em.connect(BaseEvent, got.append)
    bridges(em)
    emitter = clients(EMITTER_FOREVER)
    emitter.wait_for("READY")
    wait(lambda: len(got) > 1000, 20, "events flowing")
    emitter.proc.kill()
    emitter.proc.wait()
    em_a = EventManager()
    bridges(em_a)
    count = len(got)
    em_a.emit(TickEvent(i=-1))
    wait(lambda: any(getattr(e, "i", None) == -1 for e in got[count:]), 10, "after")
    assert daemon.process.poll() is None
