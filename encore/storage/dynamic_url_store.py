"""A store kept by a web server, spoken to over a small REST protocol.

`DynamicURLStore` implements the whole store API with HTTP requests made
through the third-party ``requests`` library (the ``http`` extra:
``pip install 'encore[http]'``). ``requests`` is imported when a store is
created, so importing this module never fails; creating a store without
``requests`` installed raises an `ImportError` that says what to install.

The protocol, per key, with ``<base>/<key>/<part>`` URLs (the key
percent-quoted into one path segment)::

    GET    <base>/<key>/data      the bytes, streamed
    PUT    <base>/<key>/data      replace the bytes (streamed, chunked)
    GET    <base>/<key>/metadata  metadata as a JSON object
    PUT    <base>/<key>/metadata  replace the metadata
    POST   <base>/<key>/metadata  update the metadata (``dict.update``)
    GET    <base>/<key>/auth      permissions: JSON object, name -> tags
    PUT    <base>/<key>/auth      replace the permissions
    POST   <base>/<key>/auth      add tags to permissions
    DELETE <base>/<key>           remove the key
    GET    <query_url>            JSON object of metadata name -> value in
                                  the body; the matching keys, one per
                                  line (percent-quoted, so that any key
                                  fits on one line)

Status codes map to exceptions: 404 is `KeyError`, 401
`AuthenticationError`, 403 `AuthorizationError`, any other error status or
a network failure `StoreError` (chained to the ``requests`` error).
`encore.storage.http_test_servers.RestStoreServer` is a complete server.

The protocol has no transactions and no atomic write of data together with
metadata: `set` writes the data, then the metadata, and a reader in between
sees the new data with the old metadata. `connect` does not contact the
server: an unreachable server shows on the first call, as a `StoreError`.
Several threads may share a store (``requests`` sessions pool their
connections), but a stream from `get_data` belongs to one thread.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any

from encore.events.abstract_event_manager import BaseEventManager
from encore.storage._streams import ReadStream
from encore.storage._url_value import URLValue
from encore.storage._wrapping import bytes_left
from encore.storage.abstract_store import (
    AbstractAuthorizingStore,
    AuthenticationError,
    AuthorizationError,
    StoreError,
    Value,
    as_stream,
    compile_glob,
    unpack_value,
)
from encore.storage.events import StoreDeleteEvent, StoreSetEvent, StoreUpdateEvent
from encore.storage.utils import (
    DEFAULT_BUFFER_SIZE,
    StoreProgressManager,
    check_metadata,
    select_metadata,
)

__all__ = ["DynamicURLStore", "import_requests"]

_DEFAULT_PARTS = {"permissions": "auth", "data": "data", "metadata": "metadata"}


def import_requests():
    """Import and return the ``requests`` module.

    Raises
    ------
    ImportError
        If ``requests`` is not installed, saying how to install it.
    """
    try:
        import requests
    except ImportError as exc:
        raise ImportError(
            "DynamicURLStore needs the 'requests' package, which is not "
            "installed: pip install 'encore[http]' (or pip install requests)"
        ) from exc
    return requests


def _length_of(pair: Any) -> int | None:
    """The byte count of the data of a ``(data, metadata)`` pair, if cheap."""
    try:
        data = pair[0]
    except (TypeError, IndexError, KeyError):
        return None
    return bytes_left(data)


class _ResponseStream(ReadStream):
    """A readable, closable stream over the body of a streamed response.

    Closing it (or leaving its ``with`` block) closes the response and
    hands the connection back to the session's pool.
    """

    def __init__(self, response: Any) -> None:
        super().__init__()
        self._response = response
        self._raw = response.raw

    def readable(self) -> bool:
        """Return True: this stream is readable."""
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Read at most ``size`` bytes (to the end if negative or None).

        Raises
        ------
        StoreError
            If the connection fails while reading.
        """
        if self.closed:
            raise ValueError("read from a closed response stream")
        amount = None if size is None or size < 0 else size
        try:
            return self._raw.read(amount, decode_content=True)
        except Exception as exc:  # urllib3's ProtocolError, timeouts...
            raise StoreError(f"reading the response body failed: {exc}") from exc

    def close(self) -> None:
        """Close the response and release its connection."""
        if not self.closed:
            self._response.close()
        super().close()


class DynamicURLStore(AbstractAuthorizingStore):
    """A key-value store kept by a web server (see the module docstring).

    Parameters
    ----------
    base_url : str
        The common prefix of the key URLs, with no trailing slash.
    query_url : str
        The URL that answers queries.
    url_format : str
        Format of the per-part URLs, with ``{base}``, ``{key}`` and
        ``{part}`` fields.
    url_format_no_part : str
        Format of the URL that ``DELETE`` removes a key with.
    parts : dict, optional
        Names of the parts in URLs: ``'data'``, ``'metadata'`` and
        ``'permissions'`` map to the path element used for each (by
        default ``data``, ``metadata`` and ``auth``).
    event_manager : BaseEventManager, optional
        Where events go; the process-wide manager by default.
    timeout : float
        Seconds to wait for the server to connect or send data.

    Raises
    ------
    ImportError
        If ``requests`` is not installed.
    ValueError
        If ``parts`` lacks one of the three names.
    """

    def __init__(
        self,
        base_url: str,
        query_url: str,
        url_format: str = "{base}/{key}/{part}",
        url_format_no_part: str = "{base}/{key}",
        parts: dict[str, str] | None = None,
        event_manager: BaseEventManager | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._requests = import_requests()
        parts = dict(_DEFAULT_PARTS if parts is None else parts)
        missing = set(_DEFAULT_PARTS) - set(parts)
        if missing:
            raise ValueError(f"parts lacks {sorted(missing)}")
        super().__init__(event_manager=event_manager)
        self.base_url = base_url
        self.query_url = query_url
        self.url_format = url_format
        self.url_format_no_part = url_format_no_part
        self.parts = parts
        self.timeout = timeout
        self.user_tag: str | None = None
        self._session: Any = None
        self._owns_session = False

    # -- connection ----------------------------------------------------------

    def connect(self, credentials: Any = None) -> None:
        """Get ready to talk to the server.

        Parameters
        ----------
        credentials : tuple or dict, optional
            ``(user_tag, session)``: the user's permission tag and a
            ``requests.Session`` already set up with its authentication (the
            session stays the caller's). Or ``{'username', 'password'}``:
            HTTP basic auth on a session the store creates (and closes on
            `disconnect`), the username being the tag. None: an
            unauthenticated session.

        Raises
        ------
        ValueError
            If ``credentials`` has neither form.
        """
        if self._session is not None:
            self.disconnect()
        requests = self._requests
        if credentials is None:
            self.user_tag, self._session = None, requests.Session()
            self._owns_session = True
        elif isinstance(credentials, dict):
            try:
                username, password = credentials["username"], credentials["password"]
            except KeyError:
                raise ValueError(
                    "credentials dict needs 'username' and 'password'"
                ) from None
            session = requests.Session()
            session.auth = (username, password)
            self.user_tag, self._session = username, session
            self._owns_session = True
        elif (
            isinstance(credentials, tuple)
            and len(credentials) == 2
            and isinstance(credentials[1], requests.Session)
        ):
            self.user_tag, self._session = credentials
            self._owns_session = False
        else:
            raise ValueError(
                "credentials must be (user_tag, requests.Session), "
                "{'username': ..., 'password': ...} or None"
            )

    def disconnect(self) -> None:
        """Forget the session (closing it if the store created it)."""
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            session.close()
        self.user_tag = None

    def is_connected(self) -> bool:
        """Whether `connect` was called and `disconnect` not since."""
        return self._session is not None

    def info(self) -> dict[str, Any]:
        """Describe the store: its URLs and user."""
        return {
            "type": "dynamic_url",
            "base_url": self.base_url,
            "query_url": self.query_url,
            "user_tag": self.user_tag,
        }

    # -- HTTP plumbing -----------------------------------------------------------

    def _url(self, key: str, part: str | None = None) -> str:
        if not isinstance(key, str):
            raise TypeError(f"keys are str, not {type(key).__name__}")
        quoted = urllib.parse.quote(key, safe="")
        if quoted in (".", ".."):
            # Dot segments would be resolved away by URL normalization.
            quoted = quoted.replace(".", "%2E")
        if part is None:
            return self.url_format_no_part.format(base=self.base_url, key=quoted)
        return self.url_format.format(
            base=self.base_url, key=quoted, part=self.parts[part]
        )

    def _request(
        self, method: str, url: str, key: str | None = None, **kwargs: Any
    ) -> Any:
        """Send a request; return the response or raise a store exception."""
        session = self._session
        if session is None:
            raise StoreError(f"store at {self.base_url} is not connected")
        requests = self._requests
        try:
            response = session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout as exc:
            raise StoreError(
                f"{method} {url}: no answer within {self.timeout} s"
            ) from exc
        except requests.ConnectionError as exc:
            raise StoreError(f"{method} {url}: cannot reach the server: {exc}") from exc
        except requests.RequestException as exc:
            raise StoreError(f"{method} {url} failed: {exc}") from exc
        if response.status_code < 400:
            return response
        try:
            detail = response.text[:200] if not kwargs.get("stream") else ""
        finally:
            response.close()
        status = response.status_code
        if status == 404 and key is not None:
            raise KeyError(key)
        message = f"{method} {url}: HTTP {status} {response.reason}"
        if detail:
            message += f": {detail}"
        if status == 401:
            raise AuthenticationError(message)
        if status == 403:
            raise AuthorizationError(message)
        raise StoreError(message)

    def _json(self, response: Any, what: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise StoreError(f"server sent invalid JSON for {what}: {exc}") from exc

    @staticmethod
    def _timestamps(response: Any) -> tuple[float | None, float | None]:
        headers = response.headers

        def header_time(name: str) -> float | None:
            text = headers.get(name)
            if text is None:
                return None
            try:
                return float(text)
            except ValueError:
                return None

        created = header_time("X-Encore-Created")
        modified = header_time("X-Encore-Modified")
        if modified is None and headers.get("Last-Modified"):
            try:
                modified = parsedate_to_datetime(headers["Last-Modified"]).timestamp()
            except (TypeError, ValueError):
                modified = None
        return created, modified

    def _upload(
        self,
        key: str,
        data: Any,
        buffer_size: int,
        metadata: dict | None,
        size: int | None = None,
    ) -> None:
        """PUT ``data`` (a readable file-like) as ``key``'s bytes, streamed.

        A value that fits in one buffer goes out in one piece and emits no
        progress; a longer one is sent with chunked transfer encoding, so
        neither side holds it whole, and reports its progress. An error
        raised by ``data.read`` propagates unchanged (the server drops the
        truncated upload and keeps the old value).
        """
        if buffer_size is None or buffer_size <= 0:
            buffer_size = DEFAULT_BUFFER_SIZE
        url = self._url(key, "data")
        first = bytes(data.read(buffer_size) or b"")
        second = bytes(data.read(buffer_size) or b"") if first else b""
        if not second:
            self._request("PUT", url, key=None, data=first).close()
            return
        source_error: list[BaseException] = []
        steps = size if isinstance(size, int) and size >= 0 else -1
        with StoreProgressManager(
            self.event_manager,
            self,
            None,
            f"Uploading {key!r}",
            steps,
            key=key,
            metadata=metadata,
        ) as progress:

            def body() -> Iterator[bytes]:
                total = 0
                chunk: bytes = first
                pending = [second]
                while chunk:
                    total += len(chunk)
                    yield chunk
                    progress.step(step=total)
                    if pending:
                        chunk = pending.pop()
                        continue
                    try:
                        chunk = bytes(data.read(buffer_size) or b"")
                    except BaseException as exc:
                        source_error.append(exc)
                        raise

            try:
                self._request("PUT", url, data=body()).close()
            except StoreError:
                if source_error:
                    # The caller's stream broke, not the network: say so.
                    raise source_error[0] from None
                raise

    # -- reads -----------------------------------------------------------------

    def get(self, key: str) -> URLValue:
        """Return a `Value` for ``key``; its ``data`` streams from the server.

        The metadata is fetched now; each access to ``data`` opens a new
        streamed ``GET``, and ``size``/``created``/``modified`` come from a
        ``HEAD`` request made when first read.

        Raises
        ------
        KeyError
            If the server has no such key.
        AuthenticationError, AuthorizationError, StoreError
            As the module docstring says.
        """
        metadata = self.get_metadata(key)
        return URLValue(
            lambda: self.get_data(key), metadata, probe=lambda: self._head(key)
        )

    def _head(self, key: str) -> tuple[int | None, float | None, float | None]:
        response = self._request("HEAD", self._url(key, "data"), key=key)
        response.close()
        length = response.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() else None
        return (size, *self._timestamps(response))

    def get_data(self, key: str) -> _ResponseStream:
        """Return a readable stream of ``key``'s bytes (close it when done).

        Raises
        ------
        KeyError
            If the server has no such key.
        """
        response = self._request("GET", self._url(key, "data"), key=key, stream=True)
        return _ResponseStream(response)

    def get_metadata(self, key: str, select: Iterable[str] | None = None) -> dict:
        """Return ``key``'s metadata (only the ``select`` names if given).

        Raises
        ------
        KeyError
            If the server has no such key.
        StoreError
            If the server's answer is not a JSON object.
        """
        response = self._request("GET", self._url(key, "metadata"), key=key)
        metadata = self._json(response, f"metadata of {key!r}")
        if not isinstance(metadata, dict):
            raise StoreError(f"server sent non-object metadata for {key!r}")
        return select_metadata(metadata, select)

    def exists(self, key: str) -> bool:
        """Whether the server has ``key`` (its metadata answers 200)."""
        try:
            self._request("GET", self._url(key, "metadata"), key=key).close()
        except KeyError:
            return False
        return True

    def query_keys(self, **kwargs: Any) -> list[str]:
        """Return the keys whose metadata matches ``kwargs`` (all if none).

        Raises
        ------
        ValueError
            If the criteria are not JSON-representable.
        """
        body = json.dumps(check_metadata(kwargs))
        response = self._request(
            "GET",
            self.query_url,
            data=body.encode("utf-8"),
            headers={"Content-Type": "application/json"},
        )
        # Every key ends with a newline; an empty line is the empty key.
        lines = response.text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return [urllib.parse.unquote(line.rstrip("\r")) for line in lines]

    def query(
        self, select: Iterable[str] | None = None, **kwargs: Any
    ) -> list[tuple[str, dict]]:
        """Return ``(key, metadata)`` for keys whose metadata matches ``kwargs``.

        One query request, then one metadata request per key; a key deleted
        in between is left out.
        """
        names = None if select is None else list(select)
        result = []
        for key in self.query_keys(**kwargs):
            if names is not None and not names:
                result.append((key, {}))
                continue
            try:
                result.append((key, self.get_metadata(key, names)))
            except KeyError:
                continue
        return result

    def glob(self, pattern: str) -> list[str]:
        """Return the keys matching the glob ``pattern`` (`fnmatch` rules)."""
        match = compile_glob(pattern)
        return [key for key in self.query_keys() if match(key)]

    # -- writes ------------------------------------------------------------------

    def set(self, key: str, value: Any, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        """Write ``key``'s data, then its metadata.

        ``value`` is a `Value` or a ``(data, metadata)`` pair. Emits upload
        progress events, then `StoreSetEvent`.

        Raises
        ------
        ValueError
            If the metadata cannot be stored (nothing is sent then).
        TypeError
            If ``value`` is not a value.
        StoreError, AuthenticationError, AuthorizationError
            If the server refuses or fails.
        """
        size = value.size if isinstance(value, Value) else _length_of(value)
        stream, metadata, owned = unpack_value(value)
        try:
            metadata = check_metadata(metadata)
            self._upload(key, stream, buffer_size, metadata, size)
        finally:
            if owned:
                stream.close()
        self._put_json("PUT", key, "metadata", metadata)
        self._emit([StoreSetEvent(source=self, key=key, metadata=dict(metadata))])

    def _put_json(self, method: str, key: str, part: str, obj: Any) -> None:
        self._request(
            method,
            self._url(key, part),
            key=key,
            data=json.dumps(obj).encode("utf-8"),
            headers={"Content-Type": "application/json"},
        ).close()

    def set_data(
        self, key: str, data: Any, buffer_size: int = DEFAULT_BUFFER_SIZE
    ) -> None:
        """Replace ``key``'s bytes (a new key gets empty metadata).

        ``data`` is a readable binary stream or bytes. Emits upload progress
        events, then `StoreSetEvent`.
        """
        stream, owned = as_stream(data)
        try:
            self._upload(key, stream, buffer_size, None, _length_of((data, None)))
        finally:
            if owned:
                stream.close()
        self._emit(
            [StoreSetEvent(source=self, key=key, metadata=self._metadata_or_none(key))]
        )

    def _metadata_or_none(self, key: str) -> dict | None:
        try:
            return self.get_metadata(key)
        except KeyError:
            return None

    def set_metadata(self, key: str, metadata: dict) -> None:
        """Replace ``key``'s metadata (a new key gets empty data).

        Raises
        ------
        ValueError
            If the metadata cannot be stored (nothing is sent then).
        """
        metadata = check_metadata(metadata)
        self._put_json("PUT", key, "metadata", metadata)
        self._emit([StoreSetEvent(source=self, key=key, metadata=dict(metadata))])

    def update_metadata(self, key: str, metadata: dict) -> None:
        """Merge ``metadata`` into ``key``'s metadata (``dict.update``).

        Raises
        ------
        KeyError
            If the server has no such key.
        ValueError
            If the metadata cannot be stored (nothing is sent then).
        """
        metadata = check_metadata(metadata)
        self._put_json("POST", key, "metadata", metadata)
        self._emit(
            [
                StoreUpdateEvent(
                    source=self, key=key, metadata=self._metadata_or_none(key)
                )
            ]
        )

    def delete(self, key: str) -> None:
        """Remove ``key`` from the server.

        Raises
        ------
        KeyError
            If the server has no such key.
        """
        self._request("DELETE", self._url(key), key=key).close()
        self._emit([StoreDeleteEvent(source=self, key=key, metadata=None)])

    # -- permissions ---------------------------------------------------------------

    def get_permissions(self, key: str) -> dict[str, set[str]]:
        """Return ``key``'s permissions: name -> set of tags.

        Raises
        ------
        KeyError
            If the key does not exist (or the user may not see it).
        AuthorizationError
            If the user is not an owner of the key.
        """
        response = self._request("GET", self._url(key, "permissions"), key=key)
        permissions = self._json(response, f"permissions of {key!r}")
        if not isinstance(permissions, dict):
            raise StoreError(f"server sent non-object permissions for {key!r}")
        return {name: set(tags) for name, tags in permissions.items()}

    @staticmethod
    def _check_permissions(permissions: dict) -> dict[str, list[str]]:
        if not isinstance(permissions, dict):
            raise ValueError("permissions must be a dict of name -> set of tags")
        result = {}
        for name, tags in permissions.items():
            if not isinstance(name, str) or isinstance(tags, str):
                raise ValueError(
                    "permissions must map str names to collections of str tags"
                )
            tag_list = sorted(set(tags))
            if not all(isinstance(tag, str) for tag in tag_list):
                raise ValueError("permission tags must be str")
            result[name] = tag_list
        return result

    def set_permissions(self, key: str, permissions: dict[str, Iterable[str]]) -> None:
        """Replace ``key``'s permissions (needs an ``'owned'`` tag).

        Raises
        ------
        ValueError
            If ``permissions`` is malformed or has no ``'owned'`` tag.
        KeyError
            If the key does not exist.
        AuthorizationError
            If the user is not an owner of the key.
        """
        checked = self._check_permissions(permissions)
        if not checked.get("owned"):
            raise ValueError("permissions need an 'owned' permission with a tag")
        self._put_json("PUT", key, "permissions", checked)

    def update_permissions(
        self, key: str, permissions: dict[str, Iterable[str]]
    ) -> None:
        """Add the given tags to ``key``'s permissions.

        Raises
        ------
        ValueError
            If ``permissions`` is malformed.
        KeyError
            If the key does not exist.
        AuthorizationError
            If the user is not an owner of the key.
        """
        self._put_json("POST", key, "permissions", self._check_permissions(permissions))
