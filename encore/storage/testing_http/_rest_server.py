"""A loopback HTTP server speaking the REST protocol of ``DynamicURLStore``.

``RestStoreServer`` keeps its keys in an in-memory dict and each value's
bytes in a file of a private temporary directory, so that large values
stream through it in both directions without being held in memory.
"""

from __future__ import annotations

import base64
import binascii
import http.server
import json
import os
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ._server_base import RecordedRequest, _ServerBase, _TrackingHTTPServer

#: Chunk size used when the servers copy bodies between sockets and files.
CHUNK_SIZE = 256 * 1024


class _BodyTooLarge(Exception):
    """A request body exceeded the server's limit."""


def _read_chunked(rfile: BinaryIO) -> Iterator[bytes]:
    """Yield the payload of a ``Transfer-Encoding: chunked`` request body.

    Raises
    ------
    ValueError
        If a chunk header is not a hexadecimal size or the stream ends early.
    """
    while True:
        line = rfile.readline(1024)
        if not line:
            raise ValueError("connection closed inside a chunked body")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ValueError(f"bad chunk size line {line!r}") from None
        if size == 0:
            # Skip optional trailers up to the blank line that ends the body.
            while True:
                trailer = rfile.readline(1024)
                if trailer in (b"\r\n", b"\n", b""):
                    return
        remaining = size
        while remaining:
            block = rfile.read(min(remaining, CHUNK_SIZE))
            if not block:
                raise ValueError("connection closed inside a chunk")
            remaining -= len(block)
            yield block
        rfile.readline(1024)  # the CRLF after each chunk


def _read_fixed(rfile: BinaryIO, length: int) -> Iterator[bytes]:
    """Yield exactly ``length`` bytes of a request body in chunks.

    Raises
    ------
    ValueError
        If the connection closes before ``length`` bytes arrived.
    """
    remaining = length
    while remaining:
        block = rfile.read(min(remaining, CHUNK_SIZE))
        if not block:
            raise ValueError("connection closed before the body was complete")
        remaining -= len(block)
        yield block


@dataclass
class _Entry:
    """One key held by `RestStoreServer`."""

    path: str
    metadata: dict[str, Any] = field(default_factory=dict)
    permissions: dict[str, list[str]] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)


class _RestHandler(http.server.BaseHTTPRequestHandler):
    """Request handler implementing the DynamicURLStore REST protocol."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm
    # the body would wait for the client's delayed ACK (~40 ms a request).
    disable_nagle_algorithm = True
    server: _TrackingHTTPServer

    # The stdlib logs every request to stderr; tests read ``requests``.
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    @property
    def owner(self) -> RestStoreServer:
        return self.server.owner

    # -- plumbing ----------------------------------------------------------

    def _body_chunks(self) -> Iterator[bytes]:
        self._body_taken = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return _read_chunked(self.rfile)
        length = int(self.headers.get("Content-Length") or 0)
        return _read_fixed(self.rfile, length)

    def _drain_body(self) -> None:
        """Read and drop a request body nobody read (bounded).

        A client still sending its body when the answer comes and the
        connection closes sees a reset instead of the error status; reading
        the body first lets it read the status (up to a limit, beyond which
        the connection is simply closed).
        """
        if getattr(self, "_body_taken", False):
            return
        limit = self.owner.max_drain_size
        try:
            for block in self._body_chunks():
                limit -= len(block)
                if limit < 0:
                    break
        except (ValueError, OSError):
            pass

    def _read_json_body(self) -> Any:
        raw = b"".join(self._body_chunks())
        if len(raw) > self.owner.max_json_size:
            raise _BodyTooLarge
        if not raw.strip():
            return None
        return json.loads(raw.decode("utf-8"))

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), "application/json")

    def _send_error_text(self, status: int, message: str) -> None:
        self._drain_body()
        # Closing after an error is simplest when a body may be half read;
        # the header tells the client not to reuse the connection (without
        # it a pooled client races the close and sees a disconnect).
        self._send(status, message.encode("utf-8"), headers={"Connection": "close"})
        self.close_connection = True

    def _user(self) -> str | None:
        """The authenticated user, ``'anonymous'`` or None when refused."""
        users = self.owner.users
        if users is None:
            return "anonymous"
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, _, password = decoded.partition(":")
        if users.get(username) != password:
            return None
        return username

    def _parse(self) -> tuple[str, str | None] | None:
        """Split the path into (key, part) or None if outside the base."""
        path = urllib.parse.urlsplit(self.path).path
        prefix = self.owner.base_path + "/"
        if not path.startswith(prefix):
            return None
        rest = path[len(prefix) :]
        pieces = rest.split("/")
        # The key may be empty: "" is a valid key, quoted as "".
        if len(pieces) == 1:
            return urllib.parse.unquote(pieces[0]), None
        if len(pieces) == 2 and pieces[1]:
            return urllib.parse.unquote(pieces[0]), pieces[1]
        return None

    def _dispatch(self) -> None:
        owner = self.owner
        self._body_taken = False
        record = RecordedRequest(self.command, self.path, dict(self.headers.items()))
        owner._record(record)
        if owner.delay:
            # Interruptible, so that stop() never waits out a slow response.
            owner._stopping.wait(owner.delay)
        if owner.force_status is not None:
            self._send_error_text(owner.force_status, "forced failure")
            return
        user = self._user()
        if user is None:
            self._drain_body()
            self._send(
                401,
                b"authentication required",
                headers={
                    "WWW-Authenticate": 'Basic realm="encore.storage"',
                    "Connection": "close",
                },
            )
            self.close_connection = True
            return
        try:
            self._route(user, record)
        except _BodyTooLarge:
            self._send_error_text(413, "body too large")
        except (ValueError, UnicodeDecodeError) as exc:
            self._send_error_text(400, f"bad request: {exc}")

    def _route(self, user: str, record: RecordedRequest) -> None:
        owner = self.owner
        path = urllib.parse.urlsplit(self.path).path
        if path == owner.query_path:
            if self.command != "GET":
                self._send_error_text(405, "query takes GET")
                return
            self._query()
            return
        parsed = self._parse()
        if parsed is None:
            self._send_error_text(404, "no such resource")
            return
        key, part = parsed
        if part is None:
            if self.command == "DELETE":
                self._delete(key)
            else:
                self._send_error_text(405, "only DELETE on a key URL")
            return
        handler = {
            ("GET", "data"): self._get_data,
            ("HEAD", "data"): self._get_data,
            ("PUT", "data"): self._put_data,
            ("GET", "metadata"): self._get_metadata,
            ("PUT", "metadata"): self._put_metadata,
            ("POST", "metadata"): self._post_metadata,
            ("GET", "auth"): self._get_auth,
            ("PUT", "auth"): self._put_auth,
            ("POST", "auth"): self._post_auth,
        }.get((self.command, part))
        if handler is None:
            self._send_error_text(405, f"{self.command} not allowed on {part!r}")
            return
        handler(key, user, record)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _dispatch

    # -- operations --------------------------------------------------------

    def _entry_or_404(self, key: str) -> _Entry | None:
        with self.owner.lock:
            entry = self.owner.entries.get(key)
        if entry is None:
            self._send_error_text(404, f"no such key: {key!r}")
        return entry

    def _owns(self, entry: _Entry, user: str) -> bool:
        if self.owner.users is None:
            return True
        return user in entry.permissions.get("owned", [])

    def _get_data(self, key: str, user: str, record: RecordedRequest) -> None:
        owner = self.owner
        with owner.lock:
            entry = owner.entries.get(key)
            if entry is None:
                self._send_error_text(404, f"no such key: {key!r}")
                return
            # Opening under the lock pins this version: a later PUT
            # replaces the path, never the bytes of an open file.
            handle = open(entry.path, "rb")  # noqa: SIM115
            created, modified = entry.created, entry.modified
        with handle:
            size = os.fstat(handle.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("X-Encore-Created", repr(created))
            self.send_header("X-Encore-Modified", repr(modified))
            chunked = owner.chunked_responses and self.command != "HEAD"
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command == "HEAD":
                return
            while True:
                block = handle.read(CHUNK_SIZE)
                if not block:
                    break
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                else:
                    self.wfile.write(block)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")

    def _put_data(self, key: str, user: str, record: RecordedRequest) -> None:
        owner = self.owner
        with owner.lock:
            entry = owner.entries.get(key)
            if entry is not None and not self._owns(entry, user):
                self._send_error_text(403, "not an owner of this key")
                return
        fd, tmp = tempfile.mkstemp(dir=owner.data_dir, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as out:
                for block in self._body_chunks():
                    record.body_size += len(block)
                    out.write(block)
        except BaseException:
            os.unlink(tmp)
            raise
        now = time.time()
        with owner.lock:
            entry = owner.entries.get(key)
            if entry is None:
                owner.entries[key] = _Entry(
                    tmp, {}, {"owned": [user]}, created=now, modified=now
                )
                old_path = None
            else:
                old_path, entry.path, entry.modified = entry.path, tmp, now
        if old_path is not None:
            os.unlink(old_path)  # readers holding it open keep their copy
        self._send(204 if old_path is not None else 201)

    def _get_metadata(self, key: str, user: str, record: RecordedRequest) -> None:
        owner = self.owner
        with owner.lock:
            entry = owner.entries.get(key)
            metadata = None if entry is None else json.dumps(entry.metadata)
            times = None if entry is None else (entry.created, entry.modified)
        if metadata is None:
            self._send_error_text(404, f"no such key: {key!r}")
            return
        self._send(
            200,
            metadata.encode("utf-8"),
            "application/json",
            {"X-Encore-Created": repr(times[0]), "X-Encore-Modified": repr(times[1])},
        )

    def _write_metadata(self, key: str, user: str, replace: bool) -> None:
        owner = self.owner
        metadata = self._read_json_body()
        if not isinstance(metadata, dict):
            self._send_error_text(400, "metadata must be a JSON object")
            return
        now = time.time()
        with owner.lock:
            entry = owner.entries.get(key)
            if entry is None:
                if not replace:
                    self._send_error_text(404, f"no such key: {key!r}")
                    return
                fd, path = tempfile.mkstemp(dir=owner.data_dir, prefix="new-")
                os.close(fd)
                owner.entries[key] = _Entry(
                    path, dict(metadata), {"owned": [user]}, now, now
                )
                status = 201
            elif not self._owns(entry, user):
                self._send_error_text(403, "not an owner of this key")
                return
            else:
                if replace:
                    entry.metadata = dict(metadata)
                else:
                    entry.metadata.update(metadata)
                entry.modified = now
                status = 204
        self._send(status)

    def _put_metadata(self, key: str, user: str, record: RecordedRequest) -> None:
        self._write_metadata(key, user, replace=True)

    def _post_metadata(self, key: str, user: str, record: RecordedRequest) -> None:
        self._write_metadata(key, user, replace=False)

    def _get_auth(self, key: str, user: str, record: RecordedRequest) -> None:
        entry = self._entry_or_404(key)
        if entry is None:
            return
        if not self._owns(entry, user):
            self._send_error_text(403, "not an owner of this key")
            return
        with self.owner.lock:
            permissions = {k: sorted(v) for k, v in entry.permissions.items()}
        self._send_json(200, permissions)

    def _write_auth(self, key: str, user: str, replace: bool) -> None:
        permissions = self._read_json_body()
        if not isinstance(permissions, dict) or not all(
            isinstance(v, list) and all(isinstance(t, str) for t in v)
            for v in permissions.values()
        ):
            self._send_error_text(400, "permissions must map names to tag lists")
            return
        entry = self._entry_or_404(key)
        if entry is None:
            return
        if not self._owns(entry, user):
            self._send_error_text(403, "not an owner of this key")
            return
        with self.owner.lock:
            if replace:
                if not permissions.get("owned"):
                    self._send_error_text(400, "an 'owned' permission is required")
                    return
                entry.permissions = {k: sorted(set(v)) for k, v in permissions.items()}
            else:
                for name, tags in permissions.items():
                    merged = set(entry.permissions.get(name, [])) | set(tags)
                    entry.permissions[name] = sorted(merged)
        self._send(204)

    def _put_auth(self, key: str, user: str, record: RecordedRequest) -> None:
        self._write_auth(key, user, replace=True)

    def _post_auth(self, key: str, user: str, record: RecordedRequest) -> None:
        self._write_auth(key, user, replace=False)

    def _delete(self, key: str) -> None:
        owner = self.owner
        with owner.lock:
            entry = owner.entries.pop(key, None)
        if entry is None:
            self._send_error_text(404, f"no such key: {key!r}")
            return
        os.unlink(entry.path)
        self._send(204)

    def _query(self) -> None:
        owner = self.owner
        criteria = self._read_json_body() or {}
        if not isinstance(criteria, dict):
            self._send_error_text(400, "query must be a JSON object")
            return
        with owner.lock:
            keys = [
                key
                for key, entry in owner.entries.items()
                if all(
                    name in entry.metadata and entry.metadata[name] == value
                    for name, value in criteria.items()
                )
            ]
        # One key per line: a key holding a newline cannot be listed, so
        # the client percent-quotes keys on this line-based channel.
        body = "".join(urllib.parse.quote(k, safe="") + "\n" for k in keys)
        self._send(200, body.encode("utf-8"))


class RestStoreServer(_ServerBase):
    """A loopback HTTP server implementing the DynamicURLStore REST protocol.

    URLs (``<base>`` is ``url + base_path``; keys are percent-quoted into a
    single path segment)::

        GET/HEAD <base>/<key>/data      the bytes (Content-Length, or chunked
                                        when ``chunked_responses`` is set)
        PUT      <base>/<key>/data      replace the bytes (Content-Length or
                                        chunked request body); creates the
                                        key with empty metadata if new
        GET      <base>/<key>/metadata  metadata as a JSON object
        PUT      <base>/<key>/metadata  replace the metadata (creates the key
                                        with empty data if new)
        POST     <base>/<key>/metadata  ``dict.update`` the metadata
        GET      <base>/<key>/auth      permissions: JSON object of name ->
                                        list of tags (owners only)
        PUT/POST <base>/<key>/auth      replace / merge the permissions
        DELETE   <base>/<key>           remove the key
        GET      <url><query_path>      JSON object body of metadata name ->
                                        value; answers the matching keys,
                                        percent-quoted, one per line

    Status codes: 404 for a missing key, 401 without valid basic-auth
    credentials when ``users`` is given, 403 for a non-owner touching
    permissions or another owner's key, 400 for a malformed body.
    ``force_status`` (settable at any time) makes every request fail with
    that status, and ``delay`` makes every answer wait that many seconds, to
    test error handling.

    Parameters
    ----------
    base_path : str
        Path prefix of the key URLs, starting with ``/``.
    query_path : str
        Path of the query URL.
    users : dict of str to str, optional
        If given, every request needs HTTP basic auth with one of these
        username/password pairs; the username is the user's tag.
    chunked_responses : bool
        Send data with ``Transfer-Encoding: chunked`` instead of
        ``Content-Length``.
    """

    handler_class = _RestHandler

    def __init__(
        self,
        base_path: str = "/store",
        query_path: str = "/query",
        users: dict[str, str] | None = None,
        chunked_responses: bool = False,
        max_json_size: int = 16 * 1024 * 1024,
    ) -> None:
        super().__init__()
        self.base_path = base_path.rstrip("/")
        self.query_path = query_path
        self.users = users
        self.chunked_responses = chunked_responses
        self.max_json_size = max_json_size
        self.max_drain_size = 64 * 1024 * 1024
        self.force_status: int | None = None
        self.delay: float = 0.0
        self.lock = threading.Lock()
        self.entries: dict[str, _Entry] = {}
        self.data_dir = tempfile.mkdtemp(prefix="encrest")

    @property
    def base_url(self) -> str:
        """The ``base_url`` argument for `DynamicURLStore`."""
        return self.url + self.base_path

    @property
    def query_url(self) -> str:
        """The ``query_url`` argument for `DynamicURLStore`."""
        return self.url + self.query_path

    def data_of(self, key: str) -> bytes:
        """Return the bytes stored for ``key`` (for test assertions).

        Raises
        ------
        KeyError
            If the server holds no such key.
        """
        with self.lock:
            path = self.entries[key].path
        with open(path, "rb") as handle:
            return handle.read()

    def metadata_of(self, key: str) -> dict[str, Any]:
        """Return a copy of the metadata stored for ``key``.

        Raises
        ------
        KeyError
            If the server holds no such key.
        """
        with self.lock:
            return dict(self.entries[key].metadata)

    def close(self) -> None:
        """Stop serving and delete the temporary data directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
