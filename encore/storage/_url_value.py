"""The `Value` returned by the URL stores: data fetched when asked for.

Private to `encore.storage.static_url_store` and
`encore.storage.dynamic_url_store`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from encore.storage._streams import ReadStream
from encore.storage.abstract_store import StoreError, Value

__all__ = ["GuardedStream", "URLValue"]

Probe = Callable[[], tuple[int | None, float | None, float | None]]


class URLValue(Value):
    """A value whose data is fetched from a URL on each ``data`` access.

    ``size``, ``created`` and ``modified`` come from a lightweight request
    (``probe``, typically ``HEAD``) made the first time one of them is read,
    so a caller that only wants the metadata makes no data request at all.
    A failing probe leaves them ``None`` rather than raising from an
    attribute access.

    Parameters
    ----------
    open_data : callable
        Returns a new readable stream of the data (a context manager). It
        raises `KeyError` if the data has gone, `StoreError` if unreachable.
    metadata : dict
        The key's metadata (kept as given: pass a copy).
    probe : callable, optional
        Returns ``(size, created, modified)``.
    """

    def __init__(
        self,
        open_data: Callable[[], Any],
        metadata: dict,
        probe: Probe | None = None,
        permissions: dict | None = None,
    ) -> None:
        self._open_data = open_data
        self.metadata = metadata
        self._probe = probe
        self._info: tuple[int | None, float | None, float | None] | None = None
        self.permissions = permissions

    @property
    def data(self) -> Any:
        """A new stream over the data, from the start."""
        return self._open_data()

    def _probed(self) -> tuple[int | None, float | None, float | None]:
        if self._info is None:
            info = (None, None, None)
            if self._probe is not None:
                try:
                    info = self._probe()
                except (KeyError, OSError, Exception):
                    # Attributes never raise; the data access will, clearly.
                    info = (None, None, None)
            self._info = info
        return self._info

    @property
    def size(self) -> int | None:  # type: ignore[override]
        """Number of bytes of data, or None if the server does not say."""
        return self._probed()[0]

    @property
    def created(self) -> float | None:  # type: ignore[override]
        """Creation time (UTC seconds), or None if the server does not say."""
        return self._probed()[1]

    @property
    def modified(self) -> float | None:  # type: ignore[override]
        """Last modification (UTC seconds), or None if unknown."""
        return self._probed()[2]


class GuardedStream(ReadStream):
    """A readable stream whose transport errors become `StoreError`.

    Wraps the body of an HTTP response so that a connection that breaks
    while the caller reads (server gone, truncated body, timeout) raises the
    store's documented error, chained to the original one.

    Parameters
    ----------
    stream : file-like
        The response body.
    errors : tuple of exception types
        The transport's errors to translate.
    what : str
        Says what is being read, for the message.
    expected : int, optional
        The announced length (``Content-Length``). A body that ends before
        it is a broken transfer, not the end of the data: some transports
        (``http.client``) return it as a short read without complaint.
    """

    def __init__(
        self, stream: Any, errors: tuple, what: str, expected: int | None = None
    ) -> None:
        super().__init__()
        self._stream = stream
        self._errors = errors
        self._what = what
        self._expected = expected
        self._total = 0

    def readable(self) -> bool:
        """Return True: this stream is readable."""
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Read at most ``size`` bytes (to the end if negative or None).

        Raises
        ------
        StoreError
            If the transport fails while reading.
        ValueError
            If the stream is closed.
        """
        if self.closed:
            raise ValueError("read from a closed stream")
        try:
            chunk = self._stream.read(-1 if size is None else size)
        except self._errors as exc:
            raise StoreError(f"reading {self._what} failed: {exc!r}") from exc
        self._total += len(chunk)
        if (
            not chunk
            and size != 0
            and self._expected is not None
            and self._total < self._expected
        ):
            raise StoreError(
                f"reading {self._what} failed: the connection ended after "
                f"{self._total} of {self._expected} bytes"
            )
        return chunk

    def close(self) -> None:
        """Close the underlying response."""
        if not self.closed:
            self._stream.close()
        super().close()
