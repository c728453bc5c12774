"""Events travel in packed batches: one emit request is one published message,
in order, of one origin, and the real daemon publishes a client's bytes as
they came when no daemon-side listener would see the event."""

import itertools
import time

import msgpack
import pytest
import zmq

from encore_client import _codec
from encore_client.wire.envelope import parse_reply
from encore_client.wire.topics import TOPIC_EVENT, origin_tag
from encore_client.wire.version import PROTOCOL_VERSION

BASES = ["encore.events.abstract_event_manager.BaseEvent"]
CLIENT = "batchtestclient1"


def header(name="app.BatchEvent"):
    return _codec.encode_header(_codec.header_head(name, BASES), None, time.time())


class Raw:
    """A bare DEALER and SUB on the daemon, speaking the documented protocol."""

    def __init__(self, runtime_dir):
        self.context = zmq.Context()
        self.dealer = self.context.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(f"ipc://{runtime_dir}/requests.ipc")
        self.sub = self.context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(f"ipc://{runtime_dir}/events.ipc")
        self.ids = itertools.count(1)

    def request(self, op, args=None, frames=()):
        envelope = {
            "v": PROTOCOL_VERSION,
            "id": next(self.ids),
            "client": CLIENT,
            "op": op,
            "args": args or {},
        }
        self.dealer.send_multipart([msgpack.packb(envelope), *frames])
        assert self.dealer.poll(5000), "no reply"
        return parse_reply(self.dealer.recv_multipart())[1]

    def emit(self, *pairs):
        parts = [part for pair in pairs for part in pair]
        return self.request("emit", frames=[_codec.pack_events(parts)])

    def live(self):
        """Wait until the SUB socket receives (ZeroMQ's slow joiner)."""
        token = "t"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.request("probe", {"token": token})
            while self.sub.poll(50):
                frames = self.sub.recv_multipart()
                if frames[0] == b"\x00probe":
                    return
        raise AssertionError("the SUB socket never went live")

    def next_events(self, timeout=5.0):
        """The next event message, as (topic, [(header frame, attributes)])."""
        deadline = time.monotonic() + timeout
        while self.sub.poll(max(0, deadline - time.monotonic()) * 1000):
            frames = self.sub.recv_multipart()
            if frames[0].startswith(TOPIC_EVENT):
                assert len(frames) == 2
                parts = _codec.unpack_events(frames[1])
                return frames[0], list(zip(parts[::2], parts[1::2]))
        raise AssertionError("no event message")

    def close(self):
        self.dealer.close()
        self.sub.close()
        self.context.term()


@pytest.fixture
def raw(runtime_dir, daemon):
    client = Raw(runtime_dir)
    try:
        client.live()
        yield client
    finally:
        client.close()


def test_one_emit_request_is_one_message_in_order(raw):
    pairs = [(header(), msgpack.packb({"i": i})) for i in range(50)]
    reply = raw.emit(*pairs)
    topic, events = raw.next_events()
    assert topic == b"ev." + origin_tag(CLIENT) + b".app.BatchEvent"
    assert [msgpack.unpackb(a)["i"] for _, a in events] == list(range(50))
    prefixes = [_codec.parse_prefix(h) for h, _ in events]
    seqs = [p[0] for p in prefixes]
    assert seqs == reply.result["seqs"]
    assert seqs == list(range(seqs[0], seqs[0] + 50))
    assert {p[3] for p in prefixes} == {CLIENT.encode()}


def test_separate_requests_are_separate_messages(raw):
    raw.emit((header(), msgpack.packb({"i": 1})))
    raw.emit((header(), msgpack.packb({"i": 2})), (header(), msgpack.packb({"i": 3})))
    first, second = raw.next_events(), raw.next_events()
    assert [msgpack.unpackb(a)["i"] for _, a in first[1]] == [1]
    assert [msgpack.unpackb(a)["i"] for _, a in second[1]] == [2, 3]


def test_events_are_published_byte_for_byte_without_a_daemon_listener(raw):
    # A private name: a daemon that rebuilt the event would drop it and
    # re-encode the rest; one that publishes what it got keeps the bytes
    # (receivers drop such names themselves).
    attributes = msgpack.packb({"n": 5, "_private": 1})
    sent_header = header()
    raw.emit((sent_header, attributes))
    _, [(frame, published)] = raw.next_events()
    assert published == attributes
    assert frame.endswith(sent_header)


def test_a_big_batch_is_split_by_size_but_stays_in_order(raw):
    blob = "x" * 2000
    pairs = [(header(), msgpack.packb({"i": i, "blob": blob})) for i in range(200)]
    raw.emit(*pairs)
    got, messages = [], 0
    while len(got) < 200:
        _, events = raw.next_events()
        messages += 1
        got.extend(msgpack.unpackb(a)["i"] for _, a in events)
    assert got == list(range(200))
    assert messages > 1  # 400 KB do not go as one message
