"""The daemon's operations: an explicit table from op name to handler.

Each handler takes the daemon and a :class:`Request` and returns a
:class:`Response` (a msgpack-able ``result`` and optional extra frames), or
raises :class:`RequestError` with an error code.  Any other exception is a
bug: the dispatch loop logs it with its traceback and answers ``INTERNAL``.

Other parts of the daemon add operations by merging their own table with
:func:`merge_tables` (the store operations do this), so nothing is
registered by import side effects.
"""

from __future__ import annotations

__all__ = [
    "Request",
    "Response",
    "RequestError",
    "Operation",
    "BUS_OPERATIONS",
    "merge_tables",
]

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from encore_client import _codec
from encore_client._protocol import (
    OP_EMIT,
    OP_HELLO,
    OP_PING,
    OP_PROBE,
    OP_REPLAY,
    OP_STATUS,
    OP_SYNC,
    PROTOCOL_VERSION,
    ErrorCode,
)

if TYPE_CHECKING:  # pragma: no cover
    from ._server import Daemon

#: Most events one replay reply carries; clients ask again for the rest.
MAX_REPLAY_BATCH = 1000
#: Most epochs a hello reply lists.
MAX_HELLO_EPOCHS = 4096
#: Most events one emit request may carry.
MAX_EMIT_BATCH = _codec.MAX_PACKED_EVENTS


@dataclass
class Request:
    """One decoded request: who sent it, its id, op, args and extra frames."""

    identity: bytes
    client: str
    id: Any
    op: str
    args: dict[str, Any]
    frames: list[bytes]


@dataclass
class Response:
    """A successful result and any extra frames that follow the envelope."""

    result: Any = None
    frames: list[bytes] = field(default_factory=list)


class RequestError(Exception):
    """Raised by a handler to answer with an error code and a message."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Operation:
    """An entry of the operations table.

    ``once`` marks operations with effects (emit, store writes): the daemon
    remembers their replies by ``(client, request id)`` for a while and
    answers a retried request from that memory instead of applying it again.
    """

    handler: Callable[[Daemon, Request], Response]
    once: bool = False


def _int_arg(args: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = args.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(ErrorCode.BAD_ARGUMENT, f"{name!r} must be an integer")
    return value


def _epoch_arg(args: Mapping[str, Any]) -> bytes:
    epoch = args.get("epoch")
    if type(epoch) is not bytes or len(epoch) != 16:
        raise RequestError(ErrorCode.BAD_ARGUMENT, "'epoch' must be 16 bytes")
    return epoch


def handle_hello(daemon: Daemon, request: Request) -> Response:
    """Introduce a client.

    Request args: ``name`` (str, optional), ``pid`` (int, optional),
    ``epoch`` (16 bytes, optional: the epoch the client numbers its events
    under) and ``last_seq`` (int, optional: the last number it used).
    Result: ``instance``, ``version``, ``pid``, ``epochs`` (where the
    recently active epochs stand: ``[epoch, last_seq]`` pairs, the
    daemon's own last), ``heartbeat_interval``, ``max_message_size``,
    ``event_buffer``.
    """
    if "epoch" in request.args:
        last = _int_arg(request.args, "last_seq", 0)
        if last < 0:
            raise RequestError(ErrorCode.BAD_ARGUMENT, "'last_seq' must be >= 0")
        daemon.log.note(_epoch_arg(request.args), last)
    settings = daemon.config.daemon
    return Response(
        {
            "instance": daemon.instance_id,
            "version": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "epochs": [[e, s] for e, s in daemon.epochs(MAX_HELLO_EPOCHS)],
            "heartbeat_interval": settings.heartbeat_interval,
            "max_message_size": settings.max_message_size,
            "event_buffer": settings.event_buffer,
        }
    )


def handle_ping(daemon: Daemon, request: Request) -> Response:
    """Answer at once.  Result: ``instance``."""
    return Response({"instance": daemon.instance_id})


def handle_status(daemon: Daemon, request: Request) -> Response:
    """Describe the daemon.

    Result: ``instance``, ``pid``, ``version``, ``started`` (epoch seconds),
    ``uptime`` (seconds), ``runtime_dir``, ``config`` (its source),
    ``stores`` (list of ``{"name", "type"}``), ``subscribers`` (connected
    event sockets), ``events_published`` (events the daemon saw forwarded,
    its own and clients'), ``malformed_events`` (forwarded messages that
    were not well-formed events), ``event_buffer`` (capacity of the replay
    buffer) and ``epochs`` (emitters the daemon follows).
    """
    return Response(
        {
            "instance": daemon.instance_id,
            "pid": os.getpid(),
            "version": PROTOCOL_VERSION,
            "started": daemon.started,
            "uptime": time.time() - daemon.started,
            "runtime_dir": str(daemon.endpoints.runtime_dir),
            "config": daemon.config.source,
            "stores": [
                {"name": s.name, "type": s.type} for s in daemon.config.stores.values()
            ],
            "subscribers": daemon.subscribers,
            "events_published": daemon.log.appended,
            "malformed_events": daemon.malformed_events,
            "event_buffer": daemon.log.capacity,
            "epochs": daemon.log.epoch_count,
        }
    )


def handle_probe(daemon: Daemon, request: Request) -> Response:
    """Publish a probe message so a subscriber can tell it is subscribed.

    Request args: ``token`` (str, at most 64 characters).  The daemon
    publishes ``[TOPIC_PROBE, {"v", "instance", "token"}]``.  Result:
    ``instance``.
    """
    token = request.args.get("token")
    if not isinstance(token, str) or len(token) > 64:
        raise RequestError(ErrorCode.BAD_ARGUMENT, "'token' must be a short string")
    daemon.publish_probe(token)
    return Response({"instance": daemon.instance_id})


def handle_replay(daemon: Daemon, request: Request) -> Response:
    """Return recent events of one epoch from the replay buffer.

    Request args: ``epoch`` (16 bytes), ``first`` (int, first sequence
    number wanted), ``last`` (int, inclusive), ``limit`` (int, optional,
    at most 1000).  Result: ``instance``, ``first_available`` (the first
    number returned; every number from ``first`` below it is gone, and
    so is any number skipped among those returned), ``last_seq`` (the
    epoch's last number seen) and ``count``.  Frames: ``count`` pairs of
    ``header, attributes``, each exactly as published.
    """
    epoch = _epoch_arg(request.args)
    first = _int_arg(request.args, "first")
    last = _int_arg(request.args, "last")
    limit = _int_arg(request.args, "limit", MAX_REPLAY_BATCH)
    if first < 1 or limit < 1 or last < first:
        raise RequestError(
            ErrorCode.BAD_ARGUMENT,
            "'first' and 'limit' must be >= 1 and 'last' >= 'first'",
        )
    limit = min(limit, MAX_REPLAY_BATCH)
    first_available, events = daemon.log.fetch(epoch, first, last, limit)
    frames: list[bytes] = []
    for _seq, header, attributes in events:
        frames.append(header)
        frames.append(attributes)
    return Response(
        {
            "instance": daemon.instance_id,
            "first_available": first_available,
            "last_seq": daemon.log.last_seq(epoch),
            "count": len(events),
        },
        frames,
    )


def handle_sync(daemon: Daemon, request: Request) -> Response:
    """Say how far the daemon has seen an epoch's events.

    Request args: ``epoch`` (16 bytes).  Result: ``instance`` and
    ``last_seq``, the highest number of that epoch the daemon has seen
    forwarded (0 if none).  A client that wants its events delivered
    before it goes (``BusBridge.close``) asks until it sees its own last.
    """
    epoch = _epoch_arg(request.args)
    return Response(
        {"instance": daemon.instance_id, "last_seq": daemon.log.last_seq(epoch)}
    )


def handle_emit(daemon: Daemon, request: Request) -> Response:
    """Publish events a client sends as a request (clients without a push socket).

    Frames: one, a packed list (see :func:`_codec.pack_events`) of one to
    ``MAX_EMIT_BATCH`` pairs of event ``header`` (``class``, ``bases``,
    ``source``, ``time``) and ``attributes``.  Every pair is checked before
    any is published: one malformed event fails the whole request and none
    is published.  The daemon numbers them under its own epoch, with the
    client as their origin, in as few messages as their size allows.
    Result: ``seqs``, the number each event got,
    in order, and ``instance``.
    """
    if len(request.frames) != 1:
        raise RequestError(
            ErrorCode.BAD_MESSAGE,
            "emit takes one frame: a packed list of headers and attributes",
        )
    try:
        frames = _codec.unpack_events(request.frames[0])
    except _codec.DecodeError as exc:
        raise RequestError(ErrorCode.BAD_MESSAGE, str(exc)) from None
    checked: list[tuple[str, bytes, bytes, float]] = []
    for i in range(0, len(frames), 2):
        frame, attributes = frames[i], frames[i + 1]
        try:
            header = _codec.decode_client_header(frame)
            clean = _codec.clean_header(header, frame)
            stamp = header.get("time")
            if not isinstance(stamp, int | float):
                stamp = time.time()
            _check_map(attributes)
            checked.append((header["class"], clean, attributes, float(stamp)))
        except _codec.DecodeError as exc:
            raise RequestError(
                ErrorCode.BAD_MESSAGE, f"event {i // 2}: {exc}"
            ) from None
    seqs = daemon.publish_many(checked, request.client)
    return Response({"seqs": seqs, "instance": daemon.instance_id})


def _check_map(attributes: bytes) -> None:
    """Check that an attributes frame about to be published as it came
    decodes to a map (raises ``DecodeError``)."""
    if type(_codec.unpack(attributes)) is not dict:
        raise _codec.DecodeError("attributes frame is not a map")


#: The event-bus operations.
BUS_OPERATIONS: dict[str, Operation] = {
    OP_HELLO: Operation(handle_hello),
    OP_PING: Operation(handle_ping),
    OP_STATUS: Operation(handle_status),
    OP_PROBE: Operation(handle_probe),
    OP_REPLAY: Operation(handle_replay),
    OP_SYNC: Operation(handle_sync),
    OP_EMIT: Operation(handle_emit, once=True),
}


def merge_tables(*tables: Mapping[str, Operation]) -> dict[str, Operation]:
    """Combine operation tables; an op name defined twice is an error.

    Raises ``ValueError`` naming the duplicated operation.
    """
    merged: dict[str, Operation] = {}
    for table in tables:
        for name, operation in table.items():
            if name in merged:
                raise ValueError(f"operation {name!r} is defined twice")
            merged[name] = operation
    return merged
