"""The daemon's router: one request message in, its reply out.

:meth:`Router.route` parses a ROUTER message's envelope
(``encore_client.wire.envelope``), answers a retried effectful request
from memory instead of applying it twice (deduplication by ``(client,
request id)``), dispatches the rest by the operations table and builds the
reply.  Every request is answered: a malformed, oversized or unknown one
gets an error reply and a (rate-limited) log line, and a handler that
raises is logged with its traceback and answered ``INTERNAL``.

The router does no I/O: the loop (:mod:`._loop`) receives and sends.
A handler may return a :class:`~encored._deferred.Deferred`; its reply
comes back later through the loop, and :meth:`Router.settle` remembers it.
"""

from __future__ import annotations

__all__ = [
    "DEDUP_ENTRIES",
    "DEDUP_SECONDS",
    "ZERO_COPY_FRAME",
    "Router",
    "recv_request",
]

import collections
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import msgpack
import zmq

from encore_client._protocol import ErrorCode
from encore_client.wire.envelope import (
    RequestRefused,
    build_error,
    build_reply,
    parse_request,
)

from ._complaints import LazyHex, RateLimitedLog
from ._deferred import Deferred
from ._handlers import Operation, Request, RequestError, Response

logger = logging.getLogger("encored")

#: How many ``(client, request id)`` replies of effectful operations are
#: remembered to answer retries without applying them twice, and how long.
DEDUP_ENTRIES = 20000
DEDUP_SECONDS = 120.0
#: Payload frames of a request from this size on are kept as zero-copy
#: views of the received message for store operations (upload chunks), and
#: copied into ``bytes`` for any other operation.
ZERO_COPY_FRAME = 512 * 1024
_NOBLOCK = int(zmq.NOBLOCK)

#: A remembered request: ``(client id, request id)``.
Key = tuple[str, Any]


class Router:
    """Envelope, deduplication, dispatch by the operations table, replies.

    Parameters
    ----------
    operations : mapping
        The operations table; kept as a dict others may extend before the
        loop runs (``_service.py`` wraps ``status`` and ``replay``).
    max_message_size : int
        The configured request size limit.
    complaints : RateLimitedLog
        Where clients' mistakes are logged.
    owner : object
        What handlers get as their first argument, and what a
        ``Deferred`` posts its reply through (the :class:`~encored.Daemon`).
    """

    def __init__(
        self,
        operations: Mapping[str, Operation],
        max_message_size: int,
        complaints: RateLimitedLog,
        owner: Any,
    ) -> None:
        self.operations = dict(operations)
        self.owner = owner
        self._max_size = max_message_size
        self._complaints = complaints
        #: The thread that sends replies (the loop's); set when it runs.
        self.io_thread: int | None = None
        #: Error replies sent, by error code name (for ``status``).
        self.error_counts: collections.Counter[str] = collections.Counter()
        #: The latest error message and its time, by error code name.
        self.last_errors: dict[str, tuple[float, str]] = {}
        self._dedup: collections.OrderedDict[Key, tuple[float, list[bytes]]] = (
            collections.OrderedDict()
        )
        # The newest identity of each pending effectful request (a retry
        # arriving while the first attempt runs is answered once, on the
        # retry's socket).
        self._pending_replies: dict[Key, bytes] = {}
        # Same encoding as _codec.pack; used on the I/O thread only.
        self._packer = msgpack.Packer(use_bin_type=True)

    @property
    def pending_count(self) -> int:
        """Effectful requests whose deferred reply has not come yet."""
        return len(self._pending_replies)

    @property
    def remembered_count(self) -> int:
        """Replies kept to answer retries (bounded by ``DEDUP_*``)."""
        return len(self._dedup)

    def forget_remembered(self) -> None:
        """Drop every remembered reply (benchmarks repeat request ids)."""
        self._dedup.clear()

    # -- replies --------------------------------------------------------------------

    def reply(
        self, identity: bytes, request_id: Any, response: Response
    ) -> list[bytes]:
        """The reply message of a successful ``response`` (any thread)."""
        # The I/O thread reuses one Packer (not thread-safe); workers posting
        # deferred replies encode with the codec's own.
        if threading.get_ident() == self.io_thread:
            try:
                envelope = build_reply(request_id, response.result, self._packer.pack)
            except BaseException:
                self._packer = msgpack.Packer(use_bin_type=True)
                raise
        else:
            envelope = build_reply(request_id, response.result)
        if not response.frames:
            return [identity, envelope]
        return [identity, envelope, *response.frames]

    def error(
        self, identity: bytes, request_id: Any, code: ErrorCode, message: str
    ) -> list[bytes]:
        """The error reply message for ``code``, counted for ``status``."""
        name = getattr(code, "name", str(code))
        self.error_counts[name] += 1
        self.last_errors[name] = (time.time(), message[:300])
        return [identity, build_error(request_id, code, message)]

    # -- routing --------------------------------------------------------------------

    def handle(self, frames: list[bytes]) -> list[bytes] | None:
        """Turn one ROUTER message into its reply message (never raises)."""
        key, reply = self.route(frames)
        if key is not None and reply is not None:
            self.remember(key, reply)
        return reply

    def route(self, frames: list[bytes]) -> tuple[Key | None, list[bytes] | None]:
        """:meth:`handle`, leaving the reply of an effectful request to be
        remembered by the caller: ``((client, request id) or None, reply)``.

        The reply is ``None`` when it comes later (a deferred operation, or
        a retry of one still running).  The loop remembers a reply after
        sending it, off the client's wait.
        """
        identity = frames[0]
        count = len(frames) - 1  # frames after the identity
        if not count:
            self._complaints.warning(
                "client %s sent an empty message", LazyHex(identity)
            )
            return None, self.error(
                identity, None, ErrorCode.BAD_MESSAGE, "empty message"
            )
        head = frames[1]
        size = len(head) if count == 1 else sum(map(len, frames[1:]))
        try:
            request_id, client, op, args = parse_request(
                head, size, count, self._max_size
            )
        except RequestRefused as refused:
            if refused.complaint is not None:
                self._complaints.warning(
                    "client %s %s", LazyHex(identity), refused.complaint
                )
            return None, self.error(
                identity, refused.request_id, refused.code, refused.message
            )
        operation = self.operations.get(op)
        if operation is None:
            self._complaints.warning(
                "client %s asked for unknown operation %.64r", LazyHex(identity), op
            )
            return None, self.error(
                identity,
                request_id,
                ErrorCode.UNKNOWN_OPERATION,
                f"unknown operation {op[:64]!r}",
            )
        if not client:
            client = identity.hex()
        once = operation.once
        if once:
            key = (client, request_id)
            remembered = self._dedup.get(key)
            if remembered is not None:
                return None, [identity, *remembered[1]]
            if key in self._pending_replies:
                self._pending_replies[key] = identity
                return None, None
        if count == 1:
            payload: list[bytes] = []
        else:
            payload = frames[2:]
            if not op.startswith("store."):
                # Only store calls take zero-copy views (see recv_request).
                payload = [bytes(f) if type(f) is memoryview else f for f in payload]
        request = Request(identity, client, request_id, op, args, payload)
        try:
            response = operation.handler(self.owner, request)
            if type(response) is Response:
                reply = self.reply(identity, request_id, response)
            elif isinstance(response, Deferred):
                if once:
                    self._pending_replies[key] = identity
                response.bind(self.owner, identity, request_id, key if once else None)
                return None, None
            else:
                reply = self.reply(identity, request_id, response)
        except RequestError as exc:
            self._complaints.warning(
                "%s from client %s failed: %s", op, LazyHex(identity), exc.message
            )
            reply = self.error(identity, request_id, exc.code, exc.message)
        except Exception:
            logger.exception(
                "operation %s from client %s failed", op, LazyHex(identity)
            )
            reply = self.error(
                identity,
                request_id,
                ErrorCode.INTERNAL,
                f"{op} failed inside the daemon; see its log",
            )
        return (key if once else None), reply

    def remember(self, key: Key, reply: list[bytes]) -> None:
        """Keep an effectful request's reply to answer its retries."""
        now = time.monotonic()
        self._dedup[key] = (now, reply[1:])
        while self._dedup and (
            len(self._dedup) > DEDUP_ENTRIES
            or next(iter(self._dedup.values()))[0] < now - DEDUP_SECONDS
        ):
            self._dedup.popitem(last=False)

    def settle(self, key: Key, frames: list[bytes]) -> None:
        """A deferred effectful reply is about to be sent: address it to the
        newest socket that asked, and remember it."""
        frames[0] = self._pending_replies.pop(key, frames[0])
        self.remember(key, frames)


def recv_request(sock: zmq.Socket) -> list[bytes]:
    """Receive one ROUTER message without waiting (``zmq.Again`` if none).

    As :func:`recv_frames`, except that payload frames of
    ``ZERO_COPY_FRAME`` bytes or more stay ``memoryview`` objects over the
    received message: a 4 MiB upload chunk is then not copied once more
    on the I/O thread.  :meth:`Router.route` turns them into ``bytes``
    for operations other than store calls.
    """
    frame = sock.recv(_NOBLOCK, copy=False)
    frames = [frame.bytes]
    while frame.more:
        frame = sock.recv(_NOBLOCK, copy=False)
        frames.append(frame.bytes if len(frame) < ZERO_COPY_FRAME else frame.buffer)
    return frames
