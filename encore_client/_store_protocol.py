"""Transitional: the daemon's old import path for the store calls' constants.

They live in ``encore_client.wire`` (limits, operations, sources, errors);
this module goes once ``encored`` imports those directly.
"""

from __future__ import annotations

from .wire.errors import TransferError, UnknownStoreError  # noqa: F401
from .wire.limits import CHUNK_SIZE, ENVELOPE_DATA, INLINE_LIMIT  # noqa: F401
from .wire.operations import STORE_OPS  # noqa: F401
from .wire.sources import SOURCE_KIND  # noqa: F401

__all__: list[str] = []
