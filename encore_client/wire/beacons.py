"""The daemon's control messages on the event socket: heartbeat and probe.

Both are ``[topic, map]`` with the daemon's instance id, so that a
subscriber can tell a restarted daemon (a new instance) even when no event
flows.  A heartbeat also lists where the recently active epochs stand
(``epochs``: pairs of a 16-byte epoch id and its last sequence number), so
that a subscriber sees a gap at the end of an emitter's events, which no
later event would reveal.  A probe carries the token a client sent with
its ``probe`` request: seeing it proves the subscription is live.
"""

from __future__ import annotations

__all__ = [
    "Beacon",
    "build_heartbeat",
    "build_probe",
    "parse_beacon",
    "parse_epochs",
]

from collections.abc import Iterable
from typing import NamedTuple

from .. import _codec
from .errors import ProtocolError
from .limits import MAX_BEACON_EPOCHS  # noqa: F401 (encored imports it here until it moves)
from .topics import TOPIC_HEARTBEAT, TOPIC_PROBE
from .version import PROTOCOL_VERSION


class Beacon(NamedTuple):
    """A heartbeat or probe as read: ``token`` is ``None`` for a heartbeat."""

    instance: str
    epochs: list[tuple[bytes, int]]
    token: str | None = None


def build_heartbeat(
    instance: str, epochs: Iterable[tuple[bytes, int]], now: float
) -> list[bytes]:
    """The frames of a heartbeat sent at wall-clock time ``now``."""
    body = {
        "v": PROTOCOL_VERSION,
        "instance": instance,
        "epochs": [[epoch, seq] for epoch, seq in epochs],
        "time": now,
    }
    return [TOPIC_HEARTBEAT, _codec.pack(body)]


def build_probe(instance: str, token: str) -> list[bytes]:
    """The frames of the probe answering a client's ``probe`` with ``token``."""
    body = {"v": PROTOCOL_VERSION, "instance": instance, "token": token}
    return [TOPIC_PROBE, _codec.pack(body)]


def parse_epochs(value: object) -> list[tuple[bytes, int]]:
    """Check a list of ``[epoch, last_seq]`` pairs (heartbeat, hello reply)."""
    if type(value) is not list:
        raise ProtocolError("'epochs' must be a list of [epoch, last_seq] pairs")
    pairs = []
    for pair in value:
        if (
            type(pair) is not list
            or len(pair) != 2
            or type(pair[0]) is not bytes
            or len(pair[0]) != 16
            or type(pair[1]) is not int
            or pair[1] < 0
        ):
            raise ProtocolError("an epoch entry is [16 bytes, sequence number]")
        pairs.append((pair[0], pair[1]))
    return pairs


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
    instance = fields.get("instance")
    if type(instance) is not str:
        raise ProtocolError("control message needs 'instance'")
    if topic == TOPIC_HEARTBEAT:
        return Beacon(instance, parse_epochs(fields.get("epochs")))
    token = fields.get("token")
    if topic != TOPIC_PROBE or type(token) is not str:
        raise ProtocolError("a probe needs a 'token'")
    return Beacon(instance, [], token)
