"""The daemon's stores in this process: RemoteStore without sockets or a subprocess.

:class:`InProcessDaemon` hosts the configured stores with the daemon's own
parts (``encored``'s store hosting and store operations, the very
``StoreService`` a running ``encored`` serves) and hands out
:class:`InProcessTransport` objects: a :class:`~encore_client.Transport`
like :class:`~encore_client.ZmqTransport`, so a
:class:`~encore_client.RemoteStore` given one works as against a real
daemon.  Only the socket is replaced: every request is encoded with
``wire.envelope.build_request`` and checked with ``parse_request``, every
reply built with ``build_reply``/``build_error`` and read with
``parse_reply``, so an in-process run tests the bytes the socket carries.

The stores' events travel as the bus carries them: each event the
daemon's manager sees is encoded into its published header frame and
attributes frame (numbered, with the daemon's instance id), and rebuilt
from those bytes on a dispatch thread of its own, as a
:class:`~encore_client.BusBridge` does, onto :attr:`InProcessDaemon.event_manager`;
their ``source`` is this process's ``RemoteStore`` of that store, and
:func:`~encore_client.bus_info` gives their sequence number.
:meth:`InProcessDaemon.settle` waits until every event published so far
was delivered.

What is not here: the event bus's sockets (no ``BusBridge`` can join an
in-process daemon), retries (a request cannot be lost on its way, so the
transport sends each once and the daemon keeps no replies for retried
requests), and the bus operations other than ``hello``, ``ping`` and
``replay`` (``UNKNOWN_OPERATION``).

This module is the one part of ``encore_client`` that imports ``encored``:
it hosts the daemon's parts, so it depends on them; nothing else in the
client imports it.
"""

from __future__ import annotations

__all__ = ["InProcessDaemon", "InProcessTransport", "in_process_store"]

import collections
import contextlib
import itertools
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from encore.events.abstract_event_manager import BaseEvent
from encore.events.event_manager import EventManager
from encored._config import Config, parse_config
from encored._deferred import Deferred
from encored._epoch_log import EpochLog
from encored._handlers import Operation, Request, RequestError, Response
from encored.stores.wiring import start_store_service

from . import _codec
from ._bus_bridge import rebuild_event
from ._remote_store import RemoteStore
from ._transport import Transport, new_client_id
from .wire.envelope import (
    Reply,
    RequestRefused,
    build_error,
    build_reply,
    build_request,
    parse_reply,
    parse_request,
)
from .wire.errors import DaemonUnavailableError, ErrorCode, ProtocolError

logger = logging.getLogger(__name__)

#: The bus operations an in-process daemon serves besides the store calls.
_BUS_OPS = ("hello", "ping", "replay")


def _toml_value(value: Any, where: str) -> str:
    # Only what store tables hold: no escapes beyond quotes and backslashes.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    raise TypeError(f"{where}: a {type(value).__name__} has no TOML form here")


def _config_text(
    stores: Mapping[str, Mapping[str, Any]], daemon: Mapping[str, Any]
) -> str:
    """TOML text for ``[daemon]`` settings and ``[stores.NAME]`` tables."""
    lines = ["[daemon]"]
    lines += [f"{k} = {_toml_value(v, f'daemon.{k}')}" for k, v in daemon.items()]
    for name, table in stores.items():
        lines.append(f'\n[stores."{name}"]')
        lines += [
            f"{k} = {_toml_value(v, f'stores.{name}.{k}')}" for k, v in table.items()
        ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _process_codec_kept() -> Iterator[None]:
    """Undo what building a store host registers with the process's codec.

    A ``StoreHost`` registers its store-source adapter for the whole
    process (in the daemon, its stores are the sources); here that would
    make every bridge and every in-process delivery decode a store source
    as the hosted store instead of this process's ``RemoteStore``.  The
    host's own encoder is called directly instead (see ``_on_event``).
    """
    encoders = getattr(_codec, "_source_encoders", None)
    decoders = getattr(_codec, "_source_decoders", None)
    saved_encoders = list(encoders) if encoders is not None else None
    saved_decoders = dict(decoders) if decoders is not None else None
    try:
        yield
    finally:
        if encoders is not None and saved_encoders is not None:
            encoders[:] = saved_encoders
        if decoders is not None and saved_decoders is not None:
            decoders.clear()
            decoders.update(saved_decoders)


class InProcessDaemon:
    """The daemon's store service, hosted in this process.

    Parameters
    ----------
    config : str or Config, optional
        A configuration (TOML text or a parsed ``encored`` ``Config``).
    stores : mapping, optional
        Instead of ``config``: store tables by name, as in
        ``[stores.NAME]`` (``{"mem": {"type": "memory"}}``).
    daemon : mapping, optional
        ``[daemon]`` settings to go with ``stores``.
    event_manager : EventManager, optional
        Where the stores' events are delivered, as a bridge would deliver
        them (a new manager by default).

    Raises
    ------
    ConfigError
        If the configuration is invalid.
    StoreBuildError
        If a store cannot be opened (nothing is left running).

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        config: str | Config | None = None,
        *,
        stores: Mapping[str, Mapping[str, Any]] | None = None,
        daemon: Mapping[str, Any] | None = None,
        event_manager: EventManager | None = None,
    ) -> None:
        if (config is None) == (stores is None):
            raise TypeError("give either a configuration or store tables")
        if config is None:
            assert stores is not None
            config = _config_text(stores, daemon or {})
        if isinstance(config, str):
            config = parse_config(config, "<in-process>")
        self.config: Config = config
        #: Where the stores' events are delivered (see the module docs).
        self.event_manager = (
            event_manager if event_manager is not None else EventManager()
        )
        self.instance_id = uuid.uuid4().hex
        self._instance_raw = bytes.fromhex(self.instance_id)
        #: The published events, as the daemon's replay buffer holds them.
        #: The daemon's epoch (its instance id), its last number, and the
        #: events it published, as a daemon's replay buffer holds them.
        self.epoch = self._instance_raw
        self.last_seq = 0
        self.log = EpochLog(config.daemon.event_buffer)
        self._publish_lock = threading.Lock()
        # The daemon runs every handler on its one I/O thread; callers of
        # the transports take turns through this lock instead.
        self._io_lock = threading.Lock()
        self._clients: dict[bytes, InProcessTransport] = {}
        self._inbox: collections.deque[Any] = collections.deque()
        self._inbox_cv = threading.Condition()
        self._stopping = False
        self._closed = False
        with _process_codec_kept():
            manager, operations, running = start_store_service(config)
        self._running = running
        #: The daemon's own event manager: the hosted stores emit on it.
        self.daemon_event_manager = manager
        #: The hosted stores (``encored``'s ``StoreHost``).
        self.host = running.host
        #: The store operations (``encored``'s ``StoreService``).
        self.service = running.service
        self.operations: dict[str, Operation] = {
            name: op
            for name, op in operations.items()
            if name.startswith("store.") or name in _BUS_OPS
        }
        self._sender_registry = _codec.ClassRegistry(manager)
        self._receiver_registry = _codec.ClassRegistry(self.event_manager)
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name="encore-inprocess-dispatch", daemon=True
        )
        self._dispatcher.start()
        # Last among the listeners, as the daemon's publisher is: an event
        # a daemon-side listener changes is published as changed.
        manager.connect(BaseEvent, self._on_event, priority=2**62)

    # -- clients ----------------------------------------------------------------

    def transport(
        self, *, timeout: float = 10.0, client_id: str | None = None
    ) -> InProcessTransport:
        """A new transport to this daemon (one client, like one socket)."""
        return InProcessTransport(self, timeout=timeout, client_id=client_id)

    def store(self, name: str, **kwargs: Any) -> RemoteStore:
        """A :class:`RemoteStore` of ``name`` on a new transport to this daemon.

        Its events come on :attr:`event_manager` unless ``event_manager``
        is given; other keyword arguments go to ``RemoteStore``.
        """
        kwargs.setdefault("event_manager", self.event_manager)
        timeout = kwargs.get("timeout", 10.0)
        return RemoteStore(name, transport=self.transport(timeout=timeout), **kwargs)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every event published so far has been delivered.

        Raises ``TimeoutError`` if the dispatch thread does not get there
        within ``timeout`` seconds (a listener is stuck).
        """
        marker = threading.Event()
        with self._inbox_cv:
            self._inbox.append(marker)
            self._inbox_cv.notify()
        if not marker.wait(timeout):
            raise TimeoutError("in-process event dispatch did not catch up")

    def close(self) -> None:
        """Stop the store service and the stores, then the event dispatch."""
        if self._closed:
            return
        self._closed = True
        for client in list(self._clients.values()):
            client.close()
        try:
            self._running.close()
        finally:
            self.daemon_event_manager.disconnect(BaseEvent, self._on_event)
            with self._inbox_cv:
                self._stopping = True
                self._inbox_cv.notify()
            self._dispatcher.join(10)

    def __enter__(self) -> InProcessDaemon:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- requests (the daemon's router, without its socket) ------------------------

    def _attach(self, identity: bytes, client: InProcessTransport) -> None:
        self._clients[identity] = client

    def _detach(self, identity: bytes) -> None:
        self._clients.pop(identity, None)

    def _deliver(self, identity: bytes, frames: list[bytes]) -> None:
        """Handle one request message as the daemon's router does.

        The reply comes back through :meth:`post_reply`, at once or later
        (a store call on a worker thread).
        """
        head = frames[0]
        size = sum(map(len, frames))
        with self._io_lock:
            try:
                request_id, client, op, args = parse_request(
                    head, size, len(frames), self.config.daemon.max_message_size
                )
            except RequestRefused as refused:
                reply = self._error(
                    identity, refused.request_id, refused.code, refused.message
                )
            else:
                reply = self._call(identity, request_id, client, op, args, frames[1:])
            if reply is not None:
                self.post_reply(reply, None)

    def _call(
        self,
        identity: bytes,
        request_id: Any,
        client: str,
        op: str,
        args: dict[str, Any],
        payload: list[bytes],
    ) -> list[bytes] | None:
        operation = self.operations.get(op)
        if operation is None:
            return self._error(
                identity,
                request_id,
                ErrorCode.UNKNOWN_OPERATION,
                f"unknown operation {op[:64]!r} (an in-process daemon serves "
                "the store calls, hello, ping and replay)",
            )
        request = Request(
            identity, client or identity.hex(), request_id, op, args, payload
        )
        try:
            response = operation.handler(self, request)  # type: ignore[arg-type]
            if isinstance(response, Deferred):
                response.bind(self, identity, request_id, None)  # type: ignore[arg-type]
                return None
            return self._reply(identity, request_id, response)
        except RequestError as exc:
            return self._error(identity, request_id, exc.code, exc.message)
        except Exception:
            logger.exception("operation %s failed inside the in-process daemon", op)
            return self._error(
                identity,
                request_id,
                ErrorCode.INTERNAL,
                f"{op} failed inside the daemon; see its log",
            )

    # The three methods a Deferred calls on its daemon (encored._deferred).

    def _reply(
        self, identity: bytes, request_id: Any, response: Response
    ) -> list[bytes]:
        # Frames as a socket would deliver them: bytes, whatever the handler
        # held (a view of a buffer it may reuse).
        data = [f if type(f) is bytes else bytes(f) for f in response.frames]
        return [identity, build_reply(request_id, response.result), *data]

    def _error(
        self, identity: bytes, request_id: Any, code: ErrorCode, message: str
    ) -> list[bytes]:
        return [identity, build_error(request_id, code, message)]

    def epochs(self, limit: int) -> list[tuple[bytes, int]]:
        """Where the emitters stand, for ``hello``: only the daemon's own here."""
        return [(self.epoch, self.last_seq)]

    def post_reply(self, frames: list[bytes], key: Any) -> None:
        """Hand a reply to the transport it answers (any thread).

        A reply for a transport closed meanwhile is dropped, as a socket's
        would be.
        """
        client = self._clients.get(frames[0])
        if client is not None:
            client._replies.put(frames[1:])

    # -- events (the daemon's publisher and a bridge's dispatch) -------------------

    def _on_event(self, event: BaseEvent) -> None:
        """Publish an event of the daemon's manager: encode it, number it."""
        cls = type(event)
        attributes = _codec.encode_attributes(event)
        source = getattr(event, "source", None)
        # The host's adapter names its stores; the process's codec no
        # longer has it (see _process_codec_kept).
        descriptor = self.host._encode_source(source)
        if descriptor is None:
            descriptor = _codec.encode_source(source)
        stamp = time.time()
        header = _codec.encode_header(
            self._sender_registry.wire_head(cls), descriptor, stamp
        )
        with self._publish_lock:
            seq = self.last_seq = self.last_seq + 1
            frame = _codec.event_frame(seq, stamp, self.epoch, b"", header)
            self.log.append(self.epoch, seq, frame, attributes)
            with self._inbox_cv:
                self._inbox.append((frame, attributes))
                self._inbox_cv.notify()

    def _build(self, frame: bytes, attributes: bytes) -> BaseEvent:
        """Rebuild an event from its published frames, as a bridge does."""
        return rebuild_event(self._receiver_registry, frame, attributes, False)

    def _dispatch_loop(self) -> None:
        inbox = self._inbox
        while True:
            with self._inbox_cv:
                while not inbox and not self._stopping:
                    self._inbox_cv.wait()
                if self._stopping:
                    return
                batch = list(inbox)
                inbox.clear()
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
                    continue
                try:
                    event = self._build(*item)
                except (ProtocolError, KeyError, TypeError, ValueError) as exc:
                    logger.warning("dropping an event that cannot be rebuilt: %s", exc)
                    continue
                try:
                    self.event_manager.emit(event)
                except Exception:  # the manager logs listener errors itself
                    logger.exception("emitting an in-process event failed")


class InProcessTransport(Transport):
    """A :class:`~encore_client.Transport` to an :class:`InProcessDaemon`.

    Each request is encoded, handled and answered exactly as over the
    request socket (see the module docs), without the socket.

    Parameters
    ----------
    daemon : InProcessDaemon
    timeout : float
        Default time a request may take before
        :class:`~encore_client.DaemonUnavailableError`.
    client_id : str, optional
        Identifies this client to the daemon (random by default).
    """

    def __init__(
        self,
        daemon: InProcessDaemon,
        *,
        timeout: float = 10.0,
        client_id: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.client_id = client_id or new_client_id()
        self._daemon = daemon
        self._identity = os.urandom(5)  # as a ROUTER names a peer
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._replies: queue.SimpleQueue[list[bytes]] = queue.SimpleQueue()
        self._closed = False
        daemon._attach(self._identity, self)

    def request(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        frames: Sequence[bytes] = (),
        timeout: float | None = None,
    ) -> Reply:
        """Perform ``op`` (see :meth:`Transport.request`).

        Raises
        ------
        RequestTooLargeError
            For an envelope the daemon would refuse (nothing is sent).
        DaemonUnavailableError
            If no reply came within ``timeout`` (a store call still runs).
        EncoreError
            (or the exception type its code maps to) for an error reply.
        """
        total = self.timeout if timeout is None else timeout
        with self._lock:
            if self._closed:
                raise RuntimeError("transport is closed")
            request_id = next(self._ids)
            envelope = build_request(self.client_id, request_id, op, args)
            # What the socket delivers: bytes, never a view of the
            # caller's buffer (it may reuse it once this returns).
            message = [envelope, *(f if type(f) is bytes else bytes(f) for f in frames)]
            self._daemon._deliver(self._identity, message)
            deadline = time.monotonic() + total
            while True:
                try:
                    reply_frames = self._replies.get(
                        timeout=max(0.0, deadline - time.monotonic())
                    )
                except queue.Empty:
                    break
                try:
                    reply_id, outcome = parse_reply(reply_frames)
                except ProtocolError:
                    continue  # garbled: as the socket transport, keep waiting
                if reply_id != request_id:
                    continue  # a late reply to a request that timed out
                if isinstance(outcome, Exception):
                    raise outcome
                return outcome
        raise DaemonUnavailableError(
            f"the in-process daemon did not answer {op!r} within {total:g} s"
        )

    def close(self) -> None:
        """Detach from the daemon; further requests fail."""
        with self._lock:
            self._closed = True
        self._daemon._detach(self._identity)


@contextlib.contextmanager
def in_process_store(
    name: str,
    config: str | Config | None = None,
    *,
    stores: Mapping[str, Mapping[str, Any]] | None = None,
    **kwargs: Any,
) -> Iterator[RemoteStore]:
    """A :class:`RemoteStore` of ``name`` served by a new :class:`InProcessDaemon`.

    ``config`` or ``stores`` as for ``InProcessDaemon`` (``stores``
    defaults to one memory store called ``name``); other keyword arguments
    go to :meth:`InProcessDaemon.store`.  The daemon is closed on exit.
    """
    if config is None and stores is None:
        stores = {name: {"type": "memory"}}
    with InProcessDaemon(config, stores=stores) as daemon:
        store = daemon.store(name, **kwargs)
        try:
            yield store
        finally:
            store.disconnect()
