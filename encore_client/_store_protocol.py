"""Constants of the store calls: operation names and sizes.

Shared by the daemon (``encored.stores.operations``) and the client
(``encore_client._remote_store``); importing it registers nothing.  The
calls are described for implementers in ``docs/store_calls.md``.
"""

from __future__ import annotations

__all__ = [
    "UnknownStoreError",
    "TransferError",
    "STORE_OPS",
    "INLINE_LIMIT",
    "CHUNK_SIZE",
    "ENVELOPE_DATA",
    "SOURCE_KIND",
]

from .wire.errors import TransferError, UnknownStoreError

#: Values up to this size travel inside one request or reply; larger ones
#: move in chunks of ``CHUNK_SIZE`` bytes, one request per chunk, so that
#: neither side ever holds more than a chunk or two of a value.
INLINE_LIMIT = 256 * 1024
CHUNK_SIZE = 4 * 1024 * 1024
#: Data up to this size travels inside the msgpack envelope itself rather
#: than in a frame of its own (a frame costs more than the copy).
ENVELOPE_DATA = 16 * 1024

#: ``kind`` of the event-source descriptor of a hosted store.
SOURCE_KIND = "store"


#: Every store operation (the names on the wire).
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
