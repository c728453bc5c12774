"""The event header frame (binary prefix + map), its caches, and the
origin-tag subscriptions: every shortcut gives the slow path's answer."""

import random
import struct
import time

import msgpack
import pytest

from encore.events.api import BaseEvent
from encore_client import _codec
from encore_client.wire.topics import (
    DAEMON_TAG,
    event_topic,
    origin_tag,
    subscriptions_without,
)
from encore_client.wire.version import PROTOCOL_VERSION


class WireEvent(BaseEvent):
    pass


INSTANCE = bytes(range(16))
BASES = ["encore.events.abstract_event_manager.BaseEvent"]


def client_header(name="app.WireEvent", bases=BASES, source=None, stamp=1.5):
    return _codec.encode_header(_codec.header_head(name, bases), source, stamp)


def test_encode_header_is_the_documented_map():
    header = msgpack.unpackb(client_header(source={"kind": "object"}, stamp=2.25))
    assert header == {
        "class": "app.WireEvent",
        "bases": BASES,
        "source": {"kind": "object"},
        "time": 2.25,
    }


def test_event_frame_round_trip():
    frame = _codec.event_frame(42, 3.5, INSTANCE, "cli€nt".encode(), client_header())
    assert frame[0] == PROTOCOL_VERSION
    assert _codec.parse_prefix(frame) == (42, 3.5, INSTANCE, "cli€nt".encode())
    header = _codec.decode_header(frame)
    assert header["seq"] == 42 and header["time"] == 3.5
    assert header["instance"] == INSTANCE.hex() and header["origin"] == "cli€nt"
    assert header["class"] == "app.WireEvent" and header["bases"] == BASES
    own = _codec.decode_header(
        _codec.event_frame(1, 0.0, INSTANCE, b"", client_header())
    )
    assert own["origin"] is None  # the daemon's own event


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x02short",
        # another format
        struct.pack(">BQd16sH", 1, 1, 0.0, INSTANCE, 0) + client_header(),
        # origin longer than the frame
        struct.pack(">BQd16sH", PROTOCOL_VERSION, 1, 0.0, INSTANCE, 500) + b"x",
    ],
)
def test_bad_prefixes_are_refused(frame):
    with pytest.raises(_codec.DecodeError):
        _codec.parse_prefix(frame)
    with pytest.raises(_codec.DecodeError):
        _codec.decode_event_header(frame)


def test_cached_client_headers_decode_like_uncached_ones():
    first = client_header(stamp=1.0)
    later = client_header(stamp=7.75)
    assert _codec.decode_client_header(first)["time"] == 1.0  # fills the cache
    cached = _codec.decode_client_header(later)
    assert cached == msgpack.unpackb(later)
    cached["bases"].append("mutated")  # callers get their own list
    assert _codec.decode_client_header(later)["bases"] == BASES


def test_a_bad_header_is_refused_every_time():
    bad = client_header(name="not a class name!")
    for _ in range(2):
        with pytest.raises(_codec.DecodeError):
            _codec.decode_client_header(bad)
    bad_base = client_header(bases=["ok.Name", "bad name"])
    for _ in range(2):
        with pytest.raises(_codec.DecodeError):
            _codec.decode_client_header(bad_base)


def test_headers_with_a_source_or_an_int_time_are_decoded_in_full():
    with_source = client_header(source={"kind": "object", "repr": "x"})
    for _ in range(2):
        header = _codec.decode_client_header(with_source)
        assert header["source"] == {"kind": "object", "repr": "x"}
    int_time = _codec.pack(
        {"class": "app.WireEvent", "bases": BASES, "source": None, "time": 5}
    )
    assert _codec.decode_client_header(int_time)["time"] == 5


def test_event_header_cache_keeps_origin_and_map_apart():
    # The same bytes after the prefix, split differently by the origin
    # length, must not share a cache entry.
    body = client_header()
    with_origin = _codec.event_frame(1, 0.0, INSTANCE, b"abc", body)
    assert _codec.decode_event_header(with_origin)[3] == "abc"
    shifted = struct.pack(">BQd16sH", PROTOCOL_VERSION, 2, 0.0, INSTANCE, 0) + (
        b"abc" + body
    )
    with pytest.raises(_codec.DecodeError):
        _codec.decode_event_header(shifted)  # "abc" + map is not a map
    again = _codec.decode_event_header(
        _codec.event_frame(9, 4.0, INSTANCE, b"abc", client_header(stamp=4.0))
    )
    assert again == (9, 4.0, INSTANCE.hex(), "abc", "app.WireEvent", tuple(BASES), None)


def test_clean_header_drops_unknown_keys():
    frame = client_header()
    assert _codec.clean_header(msgpack.unpackb(frame), frame) is frame
    sneaky = _codec.pack(
        {
            "class": "app.WireEvent",
            "bases": BASES,
            "time": 1.0,
            "seq": 99,
            "origin": "x",
        }
    )
    cleaned = msgpack.unpackb(_codec.clean_header(msgpack.unpackb(sneaky), sneaky))
    assert cleaned == {"class": "app.WireEvent", "bases": BASES, "time": 1.0}


def test_attributes_skip_private_names_and_source_whatever_the_shape():
    for extra in ({}, {"a": 1}, {"a": 1, "_private": 2}, {"b": (1, 2)}):
        event = WireEvent(source=object(), x=1, **extra)
        event._note = "local"
        decoded = _codec.decode_attributes(_codec.encode_attributes(event))
        expected = {"x": 1, **{k: v for k, v in extra.items() if k[0] != "_"}}
        assert decoded == expected


def test_a_repr_that_encodes_while_encoding_does_not_corrupt_either():
    inner = WireEvent(y=(1, 2), z="inner")

    class Reentrant:
        def __repr__(self):
            # Runs inside the outer pack (no encoding for this type).
            self.inner_frame = _codec.encode_attributes(inner)
            return "<reentrant>"

    value = Reentrant()
    outer = WireEvent(obj=value, t=(3, 4))
    _codec.encode_attributes(WireEvent(warm=1))  # this thread's Packer exists
    decoded = _codec.decode_attributes(_codec.encode_attributes(outer))
    assert decoded["t"] == (3, 4)
    assert decoded["obj"].repr == "<reentrant>"
    assert _codec.decode_attributes(value.inner_frame) == {"y": (1, 2), "z": "inner"}


def test_subscriptions_match_every_tag_but_one():
    rng = random.Random(7)
    own = origin_tag("me")
    prefixes = subscriptions_without(own)
    assert len(prefixes) == 8 * 16

    def matched(topic):
        return any(topic.startswith(p) for p in prefixes)

    assert not matched(event_topic(own, "app.WireEvent"))
    assert matched(event_topic(DAEMON_TAG, "app.WireEvent"))
    for _ in range(500):
        tag = origin_tag(str(rng.random()))
        assert matched(event_topic(tag, "x.Y")) == (tag != own)
    # Tags that share a prefix with ours.
    for i in range(8):
        for c in b"0123456789abcdef":
            tag = own[:i] + bytes([c]) + own[i + 1 :]
            assert matched(event_topic(tag, "x.Y")) == (tag != own)


def test_origin_tags_are_stable_and_distinct_from_the_daemons():
    assert origin_tag("abc") == origin_tag("abc") != origin_tag("abd")
    assert origin_tag(None) == origin_tag("") == DAEMON_TAG
    assert all(len(origin_tag(str(time.time() + i))) == 8 for i in range(10))
