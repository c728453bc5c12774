"""Concrete ``Value`` classes used by the stores of this package.

- ``BytesValue`` (alias ``StringValue``, its name in the original
  documentation): data held in a bytes object.
- ``FileValue``: data in a file that was opened when the value was made, so
  the value keeps reading the bytes that were current then even if the file
  is replaced afterwards. Every ``data`` stream reads with ``os.pread`` at
  its own offset, so several streams of one value do not disturb each other.
- ``StreamValue``: data from a stream that can be read only once.
"""

from __future__ import annotations

import io
import os
import weakref
from typing import Any

from ._streams import ReadStream
from .abstract_store import Value, _range_start

__all__ = ["BytesValue", "StringValue", "FileValue", "StreamValue", "SharedFd"]


class BytesValue(Value):
    """A value whose data is a bytes object.

    Parameters
    ----------
    data : bytes
        The data.
    metadata : dict
        The metadata (kept as given: pass a copy).
    created, modified : float, optional
        Timestamps of the key.
    permissions : dict, optional
        Permissions of the key.
    """

    def __init__(
        self,
        data: bytes = b"",
        metadata: dict | None = None,
        created: float | None = None,
        modified: float | None = None,
        permissions: dict | None = None,
    ) -> None:
        self._bytes = bytes(data)
        self.metadata = {} if metadata is None else metadata
        self.size = len(self._bytes)
        self.created = created
        self.modified = modified
        self.permissions = permissions

    @property
    def data(self) -> io.BytesIO:
        """A new ``BytesIO`` over the data."""
        return io.BytesIO(self._bytes)

    def range(self, start: int | None = None, end: int | None = None) -> io.BytesIO:
        """Return a ``BytesIO`` over bytes ``start`` to ``end`` (exclusive).

        Raises
        ------
        ValueError
            If ``start`` is negative or ``end < start``.
        """
        start = _range_start(start, end)
        return io.BytesIO(self._bytes[start:end])


StringValue = BytesValue


class SharedFd:
    """An open file descriptor, closed when no one refers to it any more.

    A plain ``os.open`` descriptor closed by a finalizer: dropping a value
    without reading it neither leaks the descriptor nor warns.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._finalizer = weakref.finalize(self, os.close, fd)

    def close(self) -> None:
        """Close the descriptor now (idempotent)."""
        self._finalizer()


class PreadStream(ReadStream):
    """A readable binary stream over a range of a ``SharedFd``.

    Parameters
    ----------
    shared : SharedFd
        The descriptor (kept alive while the stream is open).
    start : int
        First byte.
    end : int or None
        One past the last byte; ``None`` for the end of the file.
    """

    def __init__(self, shared: SharedFd, start: int = 0, end: int | None = None):
        super().__init__()
        self._shared = shared
        self._start = start
        self._position = start
        self._end = end

    def readable(self) -> bool:
        """Return True."""
        return True

    def seekable(self) -> bool:
        """Return True."""
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position, relative to the start of the range."""
        if whence == io.SEEK_SET:
            position = self._start + offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            end = self._end
            if end is None:
                end = os.fstat(self._shared.fd).st_size
            position = end + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if position < self._start:
            raise ValueError("negative seek position")
        self._position = position
        return position - self._start

    def tell(self) -> int:
        """Return the position relative to the start of the range."""
        return self._position - self._start

    def read(self, size: int | None = -1) -> bytes:
        """Read at most ``size`` bytes (the rest of the range if negative)."""
        if self.closed:
            raise ValueError("read from a closed stream")
        if size is None or size < 0:
            parts = []
            while chunk := self.read(1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        if self._end is not None:
            size = min(size, self._end - self._position)
        if size <= 0:
            return b""
        chunk = os.pread(self._shared.fd, size, self._position)
        self._position += len(chunk)
        return chunk

    def fileno(self) -> int:
        """The underlying descriptor (shared: do not close it)."""
        return self._shared.fd

    def close(self) -> None:
        """Close the stream (the descriptor closes when unused)."""
        super().close()


class FileValue(Value):
    """A value whose data is an open file (see the module docstring).

    Parameters
    ----------
    shared : SharedFd
        The data file, opened for reading.
    metadata : dict
        The metadata.
    size : int
        The number of bytes.
    created, modified : float, optional
        Timestamps of the key.
    """

    def __init__(
        self,
        shared: SharedFd,
        metadata: dict,
        size: int,
        created: float | None = None,
        modified: float | None = None,
        permissions: dict | None = None,
    ) -> None:
        self._shared = shared
        self.metadata = metadata
        self.size = size
        self.created = created
        self.modified = modified
        self.permissions = permissions

    @property
    def data(self) -> PreadStream:
        """A new stream over the data, from the start."""
        return PreadStream(self._shared, 0, self.size)

    def range(self, start: int | None = None, end: int | None = None) -> PreadStream:
        """Return a stream of bytes ``start`` to ``end`` (exclusive).

        Raises
        ------
        ValueError
            If ``start`` is negative or ``end < start``.
        """
        start = _range_start(start, end)
        end = self.size if end is None else min(end, self.size)
        start = min(start, end)
        return PreadStream(self._shared, start, end)


class StreamValue(Value):
    """A value whose data is a stream that can be read once.

    ``data`` returns the same stream every time.
    """

    def __init__(
        self,
        stream: Any,
        metadata: dict,
        size: int | None = None,
        created: float | None = None,
        modified: float | None = None,
        permissions: dict | None = None,
    ) -> None:
        self._stream = stream
        self.metadata = metadata
        self.size = size
        self.created = created
        self.modified = modified
        self.permissions = permissions

    @property
    def data(self) -> Any:
        """The stream (the same object on every access)."""
        return self._stream
