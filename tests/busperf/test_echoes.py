"""Own events stay off a bridge's socket, and sequence tracking still sees
every number: interleaved emitters, and a subscriber that falls behind while
it emits itself."""

import threading

import msgpack
import zmq

from encore.events.api import BaseEvent, EventManager
from encore_client import EventsLostEvent, bus_info
from encore_client._codec import unpack_events
from encore_client.wire.topics import TOPIC_EVENT, origin_tag, subscriptions_without


class NumberEvent(BaseEvent):
    pass


def collector(manager):
    """Events of NumberEvent that arrive from the bus (not local emits)."""
    got = []
    manager.connect(
        NumberEvent, lambda e: got.append(e) if bus_info(e) is not None else None
    )
    return got


def test_the_daemon_does_not_send_a_bridge_its_own_events(
    runtime_dir, daemon, bridges, wait
):
    em_a, em_b = EventManager(), EventManager()
    got_a, got_b = collector(em_a), collector(em_b)
    bridge_a = bridges(em_a)
    bridges(em_b)
    # A SUB socket subscribed exactly as bridge A is: it must see B's events
    # and none of A's.
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    for prefix in subscriptions_without(origin_tag(bridge_a.client_id)):
        sub.setsockopt(zmq.SUBSCRIBE, prefix)
    sub.setsockopt(zmq.SUBSCRIBE, b"\x00")
    sub.connect(bridge_a.endpoints.events)
    try:
        wait(lambda: sub.poll(100), message="heartbeat on the test SUB socket")
        for i in range(300):
            em_a.emit(NumberEvent(origin="a", i=i))
        for i in range(5):
            em_b.emit(NumberEvent(origin="b", i=i))
        wait(lambda: len(got_b) == 300 and len(got_a) == 5, message="deliveries")
        seen = []
        while len(seen) < 5 and sub.poll(5000):
            frames = sub.recv_multipart()
            if frames[0].startswith(TOPIC_EVENT):
                parts = unpack_events(frames[1])
                seen.extend(msgpack.unpackb(a)["origin"] for a in parts[1::2])
        assert seen == ["b"] * 5
    finally:
        sub.close()
        context.term()
    assert [e.i for e in got_b] == list(range(300))
    assert [e.origin for e in got_a] == ["b"] * 5
    assert bridge_a.stats["lost"] == 0 and bridge_a.stats["delivered"] == 5


def test_interleaved_emitters_each_get_the_others_events_once(bridges, wait):
    em_a, em_b = EventManager(), EventManager()
    got_a, got_b = collector(em_a), collector(em_b)
    bridge_a, bridge_b = bridges(em_a), bridges(em_b)
    count = 2000

    def emit(manager, name):
        for i in range(count):
            manager.emit(NumberEvent(origin=name, i=i))

    threads = [
        threading.Thread(target=emit, args=(em_a, "a")),
        threading.Thread(target=emit, args=(em_b, "b")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait(lambda: len(got_a) >= count and len(got_b) >= count, message="deliveries")
    assert [(e.origin, e.i) for e in got_a] == [("b", i) for i in range(count)]
    assert [(e.origin, e.i) for e in got_b] == [("a", i) for i in range(count)]
    seqs = [bus_info(e).seq for e in got_a]
    assert seqs == sorted(seqs)
    for bridge in (bridge_a, bridge_b):
        assert bridge.stats["lost"] == 0, bridge.stats


def test_a_subscriber_behind_while_emitting_gets_the_rest_replayed(bridges, wait):
    em_a, em_b = EventManager(), EventManager()
    release = threading.Event()
    got_b, lost_b = [], []

    def slow(event):
        if bus_info(event) is None:
            return  # B's own local emit
        release.wait(30)
        got_b.append(event)

    em_b.connect(NumberEvent, slow)
    em_b.connect(EventsLostEvent, lost_b.append)
    bridge_b = bridges(em_b, max_queue=5, receive_hwm=10)
    bridge_a = bridges(em_a)
    count = 3000
    # Big enough that the daemon's PUB queue (20 messages, each at most
    # 64 KiB of events) and the kernel's buffers overflow.
    pad = "x" * 2000
    for i in range(count):
        em_a.emit(NumberEvent(origin="a", i=i, pad=pad))
        if i % 15 == 0:
            em_b.emit(NumberEvent(origin="b", i=i))  # B's own, in the gaps
    wait(lambda: bridge_a.stats["acknowledged"] == count, message="A acknowledged")
    wait(lambda: bridge_b.stats["acknowledged"] == 200, message="B acknowledged")
    release.set()
    wait(lambda: len(got_b) >= count, 60, message="B caught up")
    assert [(e.origin, e.i) for e in got_b] == [("a", i) for i in range(count)]
    assert bridge_b.stats["replayed"] > 0, bridge_b.stats  # there was a gap
    assert not lost_b and bridge_b.stats["lost"] == 0, bridge_b.stats
