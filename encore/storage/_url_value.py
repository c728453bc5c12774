"""The `Value` returned by the URL stores: data fetched when asked for.

Private to `encore.storage.static_url_store` and
`encore.storage.dynamic_url_store`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from encore.storage.abstract_store import Value

__all__ = ["URLValue"]

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
