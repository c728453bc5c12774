"""The daemon's control messages on the event socket: heartbeat and probe.

Both are ``[topic, map]`` with the daemon's instance id and the sequence
number of its last published event, so that a subscriber can tell a
restarted daemon (new instance) and missed events (a gap up to
``last_seq``) even when no event flows.  A probe also carries the token a
client sent with its ``probe`` request: seeing it proves the
subscription is live.
"""

from __future__ import annotations

__all__ = ["Beacon", "build_heartbeat", "build_probe", "parse_beacon"]

from typing import NamedTuple

from .. import _codec
from .._protocol import PROTOCOL_VERSION, TOPIC_HEARTBEAT, TOPIC_PROBE
from .errors import ProtocolError


class Beacon(NamedTuple):
    """A heartbeat or probe as read: ``token`` is ``None`` for a heartbeat."""

    instance: str
    last_seq: int
    token: str | None = None


def build_heartbeat(instance: str, last_seq: int, now: float) -> list[bytes]:
    """The frames of a heartbeat sent at wall-clock time ``now``."""
    body = {
        "v": PROTOCOL_VERSION,
        "instance": instance,
        "last_seq": last_seq,
        "time": now,
    }
    return [TOPIC_HEARTBEAT, _codec.pack(body)]


def build_probe(instance: str, token: str, last_seq: int) -> list[bytes]:
    """The frames of the probe answering a client's ``probe`` with ``token``."""
    body = {
        "v": PROTOCOL_VERSION,
        "instance": instance,
        "token": token,
        "last_seq": last_seq,
    }
    return [TOPIC_PROBE, _codec.pack(body)]


def parse_beacon(topic: bytes, body: bytes) -> Beacon:
    """Read a heartbeat or probe; :class:`ProtocolError` if it is not one."""
    fields = _codec.unpack(body)
    if type(fields) is not dict:
        raise ProtocolError("control message is not a map")
    version = fields.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"control message in protocol version {version!r}; "
            f"this client speaks {PROTOCOL_VERSION}"
        )
    instance, last_seq = fields.get("instance"), fields.get("last_seq")
    if type(instance) is not str or type(last_seq) is not int or last_seq < 0:
        raise ProtocolError("control message needs 'instance' and 'last_seq'")
    if topic == TOPIC_HEARTBEAT:
        return Beacon(instance, last_seq)
    token = fields.get("token")
    if topic != TOPIC_PROBE or type(token) is not str:
        raise ProtocolError("a probe needs a 'token'")
    return Beacon(instance, last_seq, token)
