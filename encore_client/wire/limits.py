"""The protocol's sizes and clamps, shared by the daemon and clients.

Each number here is documented for implementers in ``docs/protocol.md`` or
``docs/store_calls.md``; a sender that stays within them is never refused
for size.
"""

from __future__ import annotations

__all__ = [
    "MAX_ENVELOPE",
    "MAX_FRAMES",
    "MAX_ID_LENGTH",
    "MAX_CLIENT_LENGTH",
    "MAX_PACKED_EVENTS",
    "MAX_NAME_LENGTH",
    "MAX_BASES",
    "MAX_SUBSCRIPTION",
    "MAX_BEACON_EPOCHS",
    "MAX_HELLO_EPOCHS",
    "MAX_REPLAY_BATCH",
    "INLINE_LIMIT",
    "CHUNK_SIZE",
    "MIN_CHUNK",
    "MAX_CHUNK",
    "MAX_CLIENT_CHUNK",
    "ENVELOPE_DATA",
]

#: Most bytes of a request's first frame (its envelope: operation, key,
#: metadata, key lists).  Data travels in further frames, bounded by the
#: daemon's ``max_message_size`` instead.
MAX_ENVELOPE = 64 * 1024

#: Most events in one packed list (an emit request, a published message).
MAX_PACKED_EVENTS = 256

#: Most frames one request may carry, envelope included: an emit batch of
#: 256 events takes two frames each.
MAX_FRAMES = 1 + 2 * MAX_PACKED_EVENTS

#: Longest string request id and client name a daemon accepts.
MAX_ID_LENGTH = 128
MAX_CLIENT_LENGTH = 64

#: Longest event class name, longest base list accepted from the wire.
MAX_NAME_LENGTH = 512
MAX_BASES = 64

#: Longest subscription a daemon applies: ``b"ev."``, an 8-character origin
#: tag, a dot and a class name of at most ``MAX_NAME_LENGTH`` bytes.
MAX_SUBSCRIPTION = 3 + 8 + 1 + MAX_NAME_LENGTH

#: Most epochs one heartbeat lists (the most recently active ones), and
#: one ``hello`` reply.
MAX_BEACON_EPOCHS = 256
MAX_HELLO_EPOCHS = 4096

#: Most events one ``replay`` reply carries (``limit`` is clamped to it).
MAX_REPLAY_BATCH = 1000

#: Values up to this size travel inside one request or reply; larger ones
#: move in chunks of ``CHUNK_SIZE`` bytes, one request per chunk, so that
#: neither side ever holds more than a chunk or two of a value.
INLINE_LIMIT = 256 * 1024
CHUNK_SIZE = 4 * 1024 * 1024
#: The daemon clamps a transfer's ``chunk`` (and ``store.read``'s ``size``)
#: to this range.
MIN_CHUNK = 16 * 1024
MAX_CHUNK = 16 * 1024 * 1024
#: The Python client clamps its ``chunk_size`` to ``MIN_CHUNK`` .. this.
MAX_CLIENT_CHUNK = 8 * 1024 * 1024
#: Data up to this size travels inside the msgpack envelope itself rather
#: than in a frame of its own (a frame costs more than the copy).
ENVELOPE_DATA = 16 * 1024
