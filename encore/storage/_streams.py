"""A base for the package's read-only raw streams.

Private to `encore.storage`: the streams of the stores (`PreadStream`,
`BufferIteratorIO`, the SQLite chunk stream, the HTTP response streams, the
`ProgressReader` of the wrapper stores) each define ``read``; `ReadStream`
builds ``readall`` and ``readinto`` on it, once.
"""

from __future__ import annotations

import io
from typing import Any

__all__ = ["ReadStream"]


class ReadStream(io.RawIOBase):
    """A raw stream whose ``readall`` and ``readinto`` call its ``read``.

    Subclasses define ``read(size=-1)`` (all remaining bytes for a negative
    or None size); errors are whatever their ``read`` raises.
    """

    def readall(self) -> bytes:
        """Read every remaining byte."""
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        """Read into a writable buffer; return the number of bytes read."""
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)
