"""``encore.storage.url_value``: the module path encore 0.8 users import.

``URLValue(url, metadata=None, opener=None)`` is our URL-backed value
(`encore.storage._url_value.URLValue`) made from a URL: every access to
``data`` opens the URL anew through ``opener`` (a
``urllib.request.OpenerDirector``, built with the default handlers when
omitted), and ``size``/``created``/``modified`` come from one ``HEAD``
request made the first time one of them is read.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from email.utils import parsedate_to_datetime
from typing import Any

from . import _url_value
from .abstract_store import StoreError

__all__ = ["URLValue"]

_TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


class URLValue(_url_value.URLValue):
    """A value whose data is fetched from ``url`` on each ``data`` access.

    Parameters
    ----------
    url : str
        The URL of the data.
    metadata : dict, optional
        The value's metadata (``{}`` when omitted).
    opener : urllib.request.OpenerDirector, optional
        What opens the URL (for authentication or proxies); anything with
        an ``open(request)`` method returning a response.

    ``data`` raises `KeyError` (with the URL) when the server answers 404
    and `StoreError` for any other failure; a failing ``HEAD`` leaves
    ``size``, ``created`` and ``modified`` ``None``.
    """

    def __init__(
        self, url: str, metadata: dict | None = None, opener: Any = None
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        self.url = url
        self.opener = urllib.request.build_opener() if opener is None else opener
        super().__init__(
            self._open_data, {} if metadata is None else metadata, probe=self._head
        )

    def _open(self, request: Any, what: str) -> Any:
        try:
            return self.opener.open(request)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404:
                raise KeyError(self.url) from exc
            raise StoreError(
                f"could not fetch {what} of {self.url}: HTTP {exc.code} {exc.reason}"
            ) from exc
        except urllib.error.URLError as exc:
            raise StoreError(
                f"could not fetch {what} of {self.url}: {exc.reason}"
            ) from exc
        except _TRANSPORT_ERRORS as exc:
            raise StoreError(f"could not fetch {what} of {self.url}: {exc}") from exc

    def _open_data(self) -> _url_value.GuardedStream:
        response = self._open(self.url, "the data")
        length = response.headers.get("Content-Length")
        return _url_value.GuardedStream(
            response,
            _TRANSPORT_ERRORS,
            f"data of {self.url}",
            int(length) if length and length.isdigit() else None,
        )

    def _head(self) -> tuple[int | None, float | None, float | None]:
        request = urllib.request.Request(self.url, method="HEAD")
        with self._open(request, "the size") as response:
            length = response.headers.get("Content-Length")
            last_modified = response.headers.get("Last-Modified")
        size = int(length) if length and length.isdigit() else None
        modified = None
        if last_modified:
            try:
                modified = parsedate_to_datetime(last_modified).timestamp()
            except (TypeError, ValueError):
                modified = None
        # HTTP carries no creation time; the last change bounds it.
        return size, modified, modified
