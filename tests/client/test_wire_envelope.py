"""Envelopes and beacons of ``encore_client.wire``, without any socket.

Each end of the wire uses these functions, so a request built by the
client is what the daemon parses, and a bad one is refused with the code
the daemon answers.
"""

import msgpack
import pytest

from encore_client.wire.beacons import (
    build_heartbeat,
    build_probe,
    parse_beacon,
)
from encore_client.wire.envelope import (
    MAX_FRAMES,
    Reply,
    RequestRefused,
    build_error,
    build_reply,
    build_request,
    parse_reply,
    parse_request,
)
from encore_client.wire.errors import ErrorCode, ProtocolError, RequestTooLargeError
from encore_client.wire.limits import MAX_ENVELOPE
from encore_client.wire.topics import TOPIC_HEARTBEAT, TOPIC_PROBE
from encore_client.wire.version import PROTOCOL_VERSION

LIMIT = 1 << 20


def parse(head, size=None, frames=1):
    return parse_request(head, len(head) if size is None else size, frames, LIMIT)


def refusal(head, **kwargs):
    with pytest.raises(RequestRefused) as info:
        parse(head, **kwargs)
    return info.value


def test_a_built_request_parses_back():
    head = build_request("me", 7, "store.get", {"key": "k"})
    assert parse(head) == (7, "me", "store.get", {"key": "k"})


def test_the_client_refuses_an_envelope_the_daemon_would_refuse():
    with pytest.raises(RequestTooLargeError, match="the key is too long"):
        build_request("me", 1, "store.get", {"key": "k" * MAX_ENVELOPE})


def test_an_oversized_envelope_is_answered_with_its_id():
    head = msgpack.packb({"id": 42, "args": {"key": "k" * MAX_ENVELOPE}})
    refused = refusal(head)
    assert (refused.code, refused.request_id) == (ErrorCode.TOO_LARGE, 42)


def test_a_request_over_the_size_limit_is_too_large():
    head = build_request("me", 3, "store.set", {})
    refused = refusal(head, size=LIMIT + 1, frames=2)
    assert (refused.code, refused.request_id) == (ErrorCode.TOO_LARGE, 3)


def test_too_many_frames():
    head = build_request("me", 4, "emit", {})
    refused = refusal(head, frames=MAX_FRAMES + 1)
    assert (refused.code, refused.request_id) == (ErrorCode.BAD_MESSAGE, 4)


@pytest.mark.parametrize("head", [b"\xc1", msgpack.packb([1, 2]), b""])
def test_not_a_map(head):
    refused = refusal(head)
    assert (refused.code, refused.request_id) == (ErrorCode.BAD_MESSAGE, None)
    assert "not a msgpack map" in refused.message


def test_another_version_is_refused_naming_ours():
    envelope = {"v": PROTOCOL_VERSION - 1, "id": 5, "op": "ping", "args": {}}
    refused = refusal(msgpack.packb(envelope))
    assert (refused.code, refused.request_id) == (ErrorCode.UNSUPPORTED_VERSION, 5)
    assert f"speaks {PROTOCOL_VERSION}" in refused.message


@pytest.mark.parametrize(
    "change",
    [
        {"id": None},
        {"id": True},
        {"id": "x" * 129},
        {"op": 5},
        {"args": []},
        {"client": 1},
        {"client": "c" * 65},
    ],
)
def test_malformed_fields(change):
    envelope = {"v": PROTOCOL_VERSION, "id": 9, "client": "me", "op": "ping"}
    envelope["args"] = {}
    envelope.update(change)
    refused = refusal(msgpack.packb(envelope))
    assert refused.code == ErrorCode.BAD_MESSAGE
    assert "needs 'id'" in refused.message


def test_replies_round_trip():
    assert parse_reply([build_reply(1, {"a": 1}), b"data"]) == (
        1,
        Reply({"a": 1}, [b"data"]),
    )
    rid, error = parse_reply([build_error(2, ErrorCode.NO_SUCH_STORE, "no 'x'")])
    assert rid == 2 and error.code == ErrorCode.NO_SUCH_STORE
    assert str(error) == "no 'x'"


def test_a_reply_in_another_version_is_an_error_for_its_request():
    reply = msgpack.packb({"v": PROTOCOL_VERSION + 1, "id": 3, "ok": True})
    rid, outcome = parse_reply([reply])
    assert rid == 3 and isinstance(outcome, ProtocolError)


def test_beacons_round_trip():
    epochs = [(b"e" * 16, 17), (b"f" * 16, 0)]
    topic, body = build_heartbeat("ab12", epochs, 1.5)
    assert parse_beacon(topic, body) == ("ab12", epochs, None)
    topic, body = build_probe("ab12", "tok")
    assert parse_beacon(topic, body) == ("ab12", [], "tok")


@pytest.mark.parametrize(
    "fields",
    [
        {"v": PROTOCOL_VERSION - 1, "instance": "ab", "token": "t"},
        {"v": PROTOCOL_VERSION, "instance": 5, "token": "t"},
        {"v": PROTOCOL_VERSION, "instance": "ab"},
        {"v": PROTOCOL_VERSION, "instance": "ab", "token": 7},
    ],
)
def test_malformed_probes_are_protocol_errors(fields):
    with pytest.raises(ProtocolError):
        parse_beacon(TOPIC_PROBE, msgpack.packb(fields))


@pytest.mark.parametrize(
    "epochs",
    [None, {}, [[b"short", 1]], [[b"e" * 16, -1]], [[b"e" * 16, "1"]], [[b"e" * 16]]],
)
def test_malformed_heartbeats_are_protocol_errors(epochs):
    fields = {"v": PROTOCOL_VERSION, "instance": "ab", "epochs": epochs}
    with pytest.raises(ProtocolError):
        parse_beacon(TOPIC_HEARTBEAT, msgpack.packb(fields))
