"""A read-only store over static files served by a web (or file) server.

`StaticURLStore` reads every key's metadata from one JSON index, fetched
from ``root_url + query_path`` (an object mapping each key to its metadata
object), and a key's bytes from ``root_url + data_path + quoted(key)``. A
polling thread reloads the index every ``poll`` seconds and emits
`StoreSetEvent` / `StoreDeleteEvent` for the keys that changed between two
loads; `StaticURLStore.update_index` does the same on demand. A typical
layout on the server::

    base_directory/
        index.json
        data/
            key1
            key2

Only the standard library (``urllib``) is used. When a reload fails (the
server is down, slow, answers an error status or serves a broken index) the
error is raised by `update_index` (and logged by the polling thread) and the
last good index stays in use.
"""

from __future__ import annotations

import copy
import http.client
import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from email.utils import parsedate_to_datetime
from typing import Any

from encore.events.abstract_event_manager import BaseEventManager
from encore.storage._url_value import GuardedStream, URLValue
from encore.storage.abstract_store import (
    AbstractReadOnlyStore,
    AuthenticationError,
    AuthorizationError,
    ReadOnlyWritersMixin,
    StoreError,
    compile_glob,
    metadata_matches,
)
from encore.storage.events import StoreDeleteEvent, StoreSetEvent
from encore.storage.utils import select_metadata

__all__ = ["StaticURLStore"]

logger = logging.getLogger(__name__)


class StaticURLStore(ReadOnlyWritersMixin, AbstractReadOnlyStore):
    """A read-only key-value store that is a front end for static URLs.

    Parameters
    ----------
    root_url : str
        The URL everything is served below, e.g. ``'http://host/'``.
    data_path : str
        Appended to ``root_url``, then the percent-quoted key, to form a
        key's data URL (``'data/'`` gives ``http://host/data/<key>``).
    query_path : str
        Appended to ``root_url`` to form the index URL (``'index.json'``).
    poll : float or None
        Seconds between two index reloads by the polling thread; ``None``
        or ``0`` starts no thread (reload with `update_index`).
    event_manager : BaseEventManager, optional
        Where events go; the process-wide manager by default.
    timeout : float
        Seconds to wait for the server on each request.

    Notes
    -----
    Writes raise `ReadOnlyStoreError` (a `StoreError`) saying the store is
    read-only. The index is the single point of truth for which keys exist
    and their metadata; a key listed in the index whose data URL answers 404
    raises `KeyError`. The first index load (in `connect`) emits no events;
    later loads emit the differences. The old calling convention of the
    documentation's usage example, ``StaticURLStore(event_manager, root_url,
    data_path, query_path[, poll])``, is accepted too.
    """

    def __init__(
        self,
        root_url: str,
        data_path: str,
        query_path: str,
        poll: float | None = 300,
        event_manager: BaseEventManager | None = None,
        timeout: float = 30.0,
    ) -> None:
        if isinstance(root_url, BaseEventManager):
            # The documentation's usage example passes the event manager
            # first, as the original constructor took it.
            old_poll = event_manager if isinstance(event_manager, (int, float)) else 300
            event_manager, root_url, data_path, query_path, poll = (
                root_url,
                data_path,
                query_path,
                poll,  # type: ignore[assignment]
                old_poll,
            )
        for name, text in (
            ("root_url", root_url),
            ("data_path", data_path),
            ("query_path", query_path),
        ):
            if not isinstance(text, str):
                raise TypeError(f"{name} must be a str, not {text!r}")
        if poll is not None and poll < 0:
            raise ValueError(f"poll must be a positive number of seconds, not {poll}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        super().__init__(event_manager=event_manager)
        self.root_url = root_url
        self.data_path = data_path
        self.query_path = query_path
        self.poll = poll
        self.timeout = timeout
        self._opener: urllib.request.OpenerDirector | None = None
        self._index: dict[str, dict[str, Any]] = {}
        self._index_lock = threading.Lock()
        # Serializes whole reloads, so that two concurrent update_index
        # calls cannot interleave their diffs and emit stale events.
        self._update_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        #: The error of the last failed index reload, None after a success.
        self.last_index_error: StoreError | None = None

    # -- connection ----------------------------------------------------------

    def connect(
        self,
        credentials: dict[str, str] | None = None,
        proxy_handler: urllib.request.ProxyHandler | None = None,
        auth_handler_factory: Callable[[], urllib.request.BaseHandler] | None = None,
    ) -> None:
        """Build the URL opener, load the index and start the polling thread.

        Parameters
        ----------
        credentials : dict, optional
            ``'username'`` and ``'password'`` for HTTP basic auth, optional
            ``'uri'`` (default: the root URL) and ``'realm'`` (default: any
            realm the server names; ``'encore.storage'`` when an
            ``auth_handler_factory`` is given).
        proxy_handler : urllib.request.ProxyHandler, optional
            Used instead of the proxies of the environment.
        auth_handler_factory : callable, optional
            Returns an authentication handler; its ``add_password`` is called
            with ``realm``, ``uri``, ``user`` and ``passwd`` keywords.

        Raises
        ------
        ValueError
            If ``credentials`` lacks a username or password.
        AuthenticationError
            If the server refuses the credentials (401).
        StoreError
            If the index cannot be loaded; the store stays disconnected.
        """
        if self.is_connected():
            self.disconnect()
        handlers: list[urllib.request.BaseHandler] = []
        if proxy_handler is not None:
            handlers.append(proxy_handler)
        if credentials is not None:
            try:
                user, passwd = credentials["username"], credentials["password"]
            except (KeyError, TypeError):
                raise ValueError(
                    "credentials must be a dict with 'username' and 'password'"
                ) from None
            uri = credentials.get("uri", self.root_url)
            if auth_handler_factory is None:
                realm = credentials.get("realm")
                # Prior auth sends the credentials with the first request
                # instead of waiting for a 401 challenge on every URL.
                manager = urllib.request.HTTPPasswordMgrWithPriorAuth()
                manager.add_password(realm, uri, user, passwd, is_authenticated=True)
                handlers.append(urllib.request.HTTPBasicAuthHandler(manager))
            else:
                realm = credentials.get("realm", "encore.storage")
                handler = auth_handler_factory()
                handler.add_password(realm=realm, uri=uri, user=user, passwd=passwd)
                handlers.append(handler)
        self._opener = urllib.request.build_opener(*handlers)
        try:
            self._load_index(emit=False)
        except BaseException:
            self._opener = None
            raise
        self._stop.clear()
        if self.poll:
            self._poller = threading.Thread(
                target=self._poll_loop,
                name=f"StaticURLStore-poll-{self.root_url}",
                daemon=True,
            )
            self._poller.start()

    def disconnect(self) -> None:
        """Stop the polling thread (waiting for it) and drop the opener.

        The cached index is kept, but reads raise until `connect` is called
        again. Calling it twice is harmless.
        """
        self._stop.set()
        poller, self._poller = self._poller, None
        if poller is not None and poller is not threading.current_thread():
            poller.join()
        self._opener = None

    def is_connected(self) -> bool:
        """Whether `connect` succeeded and `disconnect` was not called since."""
        return self._opener is not None

    def info(self) -> dict[str, Any]:
        """Describe the store: URLs, polling interval and index state."""
        with self._index_lock:
            size = len(self._index)
        return {
            "type": "static_url",
            "root_url": self.root_url,
            "data_path": self.data_path,
            "query_path": self.query_path,
            "poll": self.poll,
            "keys": size,
            "readonly": True,
            "last_index_error": (
                None if self.last_index_error is None else str(self.last_index_error)
            ),
        }

    # -- the index -----------------------------------------------------------

    def update_index(self) -> None:
        """Reload the index now and emit events for what changed.

        Emits `StoreSetEvent` for each key that is new or whose metadata
        changed, and `StoreDeleteEvent` (with the old metadata) for each key
        that disappeared.

        Raises
        ------
        StoreError
            If the store is not connected, or the index could not be fetched
            or parsed (server down, timeout, error status, broken JSON); the
            previous index stays in use.
        AuthenticationError, AuthorizationError
            If the server answers 401 or 403.
        """
        self._require_connected()
        self._load_index(emit=True)

    def _load_index(self, emit: bool) -> None:
        url = self.root_url + self.query_path
        with self._update_lock:
            try:
                with self._open(url, what="index") as response:
                    try:
                        raw = response.read()
                    except (OSError, http.client.HTTPException) as exc:
                        raise StoreError(
                            f"could not read the index from {url}: {exc or 'timeout'}"
                        ) from exc
                new_index = self._parse_index(raw, url)
            except StoreError as exc:
                self.last_index_error = exc
                raise
            with self._index_lock:
                old_index, self._index = self._index, new_index
            self.last_index_error = None
            if not emit:
                return
            events: list = [
                StoreSetEvent(source=self, key=key, metadata=copy.deepcopy(metadata))
                for key, metadata in new_index.items()
                if old_index.get(key) != metadata
            ]
            events.extend(
                StoreDeleteEvent(
                    source=self, key=key, metadata=copy.deepcopy(old_index[key])
                )
                for key in old_index.keys() - new_index.keys()
            )
        # Emitted outside the locks: a listener may read the store or even
        # reload the index.
        for event in events:
            self.event_manager.emit(event)

    @staticmethod
    def _parse_index(raw: bytes, url: str) -> dict[str, dict[str, Any]]:
        try:
            index = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise StoreError(f"index at {url} is not valid JSON: {exc}") from exc
        if not isinstance(index, dict):
            raise StoreError(
                f"index at {url} must be a JSON object mapping keys to metadata, "
                f"not {type(index).__name__}"
            )
        for key, metadata in index.items():
            if not isinstance(metadata, dict):
                raise StoreError(
                    f"index at {url}: metadata of key {key!r} must be a JSON "
                    f"object, not {type(metadata).__name__}"
                )
        return index

    def _poll_loop(self) -> None:
        assert self.poll
        while not self._stop.wait(self.poll):
            try:
                self._load_index(emit=True)
            except StoreError as exc:
                logger.warning(
                    "%s: index reload failed, keeping the last good index: %s",
                    self.root_url,
                    exc,
                )
            except Exception:
                # The poller must outlive any surprise; the next round retries.
                logger.exception("%s: unexpected error in index reload", self.root_url)

    # -- HTTP ------------------------------------------------------------------

    def _require_connected(self) -> urllib.request.OpenerDirector:
        opener = self._opener
        if opener is None:
            raise StoreError(f"store at {self.root_url} is not connected")
        return opener

    def _open(
        self, url: str | urllib.request.Request, what: str, key: str | None = None
    ):
        """Open ``url``, translating every failure into a store exception."""
        opener = self._require_connected()
        if isinstance(url, urllib.request.Request):
            url, request = url.full_url, url
        else:
            request = url
        try:
            return opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404 and key is not None:
                raise KeyError(key) from exc
            if exc.code == 401:
                raise AuthenticationError(
                    f"{url}: the server refused the credentials (401)"
                ) from exc
            if exc.code == 403:
                raise AuthorizationError(f"{url}: access forbidden (403)") from exc
            raise StoreError(
                f"could not fetch {what} from {url}: HTTP {exc.code} {exc.reason}"
            ) from exc
        except urllib.error.URLError as exc:
            raise StoreError(
                f"could not fetch {what} from {url}: {exc.reason}"
            ) from exc
        except TimeoutError as exc:
            raise StoreError(
                f"could not fetch {what} from {url}: timed out after {self.timeout} s"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise StoreError(f"could not fetch {what} from {url}: {exc}") from exc

    def _data_url(self, key: str) -> str:
        return self.root_url + self.data_path + urllib.parse.quote(key, safe="")

    def _metadata(self, key: str) -> dict[str, Any]:
        with self._index_lock:
            try:
                metadata = self._index[key]
            except KeyError:
                raise KeyError(key) from None
        # A deep copy: nested values of the cached index must stay intact.
        return json.loads(json.dumps(metadata))

    # -- reads -----------------------------------------------------------------

    def get(self, key: str) -> URLValue:
        """Return a `Value` for ``key``; its ``data`` streams from the server.

        The metadata comes from the cached index; each access to ``data``
        opens the data URL anew, and ``size``/``modified`` come from a
        ``HEAD`` request made when first read.

        Raises
        ------
        KeyError
            If the key is not in the index (``data`` raises it too if the
            data URL answers 404).
        StoreError
            If the store is not connected.
        """
        self._require_connected()
        metadata = self._metadata(key)
        url = self._data_url(key)
        return URLValue(
            lambda: self._open_data(url, key),
            metadata,
            probe=lambda: self._head(url, key),
        )

    def get_data(self, key: str) -> Any:
        """Return a readable stream of ``key``'s bytes (close it when done).

        Raises
        ------
        KeyError
            If the key is not in the index, or its data URL answers 404.
        StoreError
            If the store is not connected or the data cannot be fetched.
        """
        self._require_connected()
        self._metadata(key)
        return self._open_data(self._data_url(key), key)

    def _open_data(self, url: str, key: str) -> GuardedStream:
        response = self._open(url, what=f"data of {key!r}", key=key)
        length = response.headers.get("Content-Length")
        return GuardedStream(
            response,
            (OSError, http.client.HTTPException),
            f"data of {key!r}",
            int(length) if length and length.isdigit() else None,
        )

    def _head(
        self, url: str, key: str
    ) -> tuple[int | None, float | None, float | None]:
        request = urllib.request.Request(url, method="HEAD")
        with self._open(request, what=f"size of {key!r}", key=key) as response:
            length = response.headers.get("Content-Length")
            last_modified = response.headers.get("Last-Modified")
        size = int(length) if length and length.isdigit() else None
        modified = None
        if last_modified:
            try:
                modified = parsedate_to_datetime(last_modified).timestamp()
            except (TypeError, ValueError):
                modified = None
        # A static server knows no creation time; the last change is the
        # best bound it offers.
        return size, modified, modified

    def get_metadata(self, key: str, select: Iterable[str] | None = None) -> dict:
        """Return a copy of ``key``'s metadata from the cached index.

        Raises
        ------
        KeyError
            If the key is not in the index.
        StoreError
            If the store is not connected.
        """
        self._require_connected()
        return select_metadata(self._metadata(key), select)

    def exists(self, key: str) -> bool:
        """Whether ``key`` is in the cached index.

        Raises
        ------
        StoreError
            If the store is not connected.
        """
        self._require_connected()
        with self._index_lock:
            return key in self._index

    def _snapshot(self) -> dict[str, dict[str, Any]]:
        self._require_connected()
        with self._index_lock:
            # The index dict is replaced on reload, never mutated: the
            # caller may iterate it without the lock.
            return self._index

    def query(
        self, select: Iterable[str] | None = None, **kwargs: Any
    ) -> list[tuple[str, dict]]:
        """Return ``(key, metadata)`` for keys whose metadata matches ``kwargs``.

        Answered from the cached index; ``select`` limits the metadata names
        returned (absent names are left out).

        Raises
        ------
        StoreError
            If the store is not connected.
        """
        names = None if select is None else list(select)
        # Deep copies: a caller mutating a nested value must not change the
        # cached index.
        return [
            (key, select_metadata(json.loads(json.dumps(metadata)), names))
            for key, metadata in self._snapshot().items()
            if metadata_matches(metadata, kwargs)
        ]

    def query_keys(self, **kwargs: Any) -> list[str]:
        """Return the keys whose metadata matches ``kwargs`` (all if none)."""
        return [
            key
            for key, metadata in self._snapshot().items()
            if metadata_matches(metadata, kwargs)
        ]

    def glob(self, pattern: str) -> list[str]:
        """Return the keys matching the glob ``pattern`` (`fnmatch` rules)."""
        match = compile_glob(pattern)
        return [key for key in self._snapshot() if match(key)]
