"""A flood of subscriptions the daemon never publishes costs it nothing.

40 subscribers sending 60 KB subscriptions once grew the daemon by about
100 MiB (never given back) and kept ``ping`` waiting for up to 28 s.  Since
protocol 4 the PUB socket applies subscriptions in libzmq's own thread, so
none costs the daemon's loop anything, and one longer than any documented
shape is cut off before it is read (``ZMQ_MAXMSGSIZE``: the subscriber is
dropped).  Shorter ones of no documented shape are applied: bounded in
length, they cost a few hundred bytes each.
"""

from __future__ import annotations

import threading
import time

import zmq

from encore.events.api import BaseEvent, EventManager
from encore_client import BusBridge, ZmqTransport
from encore_client.wire.topics import valid_subscription
from encored.testing import wait_until

from .test_fuzz import rss

SUBSCRIBERS = 40
PER_SUBSCRIBER = 21
LONG = 60_000
#: Within the length limit, but of no documented shape.
MISSHAPEN = b"ev.NOT-A-TAG." + b"y" * 400


class Flooded(BaseEvent):
    """The event that must still get through after the flood."""


def _pinger(transport: ZmqTransport, stop: threading.Event, times: list[float]):
    while not stop.is_set():
        started = time.monotonic()
        transport.request("ping", timeout=5.0)
        times.append(time.monotonic() - started)
        time.sleep(0.005)


def test_long_subscriptions_are_cut_off_and_cost_no_memory_nor_time(make_daemon):
    daemon = make_daemon("[daemon]\nheartbeat_interval = 0.2\n")
    endpoint = f"ipc://{daemon.runtime_dir}/events.ipc"
    manager = EventManager()
    got: list[BaseEvent] = []
    manager.connect(Flooded, got.append)
    listener = BusBridge(manager, daemon.runtime_dir, timeout=10.0).start()
    before = rss(daemon.pid)
    stop = threading.Event()
    times: list[float] = []
    transport = ZmqTransport(daemon.runtime_dir, timeout=5.0)
    pinger = threading.Thread(target=_pinger, args=(transport, stop, times))
    context = zmq.Context()
    sockets = []
    try:
        pinger.start()
        for n in range(SUBSCRIBERS):
            sock = context.socket(zmq.SUB)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
            for i in range(PER_SUBSCRIBER):
                topic = b"ev.%08x" % (n * PER_SUBSCRIBER + i) + b"x" * LONG
                assert not valid_subscription(topic)
                sock.setsockopt(zmq.SUBSCRIBE, topic)
            sockets.append(sock)
        misshapen = context.socket(zmq.SUB)
        misshapen.setsockopt(zmq.LINGER, 0)
        misshapen.connect(endpoint)
        for i in range(SUBSCRIBERS * PER_SUBSCRIBER):
            topic = MISSHAPEN + b"%d" % i
            assert not valid_subscription(topic)
            misshapen.setsockopt(zmq.SUBSCRIBE, topic)
        sockets.append(misshapen)

        # The long ones drop their subscribers: libzmq keeps none of them.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(times) < 200:
            time.sleep(0.05)
        grown = rss(daemon.pid) - before
        assert grown < 20 * 1024 * 1024, f"daemon grew by {grown / 2**20:.1f} MiB"
        # The bus still works for a subscriber with ordinary subscriptions.
        with BusBridge(EventManager(), daemon.runtime_dir, timeout=10.0) as sender:
            sender.event_manager.emit(Flooded())
            wait_until(lambda: got, timeout=10, message="the event after the flood")
    finally:
        stop.set()
        pinger.join(10)
        for sock in sockets:
            sock.close()
        context.term()
        transport.close()
        listener.close()
    assert times, "no ping was answered"
    times.sort()
    p99 = times[int(len(times) * 0.99)]
    # Every ping answered (a timeout raises in the pinger); 100 ms at p99
    # leaves room for a machine shared with other work.
    assert p99 < 0.1, f"ping p99 {p99 * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms"
