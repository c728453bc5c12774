"""Topics of the event socket: event topics, origin tags, control topics.

Every message on the PUB socket starts with a topic frame; subscribers
filter by prefix.  Which prefixes a daemon applies as subscriptions is
decided here too (:func:`valid_subscription`).
"""

from __future__ import annotations

__all__ = [
    "TOPIC_EVENT",
    "TOPIC_HEARTBEAT",
    "TOPIC_PROBE",
    "TOPIC_CONTROL",
    "DAEMON_TAG",
    "origin_tag",
    "event_topic",
    "valid_subscription",
    "subscriptions_without",
]

import hashlib
import re

from .limits import MAX_SUBSCRIPTION

#: First frame of every message on the PUB socket.  Event topics start
#: with ``TOPIC_EVENT`` so that a subscriber may filter coarsely by prefix;
#: control messages start with a NUL byte so that no class name can collide
#: with them.
TOPIC_EVENT = b"ev."
TOPIC_HEARTBEAT = b"\x00hb"
TOPIC_PROBE = b"\x00probe"
#: The prefix every control topic shares: subscribe to it for all of them.
TOPIC_CONTROL = b"\x00"

#: Event topics are ``TOPIC_EVENT + <origin tag> + b"." + <class name>``.
#: The origin tag is 8 lowercase hex digits derived from the emitting
#: client's id, or ``DAEMON_TAG`` for the daemon's own events, so that a
#: subscriber can leave its own events out by prefix (see
#: :func:`subscriptions_without`).
DAEMON_TAG = b"--------"
_TAG_ALPHABET = b"0123456789abcdef-"


def origin_tag(client: str | None) -> bytes:
    """The origin tag of events emitted by ``client`` (``None``: the daemon)."""
    if not client:
        return DAEMON_TAG
    return hashlib.blake2b(client.encode(), digest_size=4).hexdigest().encode()


def event_topic(tag: bytes, class_name: str) -> bytes:
    """The topic frame of an event of ``class_name`` with origin ``tag``."""
    return TOPIC_EVENT + tag + b"." + class_name.encode()


_CONTROL_TOPICS = (TOPIC_HEARTBEAT, TOPIC_PROBE)
_NAME_BYTES = re.compile(rb"[\w.<>\x80-\xff]*")


def valid_subscription(topic: bytes) -> bool:
    """Whether ``topic`` is a subscription a daemon applies.

    ZeroMQ subscriptions are prefixes, so the documented shapes are the
    prefixes of the topics the daemon publishes: the empty prefix (all),
    a prefix of a control topic, or a prefix of ``b"ev." + tag + b"." +
    class name`` up to ``MAX_SUBSCRIPTION`` bytes.  Anything else is refused:
    a subscriber cannot make the daemon hold what it will never publish.
    """
    if len(topic) > MAX_SUBSCRIPTION:
        return False
    if topic[:1] == b"\x00":
        return any(control.startswith(topic) for control in _CONTROL_TOPICS)
    head = len(TOPIC_EVENT)
    if len(topic) <= head:
        return TOPIC_EVENT.startswith(topic)
    if not topic.startswith(TOPIC_EVENT):
        return False
    end = head + len(DAEMON_TAG)
    if topic[head:end].translate(None, _TAG_ALPHABET):
        return False
    if len(topic) <= end:
        return True
    return topic[end] == 0x2E and _NAME_BYTES.fullmatch(topic, end + 1) is not None


def subscriptions_without(tag: bytes) -> list[bytes]:
    """Prefixes that match every event topic except those tagged ``tag``.

    ZeroMQ subscriptions only include, so "all but one tag" is spelled as,
    for each position of the tag, every other character after the tag's
    own characters up to it: 8 x 16 prefixes.  Control topics are not
    included (subscribe to ``b"\\x00"`` for them).
    """
    prefixes = []
    for i, own in enumerate(tag):
        for other in _TAG_ALPHABET:
            if other != own:
                prefixes.append(TOPIC_EVENT + tag[:i] + bytes([other]))
    return prefixes
