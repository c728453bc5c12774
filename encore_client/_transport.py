"""How a request travels to the daemon: the seam under every client call.

:class:`Transport` is the interface (one ``request`` method): what a call
means is decided above it, how it travels below it.  :class:`ZmqTransport`
is the real one: a ZeroMQ DEALER socket connected to the daemon's ROUTER,
with request ids, a poll timeout per attempt, ``linger=0``, and a retry on a
fresh socket (a plain REQ socket would lock up if a reply were lost).  Tests
of client code can put an in-process fake behind the same interface.
"""

from __future__ import annotations

__all__ = [
    "Reply",
    "Transport",
    "ZmqTransport",
    "new_client_id",
    "send_frames",
    "recv_frames",
]

import itertools
import math
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import msgpack
import zmq

from ._keys import apply_curve
from ._paths import endpoints
from .wire.envelope import Reply, build_request, parse_reply
from .wire.errors import DaemonUnavailableError, ProtocolError

_SNDMORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_SNDMORE = _NOBLOCK | _SNDMORE
_MAX_WAIT_MS = 2**31 - 1


def send_frames(sock: zmq.Socket, frames: Sequence[bytes], flags: int = 0) -> None:
    """Send a multipart message (``send_multipart`` without its per-frame
    enum arithmetic, which costs more than the send at high rates).

    ``flags`` must be a plain ``int``.  Raises what ``Socket.send`` raises;
    ``zmq.Again`` can only come from the first frame.
    """
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        sock.send(frame, flags | _SNDMORE if index < last else flags)


def recv_frames(sock: zmq.Socket, flags: int = 0) -> list[bytes]:
    """Receive a multipart message as a list of ``bytes``.

    Twice as fast as ``recv_multipart`` for small frames: the ``more``
    flag is read from each frame instead of through ``getsockopt``.
    Raises ``zmq.Again`` (with ``NOBLOCK``) when no message is waiting.
    """
    frame = sock.recv(flags, copy=False)
    frames = [frame.bytes]
    while frame.more:
        frame = sock.recv(flags, copy=False)
        frames.append(frame.bytes)
    return frames


def new_client_id() -> str:
    """A random id naming one client (bridge, store proxy, command) on the bus."""
    return os.urandom(8).hex()


class Transport(ABC):
    """Sends one request to the daemon and returns its reply.

    Implementations are thread-safe.
    """

    @abstractmethod
    def request(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        frames: Sequence[bytes] = (),
        timeout: float | None = None,
    ) -> Reply:
        """Perform operation ``op`` and return its :class:`Reply`.

        Raises
        ------
        DaemonUnavailableError
            If no reply came within ``timeout`` seconds.
        EncoreError
            (or the exception type its code maps to) for an error reply.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the transport's sockets; further requests fail."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ZmqTransport(Transport):
    """A DEALER-socket transport to the daemon on ``runtime_dir``.

    Parameters
    ----------
    runtime_dir : path, optional
        Resolved by the usual rule (``ENCORE_RUNTIME_DIR``, ...).
    timeout : float
        Default total time a request may take, retries included.
    attempts : int
        How many times a request is sent, each on a fresh socket, before
        :class:`DaemonUnavailableError` is raised.  Each attempt gets an
        equal share of the timeout.  Retries reuse the request id, so the
        daemon applies a retried write only once.
    client_id : str, optional
        Identifies this client to the daemon (random by default).
    """

    def __init__(
        self,
        runtime_dir: str | os.PathLike[str] | None = None,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        client_id: str | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.endpoints = endpoints(runtime_dir)
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.client_id = client_id or new_client_id()
        self._own_context = context is None
        self._context = context if context is not None else zmq.Context()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._socket: zmq.Socket | None = None
        self._rcvtimeo = -1  # the RCVTIMEO the current socket has
        # The same encoding as _codec.pack, without a new Packer per call.
        self._packer = msgpack.Packer(use_bin_type=True)
        self._closed = False

    def _fresh_socket(self) -> zmq.Socket:
        if self._socket is not None:
            self._socket.close(linger=0)
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        apply_curve(sock, self.endpoints)  # tcp:// to a remote daemon only
        sock.connect(self.endpoints.requests)
        self._socket = sock
        self._rcvtimeo = -1  # libzmq's default: block forever
        return sock

    def _pack_request(
        self, request_id: int, op: str, args: dict[str, Any] | None
    ) -> bytes:
        """:func:`build_request` with this transport's reusable packer.

        Called with the lock held (a ``Packer`` is not thread-safe).
        """
        try:
            return build_request(
                self.client_id, request_id, op, args, self._packer.pack
            )
        except BaseException:
            # Leave no half-packed bytes behind for the next request.
            self._packer = msgpack.Packer(use_bin_type=True)
            raise

    def request(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        frames: Sequence[bytes] = (),
        timeout: float | None = None,
    ) -> Reply:
        """Perform ``op`` (see :meth:`Transport.request`)."""
        total = self.timeout if timeout is None else timeout
        per_attempt = total / self.attempts
        with self._lock:
            if self._closed:
                raise RuntimeError("transport is closed")
            request_id = next(self._ids)
            envelope = self._pack_request(request_id, op, args)
            sock = self._socket if self._socket is not None else self._fresh_socket()
            for attempt in range(self.attempts):
                if attempt:
                    # The reply may be lost for good (daemon restarted, peer
                    # pipe torn down): a fresh socket starts a clean pipe.
                    sock = self._fresh_socket()
                try:
                    if frames:
                        # Data frames zero-copy: they may be chunks of MiBs.
                        sock.send(envelope, _NOBLOCK_SNDMORE)
                        last = len(frames) - 1
                        for index, frame in enumerate(frames):
                            sock.send(
                                frame,
                                _NOBLOCK_SNDMORE if index < last else _NOBLOCK,
                                copy=False,
                            )
                    else:
                        sock.send(envelope, _NOBLOCK)
                except zmq.Again:
                    continue
                deadline = time.monotonic() + per_attempt
                # RCVTIMEO is a C int of milliseconds: clamp (about 24 days).
                wait_ms = min(_MAX_WAIT_MS, max(1, math.ceil(per_attempt * 1000)))
                while True:
                    # A blocking receive bounded by RCVTIMEO, not a poll: a
                    # Poller per call cost more than the rest of the call.
                    if wait_ms != self._rcvtimeo:
                        sock.setsockopt(zmq.RCVTIMEO, wait_ms)
                        self._rcvtimeo = wait_ms
                    try:
                        reply_frames = recv_frames(sock)
                    except zmq.Again:
                        break  # this attempt timed out
                    try:
                        reply_id, outcome = parse_reply(reply_frames)
                    except ProtocolError:
                        reply_id, outcome = None, None  # garbled: keep waiting
                    if reply_id == request_id and outcome is not None:
                        if isinstance(outcome, Exception):
                            raise outcome
                        return outcome
                    # Not ours (a late reply to an earlier request): wait for
                    # the rest of this attempt's time only.
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    wait_ms = min(_MAX_WAIT_MS, max(1, math.ceil(remaining * 1000)))
            # Drop the socket: whatever is queued on it belongs to a dead call.
            self._fresh_socket()
        raise DaemonUnavailableError(
            f"encored did not answer {op!r} within {total:g} s on "
            f"{self.endpoints.requests} (is the daemon running? try `encore status`)"
        )

    def close(self) -> None:
        """Close the socket (and the context, if this transport made it)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._socket is not None:
                self._socket.close(linger=0)
                self._socket = None
            if self._own_context:
                self._context.term()
