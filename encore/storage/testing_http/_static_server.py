"""A loopback static file server with switchable failure modes.

``StaticSiteServer`` serves a directory laid out the way ``StaticURLStore``
reads it (an index JSON and a data directory) and can be made slow, fail
with a given status, serve a broken index or require HTTP basic auth.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import http.server
import json
import os
import shutil
import tempfile
import urllib.parse
from typing import Any

from ._server_base import RecordedRequest, _ServerBase, _TrackingHTTPServer


class _StaticHandler(http.server.SimpleHTTPRequestHandler):
    """Static file handler with the failure modes of `StaticSiteServer`."""

    disable_nagle_algorithm = True
    server: _TrackingHTTPServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        owner = args[2].owner
        super().__init__(*args, directory=owner.directory, **kwargs)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _gate(self) -> bool:
        """Apply the failure modes; return True if the request may proceed."""
        owner: StaticSiteServer = self.server.owner
        owner._record(
            RecordedRequest(self.command, self.path, dict(self.headers.items()))
        )
        if owner.delay:
            # Interruptible, so that stop() never waits out a slow response.
            owner._stopping.wait(owner.delay)
        if owner.credentials is not None:
            expected = base64.b64encode(
                ":".join(owner.credentials).encode("utf-8")
            ).decode("ascii")
            if self.headers.get("Authorization", "") != f"Basic {expected}":
                self.send_response(401)
                self.send_header("WWW-Authenticate", f'Basic realm="{owner.realm}"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
        status = owner.force_status
        path = urllib.parse.urlsplit(self.path).path
        if status is None and path.lstrip("/") in owner.missing:
            status = 404
        if status is not None:
            self.send_error(status, "forced failure")
            return False
        return True

    def do_GET(self) -> None:
        if self._gate():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._gate():
            super().do_HEAD()


class StaticSiteServer(_ServerBase):
    """A loopback static file server with switchable failure modes.

    Serves ``directory`` (created empty in a temporary location when not
    given) the way a plain web server would. Attributes that tests flip at
    any time:

    - ``delay``: seconds to wait before answering each request (slow server).
    - ``force_status``: answer every request with this status (404, 500...).
    - ``missing``: set of paths (relative, no leading ``/``) answered 404.
    - ``credentials``: ``(username, password)`` required with HTTP basic
      auth; others get 401 with a ``WWW-Authenticate`` challenge for
      ``realm``.
    - ``stop()`` / ``start()``: down and back up on the same port.

    `publish`, `remove` and `write_index` lay out files the way
    `encore.storage.static_url_store.StaticURLStore` expects them.
    """

    handler_class = _StaticHandler

    def __init__(
        self,
        directory: str | None = None,
        data_path: str = "data/",
        query_path: str = "index.json",
    ) -> None:
        super().__init__()
        self._own_directory = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="encstatic")
        self.data_path = data_path
        self.query_path = query_path
        self.delay: float = 0.0
        self.force_status: int | None = None
        self.missing: set[str] = set()
        self.credentials: tuple[str, str] | None = None
        self.realm = "encore.storage"
        self._index: dict[str, dict[str, Any]] = {}
        os.makedirs(os.path.join(self.directory, data_path), exist_ok=True)
        self.write_index()

    @property
    def root_url(self) -> str:
        """The ``root_url`` argument for `StaticURLStore` (ends in ``/``)."""
        return self.url + "/"

    def _data_file(self, key: str) -> str:
        # The stdlib handler unquotes the URL path and maps each ``/``
        # separated segment to a directory, so a key ``a/b`` lives in
        # ``data/a/b`` whether the client quoted its ``/`` or not.
        parts = [p for p in key.split("/") if p not in ("", ".", "..")]
        if not parts:
            raise ValueError(f"key {key!r} cannot be served as a static file")
        path = os.path.join(self.directory, self.data_path, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def publish(
        self, key: str, data: bytes, metadata: dict[str, Any], index: bool = True
    ) -> None:
        """Write the data file for ``key`` and (by default) its index entry."""
        path = self._data_file(key)
        tmp = path + ".tmp"
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
        self._index[key] = dict(metadata)
        if index:
            self.write_index()

    def remove(self, key: str) -> None:
        """Remove ``key`` from the index and delete its data file."""
        self._index.pop(key, None)
        self.write_index()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._data_file(key))

    def write_index(self, raw: bytes | None = None) -> None:
        """Atomically write the index file: the published keys, or ``raw``.

        Pass ``raw`` (for instance ``b'{not json'``) to serve a broken index.
        """
        if raw is None:
            raw = json.dumps(self._index, sort_keys=True).encode("utf-8")
        path = os.path.join(self.directory, self.query_path)
        tmp = path + ".tmp"
        with open(tmp, "wb") as handle:
            handle.write(raw)
        os.replace(tmp, path)

    def glob_requests(self, pattern: str) -> list[RecordedRequest]:
        """Recorded requests whose path matches the fnmatch ``pattern``."""
        with self._requests_lock:
            return [r for r in self.requests if fnmatch.fnmatchcase(r.path, pattern)]

    def close(self) -> None:
        """Stop serving and delete the directory if this server created it."""
        self.stop()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
