"""The daemon's I/O loop: requests, and what the event path leaves to Python.

ZeroMQ sockets are not thread-safe, so a single thread (the one that calls
:meth:`Daemon.run`, normally the main thread) owns the ROUTER socket that
serves requests, the capture socket of the event path and the PUB socket's
monitor.  Clients' events do not pass through here: the
:class:`~encored._event_hub.EventHub` forwards them inside libzmq, and this
loop reads their copies from the capture, off the hot path, into the
replay buffer and to the daemon's own listeners.  Events emitted on the
daemon's ``EventManager`` (on any thread) are numbered under the daemon's
own epoch and sent into the hub at once.

Every request is answered: a malformed, oversized or unknown one gets an
error reply and a (rate-limited) log line, and a handler that raises is
logged with its traceback and answered ``INTERNAL``.  Nothing a client
sends stops the loop.
"""

from __future__ import annotations

__all__ = ["Daemon"]

import collections
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgpack
import zmq
from zmq.backend import zmq_poll
from zmq.utils.monitor import recv_monitor_message

from encore.events.abstract_event_manager import BaseEvent
from encore.events.event_manager import EventManager
from encore_client import _codec
from encore_client._protocol import (
    DAEMON_TAG,
    MAX_ENVELOPE,
    MAX_SUBSCRIPTION,
    TOPIC_EVENT,
    ErrorCode,
    event_topic,
    origin_tag,
)
from encore_client._transport import send_frames
from encore_client.wire.beacons import MAX_BEACON_EPOCHS, build_heartbeat, build_probe
from encore_client.wire.envelope import (
    RequestRefused,
    build_error,
    build_reply,
    parse_request,
)

from ._config import Config
from ._deferred import Deferred
from ._epoch_log import EpochLog
from ._event_hub import EventHub
from ._handlers import BUS_OPERATIONS, Operation, Request, RequestError, Response
from ._runtime_dir import RuntimeDir

logger = logging.getLogger("encored")

#: The publishing listener runs before any other daemon-side listener, so a
#: listener that marks an event handled cannot keep it off the bus.
PUBLISH_PRIORITY = 2**62
#: How many ``(client, request id)`` replies of effectful operations are
#: remembered to answer retries without applying them twice, and how long.
DEDUP_ENTRIES = 20000
DEDUP_SECONDS = 120.0
#: Most frames of one request.


class _RateLimitedLog:
    """Log a kind of complaint at most ``per_second`` times a second.

    A client flooding the daemon with garbage must not flood the journal.
    """

    def __init__(self, per_second: int = 10) -> None:
        self.per_second = per_second
        self.window = 0
        self.count = 0
        self.suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        now = int(time.monotonic())
        if now != self.window:
            if self.suppressed:
                logger.warning("%d similar warnings suppressed", self.suppressed)
            self.window, self.count, self.suppressed = now, 0, 0
        if self.count < self.per_second:
            self.count += 1
            logger.warning(message, *args)
        else:
            self.suppressed += 1


class DaemonEventManager(EventManager):
    """The daemon's ``EventManager``: counts changes to its listeners.

    ``generation`` moves on every ``connect``, ``disconnect``, ``enable``,
    ``disable`` and ``set_trace``, so the daemon can cache, per event class,
    whether anything but its publisher would see an event (a listener that
    disappears because its object was collected only makes a cached answer
    over-cautious).
    """

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0
        self.tracing = False

    def connect(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        self.generation += 1
        super().connect(*args, **kwargs)

    def disconnect(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        self.generation += 1
        super().disconnect(*args, **kwargs)

    def enable(self, cls: type[BaseEvent]) -> None:  # noqa: D102
        self.generation += 1
        super().enable(cls)

    def disable(self, cls: type[BaseEvent]) -> None:  # noqa: D102
        self.generation += 1
        super().disable(cls)

    def set_trace(self, func: Any) -> None:  # noqa: D102
        self.generation += 1
        self.tracing = func is not None
        super().set_trace(func)


class Daemon:
    """One encored instance: its event manager, sockets and loop.

    Parameters
    ----------
    config : Config
        A validated configuration.
    runtime_dir : RuntimeDir
        The (already locked) runtime directory to bind in.
    event_manager : EventManager, optional
        The manager whose events are published (a new one by default).
    operations : mapping, optional
        The operations table (default: the event-bus operations).
    """

    def __init__(
        self,
        config: Config,
        runtime_dir: RuntimeDir,
        event_manager: EventManager | None = None,
        operations: Mapping[str, Operation] | None = None,
    ) -> None:
        self.config = config
        self.runtime_dir = runtime_dir
        self.endpoints = runtime_dir.endpoints
        self.instance_id = uuid.uuid4().hex
        self._instance_raw = bytes.fromhex(self.instance_id)
        #: Origin tags of event topics, by client id.
        self._tags: dict[str | None, bytes] = {}
        self.started = time.time()
        self.event_manager = (
            event_manager if event_manager is not None else DaemonEventManager()
        )
        self._only_published: dict[tuple[str, tuple[str, ...]], bool] = {}
        self._only_published_generation = -1
        self.registry = _codec.ClassRegistry(self.event_manager)
        self.log = EpochLog(config.daemon.event_buffer)
        #: The daemon's own events are numbered under its instance id.
        self.epoch = self._instance_raw
        self.last_seq = 0
        self._seq_lock = threading.Lock()
        #: Messages published before the hub existed (sent once it does).
        self._early: list[list[bytes]] = []
        self._early_lock = threading.Lock()
        self._hub: EventHub | None = None
        self._bound_hub: EventHub | None = None
        #: Captured event messages that were not well-formed (their sender
        #: is at fault; subscribers drop them too).
        self.malformed_events = 0
        self.operations = dict(operations if operations is not None else BUS_OPERATIONS)
        self.subscribers = 0
        self._max_size = config.daemon.max_message_size
        self._io_thread: int | None = None
        self._stop = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        #: A client's event being emitted on the daemon's manager (already
        #: published: the publishing listener leaves it alone).
        self._inbound: BaseEvent | None = None
        self._dedup: collections.OrderedDict[
            tuple[str, Any], tuple[float, list[bytes]]
        ] = collections.OrderedDict()
        self._complaints = _RateLimitedLog()
        # Replies of deferred operations (see _deferred.py), posted by worker
        # threads, and the newest identity of each pending effectful request
        # (a retry arriving while the first attempt runs is answered once,
        # on the retry's socket).
        self._replies: collections.deque[tuple[list[bytes], Any]] = collections.deque()
        self._pending_replies: dict[tuple[str, Any], bytes] = {}
        # Same encoding as _codec.pack; used on the I/O thread only.
        self._packer = msgpack.Packer(use_bin_type=True)
        self._context: zmq.Context | None = None
        self._router: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self.event_manager.connect(BaseEvent, self._on_event, priority=PUBLISH_PRIORITY)
        # -- service hooks (systemd watchdog, reload, tcp; see _service.py) --
        #: Called on the I/O thread on every pass of the loop with the
        #: monotonic time; each returns the monotonic time it next wants to
        #: run, and the loop wakes up by then.
        self.loop_hooks: list[Callable[[float], float]] = []
        #: Called with the ROUTER, PUB and inbound PULL sockets after the
        #: ipc binds.
        self.bind_hooks: list[Callable[[zmq.Socket, zmq.Socket, zmq.Socket], None]] = []
        #: Called after the sockets are closed, before the context ends
        #: (helpers with sockets of their own on it close them here).
        self.close_hooks: list[Callable[[], None]] = []
        #: Error replies sent, by error code name (for ``status``).
        self.error_counts: collections.Counter[str] = collections.Counter()
        #: The latest error message and its time, by error code name.
        self.last_errors: dict[str, tuple[float, str]] = {}
        self._calls: collections.deque[Callable[[], None]] = collections.deque()

    # -- publishing ---------------------------------------------------------------

    def _on_event(self, event: BaseEvent) -> None:
        """Listener on the daemon's manager: publish every event once."""
        if self._inbound is event:
            return  # a client's event, forwarded by the hub already
        cls = type(event)
        stamp = time.time()
        header = _codec.encode_header(
            self.registry.wire_head(cls),
            _codec.encode_source(getattr(event, "source", None)),
            stamp,
        )
        self.publish(
            self.registry.wire_names(cls)[0],
            header,
            _codec.encode_attributes(event),
            None,
            stamp,
        )

    def publish(
        self,
        name: str,
        header: bytes,
        attributes: bytes,
        origin: str | None,
        stamp: float,
    ) -> int:
        """Number an event under the daemon's epoch and publish it (any thread).

        ``header`` is the msgpack header map, ``origin`` the client id it
        is published for (``emit`` requests) or ``None`` for the daemon's
        own.  Returns its sequence number.
        """
        return self.publish_many([(name, header, attributes, stamp)], origin)[0]

    def publish_many(
        self, events: list[tuple[str, bytes, bytes, float]], origin: str | None
    ) -> list[int]:
        """Publish ``(name, header, attributes, stamp)`` events of one origin.

        They get consecutive numbers and travel in as few messages as
        their size allows (256 events or about 64 KiB each).  Returns
        their sequence numbers.
        """
        if origin is None:
            tag = DAEMON_TAG
        else:
            tag = self._tags.get(origin)
            if tag is None:
                if len(self._tags) > 4096:
                    self._tags.clear()
                tag = self._tags[origin] = origin_tag(origin)
        raw_origin = origin.encode() if origin else b""
        seqs = []
        with self._seq_lock:
            parts: list[bytes] = []
            size = 0
            topic = b""
            for name, header, attributes, stamp in events:
                if parts and (len(parts) >= _BATCH_PARTS or size >= _BATCH_BYTES):
                    self._send([topic, _codec.pack_events(parts)])
                    parts, size = [], 0
                if not parts:
                    topic = event_topic(tag, name)
                seq = self.last_seq = self.last_seq + 1
                frame = _codec.event_frame(seq, stamp, self.epoch, raw_origin, header)
                parts += (frame, attributes)
                size += len(frame) + len(attributes)
                seqs.append(seq)
            if parts:
                self._send([topic, _codec.pack_events(parts)])
        return seqs

    def _send(self, frames: list[bytes]) -> None:
        """Send a message into the hub, or keep it until the hub exists."""
        hub = self._hub
        if hub is None:
            with self._early_lock:
                if self._hub is None:
                    self._early.append(frames)
                    return
            hub = self._hub
        hub.send(frames)

    def _start_hub(self, hub: EventHub) -> None:
        """Start forwarding; send what was published before, in order."""
        hub.start()
        with self._seq_lock, self._early_lock:
            for frames in self._early:
                hub.send(frames)
            self._early.clear()
            self._hub = hub

    def publish_probe(self, token: str) -> None:
        """Publish a probe message carrying ``token`` (see the probe op)."""
        self._send(build_probe(self.instance_id, token))

    def epochs(self, limit: int) -> list[tuple[bytes, int]]:
        """Where the ``limit`` most recently heard epochs stand, ours last."""
        table = [(e, s) for e, s in self.log.recent(limit) if e != self.epoch]
        return [*table[-(limit - 1) :], (self.epoch, self.last_seq)]

    def _heartbeat(self) -> None:
        self._send(
            build_heartbeat(
                self.instance_id, self.epochs(MAX_BEACON_EPOCHS), time.time()
            )
        )

    def _on_capture(self) -> None:
        """Read forwarded messages: keep events for replay, show clients'
        events to the daemon's own listeners.  Bounded per call."""
        capture = self._hub.capture if self._hub is not None else None
        assert capture is not None
        for _ in range(1024):
            try:
                frames = capture.recv_multipart(_NOBLOCK)
            except zmq.Again:
                return
            if not frames[0].startswith(TOPIC_EVENT):
                continue  # a heartbeat, a probe: nothing to keep
            try:
                if len(frames) != 2:
                    raise _codec.DecodeError("an event message has two frames")
                parts = _codec.unpack_events(frames[1])
                for i in range(0, len(parts), 2):
                    frame, attributes = parts[i], parts[i + 1]
                    seq, _stamp, epoch, origin = _codec.parse_prefix(frame)
                    if not self.log.append(epoch, seq, frame, attributes):
                        continue  # sent again after a restart: seen already
                    if origin:
                        self._show_inbound(frame, attributes)
            except _codec.DecodeError as exc:
                self.malformed_events += 1
                self._complaints.warning("a malformed event was published: %s", exc)

    def _show_inbound(self, frame: bytes, attributes: bytes) -> None:
        """Emit a client's event on the daemon's manager if a listener there
        could see it (it is published already)."""
        header = _codec.decode_header(frame)
        if self.only_published(header):
            return
        event = self.rebuild_event(header, attributes)
        self._inbound = event
        try:
            self.event_manager.emit(event)
        finally:
            self._inbound = None

    def rebuild_event(self, header: dict[str, Any], attributes: bytes) -> BaseEvent:
        """Rebuild a client's event from its checked header and attributes.

        Raises :class:`~encore_client.ProtocolError` (a ``DecodeError``) if
        the attributes cannot be decoded.
        """
        cls = self.registry.resolve(header["class"], header["bases"])
        attrs = _codec.decode_attributes(attributes, cls)
        event = cls.__new__(cls)
        BaseEvent.__init__(event, source=_codec.decode_source(header.get("source")))
        event.__dict__.update(attrs)
        return event

    def _listener_caches_valid(self) -> bool:
        """Empty the caches that depend on daemon-side listeners if those
        changed; False when such answers may not be cached at all."""
        manager = self.event_manager
        generation = getattr(manager, "generation", None)
        if generation is None or manager.tracing:
            return False
        if generation != self._only_published_generation:
            self._only_published.clear()
            self._only_published_generation = generation
        return True

    def only_published(self, header: dict[str, Any]) -> bool:
        """Whether nothing but the publisher would see this client event.

        Then the daemon publishes the client's frames as they are instead of
        rebuilding the event and emitting it on a manager where no listener
        could observe it (it halves the daemon's cost per event).  Always
        False with a manager that is not a :class:`DaemonEventManager`.
        """
        if not self._listener_caches_valid():
            return False
        manager = self.event_manager
        key = (header["class"], tuple(header["bases"]))
        answer = self._only_published.get(key)
        if answer is None:
            cls = self.registry.resolve(header["class"], header["bases"])
            answer = manager.is_enabled(cls) and manager.get_listeners(cls) == [
                self._on_event
            ]
            if len(self._only_published) > 4096:
                self._only_published.clear()
            self._only_published[key] = answer
        return answer

    # -- requests -------------------------------------------------------------------

    def _reply(
        self, identity: bytes, request_id: Any, response: Response
    ) -> list[bytes]:
        # The I/O thread reuses one Packer (not thread-safe); workers posting
        # deferred replies encode with the codec's own.
        if threading.get_ident() == self._io_thread:
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

    def _error(
        self, identity: bytes, request_id: Any, code: ErrorCode, message: str
    ) -> list[bytes]:
        name = getattr(code, "name", str(code))
        self.error_counts[name] += 1
        self.last_errors[name] = (time.time(), message[:300])
        return [identity, build_error(request_id, code, message)]

    def handle(self, frames: list[bytes]) -> list[bytes] | None:
        """Turn one ROUTER message into its reply message (never raises)."""
        key, reply = self._handle(frames)
        if key is not None and reply is not None:
            self._remember(key, reply)
        return reply

    def _handle(
        self, frames: list[bytes]
    ) -> tuple[tuple[str, Any] | None, list[bytes] | None]:
        """:meth:`handle`, leaving the reply of an effectful request to be
        remembered by the caller: ``((client, request id) or None, reply)``.

        The loop remembers it after sending, off the client's wait.
        """
        identity = frames[0]
        count = len(frames) - 1  # frames after the identity
        if not count:
            self._complaints.warning(
                "client %s sent an empty message", _LazyHex(identity)
            )
            return None, self._error(
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
                    "client %s %s", _LazyHex(identity), refused.complaint
                )
            return None, self._error(
                identity, refused.request_id, refused.code, refused.message
            )
        operation = self.operations.get(op)
        if operation is None:
            self._complaints.warning(
                "client %s asked for unknown operation %.64r", _LazyHex(identity), op
            )
            return None, self._error(
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
                # Only store calls take zero-copy views (see _recv_request).
                payload = [bytes(f) if type(f) is memoryview else f for f in payload]
        request = Request(identity, client, request_id, op, args, payload)
        try:
            response = operation.handler(self, request)
            if type(response) is Response:
                reply = self._reply(identity, request_id, response)
            elif isinstance(response, Deferred):
                if once:
                    self._pending_replies[key] = identity
                response.bind(self, identity, request_id, key if once else None)
                return None, None
            else:
                reply = self._reply(identity, request_id, response)
        except RequestError as exc:
            self._complaints.warning(
                "%s from client %s failed: %s", op, _LazyHex(identity), exc.message
            )
            reply = self._error(identity, request_id, exc.code, exc.message)
        except Exception:
            logger.exception(
                "operation %s from client %s failed", op, _LazyHex(identity)
            )
            reply = self._error(
                identity,
                request_id,
                ErrorCode.INTERNAL,
                f"{op} failed inside the daemon; see its log",
            )
        return (key if once else None), reply

    def _remember(self, key: tuple[str, Any], reply: list[bytes]) -> None:
        now = time.monotonic()
        self._dedup[key] = (now, reply[1:])
        while self._dedup and (
            len(self._dedup) > DEDUP_ENTRIES
            or next(iter(self._dedup.values()))[0] < now - DEDUP_SECONDS
        ):
            self._dedup.popitem(last=False)

    def post_reply(self, frames: list[bytes], key: tuple[str, Any] | None) -> None:
        """Hand a finished deferred reply to the I/O thread (any thread).

        ``key`` is the ``(client, request id)`` of an effectful request, so
        that its reply is remembered for retries, or ``None``.
        """
        if self._router is None:
            return  # the loop has stopped: nobody will send it
        self._replies.append((frames, key))
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # full pipe: the I/O thread is awake; closed: stopping

    def _send_replies(self) -> None:
        router = self._router
        while self._replies:
            frames, key = self._replies.popleft()
            if key is not None:
                frames[0] = self._pending_replies.pop(key, frames[0])
                self._remember(key, frames)
            if router is None:
                continue
            try:
                send_frames(router, frames, _NOBLOCK)
            except zmq.ZMQError as exc:
                logger.debug("deferred reply dropped: %s", exc)

    # -- the loop -------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the loop to stop (safe from signal handlers and other threads)."""
        self._stop = True
        try:
            os.write(self._wake_w, b"\1")
        except OSError:
            pass

    def call_soon(self, func: Callable[[], None]) -> None:
        """Run ``func()`` on the I/O thread soon (safe from any thread).

        Exceptions it raises are logged; the loop goes on.
        """
        self._calls.append(func)
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # full pipe: the I/O thread is awake; closed: stopping

    def _run_calls(self) -> None:
        while self._calls:
            func = self._calls.popleft()
            try:
                func()
            except Exception:
                logger.exception("a call on the I/O thread failed")

    def _bind(self) -> None:
        self._context = zmq.Context()
        self._router = self._context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        # A hard cap at the transport: anything far beyond the configured
        # limit is dropped by libzmq before it costs us memory; anything
        # between the two gets a proper TOO_LARGE reply from handle().
        self._router.setsockopt(zmq.MAXMSGSIZE, 2 * self._max_size + MAX_ENVELOPE)
        hub = EventHub(
            self._context,
            self.endpoints.events_in,
            self.endpoints.events,
            publish_hwm=self.config.daemon.publish_hwm,
            max_message_size=self._max_size + MAX_ENVELOPE,
            max_subscription=MAX_SUBSCRIPTION,
        )
        self._monitor = hub.published.get_monitor_socket(
            zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
        )
        self._bound_hub = hub
        old_umask = os.umask(0o077)  # the socket files are for us only
        try:
            self._router.bind(self.endpoints.requests)
        finally:
            os.umask(old_umask)
        for hook in self.bind_hooks:
            hook(self._router, hub.published, hub.inbound)

    def _on_monitor(self) -> None:
        assert self._monitor is not None
        try:
            message = recv_monitor_message(self._monitor, flags=zmq.NOBLOCK)
        except zmq.Again:
            return
        if message["event"] == zmq.EVENT_ACCEPTED:
            self.subscribers += 1
        elif message["event"] == zmq.EVENT_DISCONNECTED:
            self.subscribers = max(0, self.subscribers - 1)

    def _on_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        if self._calls:
            self._run_calls()
        self._send_replies()

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Bind the sockets and serve until :meth:`request_stop`.

        ``on_ready`` is called once the sockets are bound (the daemon then
        tells systemd it is ready).  Returns after the sockets are closed.
        """
        self._io_thread = threading.get_ident()
        self._bind()
        assert self._router is not None and self._monitor is not None
        hub = self._bound_hub
        self._start_hub(hub)
        capture = hub.capture
        # What zmq.Poller would hold, polled without its Python layer.
        poll_items = [
            (capture, _POLLIN),
            (self._router, _POLLIN),
            (self._monitor, _POLLIN),
            (self._wake_r, _POLLIN),
        ]
        interval = self.config.daemon.heartbeat_interval
        logger.info(
            "encored %s serving on %s (pid %d, %d stores configured)",
            self.instance_id,
            self.endpoints.runtime_dir,
            os.getpid(),
            len(self.config.stores),
        )
        if on_ready is not None:
            on_ready()
        next_beat = time.monotonic()
        router = self._router
        router_only = [(router, _POLLIN)]
        try:
            while not self._stop:
                now = time.monotonic()
                if now >= next_beat:
                    self._heartbeat()
                    next_beat = now + interval
                wake_at = next_beat
                for hook in self.loop_hooks:
                    wake_at = min(wake_at, hook(now))
                events = dict(zmq_poll(poll_items, int(max(0.0, wake_at - now) * 1000)))
                if self._wake_r in events:
                    self._on_wake()
                if capture in events:
                    self._on_capture()
                if router in events:
                    # Serve a bounded batch, then look at the other sockets.
                    for _ in range(256):
                        try:
                            frames = _recv_request(router)
                        except zmq.Again:
                            break  # a spurious wake-up: rare
                        key, reply = self._handle(frames)
                        if reply is not None:
                            try:
                                if len(reply) == 2:  # the common reply
                                    router.send(reply[0], _NOBLOCK_SNDMORE)
                                    router.send(reply[1], _NOBLOCK)
                                else:
                                    send_frames(router, reply, _NOBLOCK)
                            except zmq.ZMQError as exc:
                                # The client is gone or not reading; it will
                                # time out and retry.
                                logger.debug("reply dropped: %s", exc)
                            if key is not None:
                                # After the send: the client need not wait
                                # for it, and a retry is read only after it.
                                self._remember(key, reply)
                        # Asking whether more is queued costs far less than
                        # the zmq.Again a receive on an empty socket raises;
                        # a zero-timeout poll of the one socket less than
                        # its EVENTS option (pyzmq looks the option up).
                        if not zmq_poll(router_only, 0):
                            break
                if self._monitor in events:
                    self._on_monitor()
            self._on_wake()
        finally:
            self._close()

    def _close(self) -> None:
        self.event_manager.disconnect(BaseEvent, self._on_event)
        hub = self._bound_hub
        if hub is not None:
            hub.published.disable_monitor()
            hub.stop()  # after the last events and replies are sent
        for sock in (self._monitor, self._router):
            if sock is not None:
                sock.close()
        self._monitor = self._router = None
        for hook in self.close_hooks:
            try:
                hook()
            except Exception:
                logger.exception("a close hook failed")
        if self._context is not None:
            self._context.term()
            self._context = None
        os.close(self._wake_r)
        os.close(self._wake_w)


_MISSING = object()


class _LazyHex:
    """A peer identity that formats as hex only when a log line needs it."""

    __slots__ = ("_identity",)

    def __init__(self, identity: bytes) -> None:
        self._identity = identity

    def __str__(self) -> str:
        return self._identity.hex()


#: Payload frames of a request from this size on are kept as zero-copy
#: views of the received message for store operations (upload chunks), and
#: copied into ``bytes`` for any other operation.
ZERO_COPY_FRAME = 512 * 1024


def _recv_request(sock: zmq.Socket) -> list[bytes]:
    """Receive one ROUTER message without waiting (``zmq.Again`` if none).

    As :func:`recv_frames`, except that payload frames of
    ``ZERO_COPY_FRAME`` bytes or more stay ``memoryview`` objects over the
    received message: a 4 MiB upload chunk is then not copied once more
    on the I/O thread.  :meth:`Daemon.handle` turns them into ``bytes``
    for operations other than store calls.
    """
    frame = sock.recv(_NOBLOCK, copy=False)
    frames = [frame.bytes]
    while frame.more:
        frame = sock.recv(_NOBLOCK, copy=False)
        frames.append(frame.bytes if len(frame) < ZERO_COPY_FRAME else frame.buffer)
    return frames


#: Most events, and bytes, in one published message.
_BATCH_PARTS = 2 * _codec.MAX_PACKED_EVENTS
_BATCH_BYTES = 64 * 1024
_SNDMORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_SNDMORE = _NOBLOCK | _SNDMORE
_POLLIN = int(zmq.POLLIN)


def _count_map(data: bytes) -> int:
    """Number of entries in an encoded msgpack map (-1 if not a map)."""
    if not data:
        return -1
    first = data[0]
    if 0x80 <= first <= 0x8F:
        return first & 0x0F
    if first == 0xDE and len(data) >= 3:
        return int.from_bytes(data[1:3], "big")
    if first == 0xDF and len(data) >= 5:
        return int.from_bytes(data[1:5], "big")
    return -1
