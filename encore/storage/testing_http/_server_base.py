"""Start/stop plumbing shared by the loopback test HTTP servers.

``_ServerBase`` binds a stdlib ``ThreadingHTTPServer`` subclass
(``_TrackingHTTPServer``, which remembers its open connections so that
``stop()`` can cut them) to ``127.0.0.1`` and serves it from a background
thread; each request a server sees is kept as a ``RecordedRequest`` for
assertions. Subclasses set ``handler_class``.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import sys
import threading
from dataclasses import dataclass


@dataclass
class RecordedRequest:
    """What a server saw of one request (for assertions in tests)."""

    method: str
    path: str
    headers: dict[str, str]
    body_size: int = 0


class _TrackingHTTPServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server that remembers its open connections.

    ``close_connections`` shuts every open connection down so that handler
    threads blocked on a keep-alive socket wake up and end; without it a
    client that never closes its session would keep a thread (and a socket)
    alive after the test.
    """

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address, handler, owner):
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-transfer, or stop() cutting a
        # connection, is normal here; anything else is printed as usual.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)) or (
            self.owner._stopping.is_set() and isinstance(exc, OSError)
        ):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Shut down every open client connection (both directions)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _ServerBase:
    """Start/stop plumbing shared by the two servers."""

    handler_class: type[http.server.BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._requests_lock = threading.Lock()
        self._httpd: _TrackingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.port: int | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> _ServerBase:
        """Bind ``127.0.0.1`` (a free port the first time) and serve.

        A restarted server binds the same port again, so a client keeps its
        URL across a ``stop()``/``start()`` pair (a server that went down and
        came back).

        Raises
        ------
        RuntimeError
            If the server is already running.
        OSError
            If the port cannot be bound.
        """
        if self._httpd is not None:
            raise RuntimeError("server already running")
        self._stopping.clear()
        self._httpd = _TrackingHTTPServer(
            ("127.0.0.1", self.port or 0), self.handler_class, self
        )
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join all threads.

        Idempotent. After ``stop()`` the port refuses connections, which is
        how tests simulate a server that is down.
        """
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in the slow mode
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()  # joins the handler threads (block_on_close)
        assert self._thread is not None
        self._thread.join()
        self._httpd = None
        self._thread = None

    @property
    def running(self) -> bool:
        """Whether the server is currently accepting connections."""
        return self._httpd is not None

    def __enter__(self):
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server and release every resource it holds."""
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` with no trailing slash."""
        if self.port is None:
            raise RuntimeError("server was never started")
        return f"http://127.0.0.1:{self.port}"

    def _record(self, request: RecordedRequest) -> None:
        with self._requests_lock:
            self.requests.append(request)
