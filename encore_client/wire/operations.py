"""Every operation name of the protocol, in one table.

A request's ``op`` is one of :data:`OPERATIONS`; the daemon's operation
table must hold exactly these names (a test checks both the daemon and
``docs/protocol.md`` / ``docs/store_calls.md`` against them).
"""

from __future__ import annotations

__all__ = [
    "OP_HELLO",
    "OP_PING",
    "OP_STATUS",
    "OP_EMIT",
    "OP_PROBE",
    "OP_REPLAY",
    "OP_SYNC",
    "BUS_OPS",
    "STORE_OPS",
    "OPERATIONS",
]

OP_HELLO = "hello"
OP_PING = "ping"
OP_STATUS = "status"
OP_EMIT = "emit"
OP_PROBE = "probe"
OP_REPLAY = "replay"
OP_SYNC = "sync"

#: The bus operations (``docs/protocol.md``, "Operations").
BUS_OPS = (OP_HELLO, OP_PING, OP_STATUS, OP_EMIT, OP_PROBE, OP_REPLAY, OP_SYNC)

#: The store operations (``docs/store_calls.md``).
STORE_OPS = (
    "store.list",
    "store.connect",
    "store.disconnect",
    "store.exists",
    "store.get",
    "store.get_range",
    "store.read",
    "store.close_stream",
    "store.get_metadata",
    "store.multiget_metadata",
    "store.query",
    "store.query_keys",
    "store.glob",
    "store.set",
    "store.set_metadata",
    "store.update_metadata",
    "store.delete",
    "store.upload_begin",
    "store.upload_chunk",
    "store.upload_end",
    "store.upload_abort",
    "store.transaction",
    "store.permissions",
    "store.check_permissions",
)

#: Every operation a daemon answers: nothing outside this set is valid.
OPERATIONS = frozenset(BUS_OPS + STORE_OPS)
