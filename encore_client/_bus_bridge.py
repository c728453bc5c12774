"""BusBridge: make a local EventManager part of the daemon's shared bus.

Threads (one of each per bridge):

* the **I/O thread** owns the SUB socket (events, heartbeats, probes from
  the daemon's PUB socket) and a DEALER socket (requests: emits, replays,
  probes).  It only decodes event headers, checks sequence numbers and
  queues events; it never runs a listener.
* the **dispatch thread** rebuilds each received event and emits it on the
  local manager, so a slow listener delays nothing but later deliveries.
  When its queue grows past ``max_queue`` the I/O thread stops reading the
  SUB socket; whatever is then dropped by ZeroMQ shows up as a sequence gap
  and is fetched again from the daemon's replay buffer (or reported lost).
* events emitted locally (on any thread) are encoded by the bridge's
  listener on the emitting thread and handed to the I/O thread.
"""

from __future__ import annotations

__all__ = ["BusBridge"]

import collections
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import zmq

from encore.events.abstract_event_manager import BaseEvent

from . import _codec
from ._events import _BUS_INFO_ATTR, BusInfo, BusStateEvent, EventsLostEvent
from ._keys import apply_curve
from ._paths import endpoints, no_daemon_reason
from ._protocol import (
    OP_EMIT,
    OP_HELLO,
    OP_PROBE,
    OP_REPLAY,
    TOPIC_EVENT,
    TOPIC_HEARTBEAT,
    TOPIC_PROBE,
    DaemonUnavailableError,
    ProtocolError,
    origin_tag,
    subscriptions_without,
)
from ._transport import new_client_id, recv_frames, send_frames
from .wire.beacons import parse_beacon
from .wire.envelope import build_request, parse_reply

logger = logging.getLogger(__name__)

#: The bridge's listener sees every event before any ordinary listener, so
#: that a local ``mark_as_handled`` cannot keep an event off the bus
#: (handling is per process).
BRIDGE_PRIORITY = 2**62
_REPLAY_LIMIT = 1000
#: Emits sent but not yet acknowledged, at most.  Keeping the window below
#: the sockets' high-water marks means a send never fails for lack of room,
#: which would otherwise reorder events.
_EMIT_WINDOW = 1000
#: Most events, and bytes, sent in one emit request.
_EMIT_BATCH = _codec.MAX_PACKED_EVENTS
_BATCH_BYTES = 1 << 20
_NOBLOCK = int(zmq.NOBLOCK)
#: Control topics (heartbeat, probe) start with a NUL byte.
TOPIC_CONTROL = b"\x00"


@dataclass
class _Pending:
    kind: str  # "emit" | "replay" | "probe" | "hello"
    frames: list[bytes]
    deadline: float
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class BusBridge:
    """Join a local ``EventManager`` to the event bus of an ``encored``.

    Events emitted on ``event_manager`` are sent to the daemon, which emits
    them on its own manager and publishes them to every bridge; events
    published by others are emitted on ``event_manager`` by a thread of this
    bridge, rebuilt as their own class when this process has it (imported,
    or registered with the manager), otherwise as a
    :class:`~encore_client.RemoteEvent` subclass that also derives from the
    nearest known bases, so ``connect(FileEvent, f, filter=...)`` matches a
    remote ``SaveEvent`` whatever this process knows.  Filters and
    priorities work as for local events; ``mark_as_handled`` and priorities
    do not reach across processes.

    The bridge never delivers an event back to the process that emitted it,
    and never re-sends an event it received.  It follows daemon restarts by
    itself, fetches events it missed (sequence gaps) from the daemon, and
    emits :class:`~encore_client.EventsLostEvent` when they are gone.

    Parameters
    ----------
    event_manager : EventManager, optional
        The manager to join (default: the process-wide one).
    runtime_dir : path, optional
        Where the daemon's sockets are (default: the usual rule,
        ``ENCORE_RUNTIME_DIR`` first).
    timeout : float
        How long :meth:`start` waits for the daemon, and how long an emitted
        event may wait for the daemon's acknowledgement (retried on a fresh
        socket meanwhile) before it is dropped with an error in the log.
    max_queue : int
        Received events waiting for the dispatch thread beyond which the
        bridge stops reading (and later fetches what it missed).
    receive_hwm : int
        ZeroMQ high-water mark of the SUB socket, in messages.
    max_outbox : int
        Emitted events waiting to be sent.  When that many wait, ``emit``
        waits for room while the daemon keeps answering (flow control);
        while it answers nothing, the oldest are dropped, counted and
        logged instead.
    name : str, optional
        A name for this client in the daemon's log.
    strict : bool
        What :meth:`start` does when no daemon answers.  ``False`` (the
        default, for applications started in any order, as desktop
        sessions start them): return anyway and join the bus when a daemon
        comes; events emitted meanwhile wait in the outbox.  ``True``:
        raise ``DaemonUnavailableError`` (command-line tools).

    The bridge's :attr:`state` is ``"joined"`` or ``"waiting"`` (no daemon
    yet, or it went away), ``"closed"`` after :meth:`close`; every change
    after :meth:`start` returned is also emitted on ``event_manager`` as a
    local :class:`~encore_client.BusStateEvent`.

    Use it as a context manager, or call :meth:`start` and :meth:`close`.
    One bridge per manager.
    """

    def __init__(
        self,
        event_manager: Any = None,
        runtime_dir: str | os.PathLike[str] | None = None,
        *,
        timeout: float = 10.0,
        max_queue: int = 10000,
        receive_hwm: int = 100000,
        max_outbox: int = 100000,
        name: str | None = None,
        strict: bool = False,
    ) -> None:
        if event_manager is None:
            from encore.events.package_globals import get_event_manager

            event_manager = get_event_manager()
        self.event_manager = event_manager
        self.endpoints = endpoints(runtime_dir)
        self.client_id = new_client_id()
        self.name = name or f"pid {os.getpid()}"
        self.timeout = timeout
        self.max_queue = max_queue
        self.receive_hwm = receive_hwm
        self.max_outbox = max_outbox
        self.registry = _codec.ClassRegistry(event_manager)
        #: Counters, for tools and tests: events received (in sequence; our
        #: own events count when the daemon's reply numbers them, as the
        #: daemon does not send them back), delivered, replayed, lost, sent,
        #: acknowledged, dropped (never acknowledged).
        self.stats: collections.Counter[str] = collections.Counter()
        self.instance_id: str | None = None
        self._instance_raw = b""
        self._origin = self.client_id.encode()
        self._retry_interval = min(1.0, timeout / 3)
        self._lock = threading.Lock()
        self._outbox: collections.deque[tuple[bytes, bytes]] = collections.deque()
        #: Emitters waiting for room in a full outbox (see _make_room).
        self._room = threading.Condition(threading.Lock())
        self._room_waiters = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._inbox: collections.deque[Any] = collections.deque()
        self._staged: list[Any] = []
        self._inbox_cv = threading.Condition()
        self._ready = threading.Event()
        self._stopping = False
        self._wake_pending = False
        self._flush_requested = False
        self._closed = False
        self._started = False
        self._start_error: BaseException | None = None
        self._io: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        # State below is owned by the I/O thread.
        self._context: zmq.Context | None = None
        self._sub: zmq.Socket | None = None
        self._dealer: zmq.Socket | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        #: Request ids still to be sent on the current DEALER, in order.
        self._unsent: collections.deque[int] = collections.deque()
        self._emits_inflight = 0
        self._last_reply = 0.0
        self._probe_token = os.urandom(8).hex()
        self._old_instances: set[str] = set()
        self._next_seq = 0
        self._want_until = 0
        #: Events received ahead of a gap: seq -> (seq, time, header frame,
        #: origin, attributes).
        self._held: dict[int, tuple[int, float, bytes, bytes, bytes]] = {}
        #: Sequence numbers of our own events (from emit replies) not yet
        #: reached by next_seq; the daemon does not send them to us.
        self._own: set[int] = set()
        #: The highest sequence number in an emit reply: our emits still
        #: unanswered get higher ones (the daemon serves us in order).
        self._own_horizon = 0
        self._replay_inflight = False
        self._last_time = time.time()
        self.strict = strict
        #: ``"new"``, then ``"waiting"``/``"joined"``, ``"closed"``.
        self.state = "new"
        self._state_lock = threading.Lock()
        self._announce = False  # set when start() returns
        #: When the SUB socket last brought anything (I/O thread).
        self._last_heard = 0.0
        self._last_beat = 0.0
        self._beat_gap = 0.0

    # -- public API ------------------------------------------------------------

    @property
    def joined(self) -> bool:
        """Whether the bridge is on the bus now (``state == "joined"``)."""
        return self.state == "joined"

    def start(self) -> BusBridge:
        """Connect, wait until the subscription is live, then join the manager.

        When a daemon runs, returns only when events published from now on
        will be received.  When none does (its socket is absent or refuses
        connections: known at once), or none answered within ``timeout``,
        a bridge that is not ``strict`` returns in state ``"waiting"`` and
        joins when the daemon comes (a ``BusStateEvent`` says so).

        Raises
        ------
        DaemonUnavailableError
            With ``strict``, if no daemon answered within ``timeout`` (the
            bridge is closed); in any mode if the bridge's sockets cannot
            be made.
        RuntimeError
            If the bridge was already started or closed.
        """
        with self._lock:
            if self._started or self._closed:
                raise RuntimeError("a BusBridge can be started only once")
            self._started = True
        self.state = "waiting"
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name="encore-bus-dispatch", daemon=True
        )
        self._io = threading.Thread(
            target=self._io_loop, name="encore-bus-io", daemon=True
        )
        self._dispatcher.start()
        self._io.start()
        wait = self.timeout
        if not self.strict and no_daemon_reason(self.endpoints) is not None:
            wait = 0.0  # certainly no daemon: do not hold the application up
        ready = self._ready.wait(wait)
        if not ready and not self.strict and self._start_error is None:
            logger.info(
                "no encored on %s yet; the bus is joined when it starts",
                self.endpoints.runtime_dir,
            )
        elif not ready or self._start_error is not None:
            error = self._start_error
            self.close()
            if error is not None:
                raise DaemonUnavailableError(f"cannot join the bus: {error}") from error
            raise DaemonUnavailableError(
                f"no encored answered within {self.timeout:g} s on "
                f"{self.endpoints.requests} "
                "(is the daemon running? try `encore status`)"
            )
        self.event_manager.connect(
            BaseEvent, self._on_local_event, priority=BRIDGE_PRIORITY
        )
        with self._state_lock:
            # From here on each change is news; one made before is already
            # in ``state`` for the caller to read.
            self._announce = True
        return self

    def _set_state(self, state: str) -> None:
        """Change :attr:`state` (I/O thread); announce it once started."""
        with self._state_lock:
            if state == self.state or self.state == "closed":
                return
            self.state = state
            announce = self._announce
        if state == "joined":
            logger.info("joined the bus of encored %s", self.instance_id)
        else:
            logger.warning(
                "encored on %s stopped answering; waiting for it",
                self.endpoints.runtime_dir,
            )
        if announce:
            self._enqueue(
                BusStateEvent(
                    state=state,
                    instance=self.instance_id,
                    runtime_dir=str(self.endpoints.runtime_dir),
                )
            )

    def _check_silence(self, now: float) -> None:
        """Call the daemon gone when its heartbeats stopped (I/O thread)."""
        # Four heartbeats missed; before two were seen, a generous guess.
        limit = max(4 * self._beat_gap, 0.5) if self._beat_gap else 5.0
        if now - self._last_heard > limit:
            self._set_state("waiting")

    def close(self, flush_timeout: float | None = None) -> None:
        """Leave the bus: stop sending, flush what was emitted, stop threads.

        Events emitted before ``close`` are sent and acknowledged first, for
        at most ``flush_timeout`` seconds (default: ``timeout``); events
        still unacknowledged then are dropped and logged.  Received events
        not yet dispatched are dropped.  Calling it again does nothing.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with self._state_lock:
            self.state = "closed"
        with self._room:
            self._room.notify_all()  # emitters waiting for room: stop waiting
        try:
            self.event_manager.disconnect(BaseEvent, self._on_local_event)
        except KeyError:
            pass  # never connected: start() failed
        if self._io is not None and self._io.is_alive():
            if self._ready.is_set():
                self._flush_requested = True
                self._wake()
                self._io.join(self.timeout if flush_timeout is None else flush_timeout)
            self._stopping = True
            self._wake()
            self._io.join()
        self._stopping = True
        with self._inbox_cv:
            self._inbox_cv.notify_all()
        if (
            self._dispatcher is not None
            and self._dispatcher is not threading.current_thread()
        ):
            self._dispatcher.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> BusBridge:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------

    def _on_local_event(self, event: BaseEvent) -> None:
        """Listener on the local manager: send local events to the daemon."""
        if _BUS_INFO_ATTR in event.__dict__ or getattr(
            event, "_encore_local_only", False
        ):
            return  # it came from the bus, or it is about the bus itself
        source = getattr(event, "source", None)
        header = _codec.encode_header(
            self.registry.wire_head(type(event)),
            None if source is None else _codec.encode_source(source),
            time.time(),
        )
        attributes = _codec.encode_attributes(event)
        if len(self._outbox) >= self.max_outbox:
            self._make_room()
        self._outbox.append((header, attributes))
        if not self._wake_pending:
            # One wake-up per batch, not per event: the I/O thread clears
            # the flag after emptying the pipe and before emptying the
            # outbox, so no event waits for a poll timeout.
            self._wake_pending = True
            self._wake()

    def _make_room(self) -> None:
        """Wait for room in a full outbox; drop its oldest event if none comes.

        Flow control, not loss: an emitter faster than the bus waits while
        the daemon keeps answering (its acknowledgements make the room).
        Only when the daemon has answered nothing for a retry interval are
        the newest events kept and the oldest dropped, counted and logged.
        """
        with self._room:
            self._room_waiters += 1
            try:
                while len(self._outbox) >= self.max_outbox and not self._closed:
                    if time.monotonic() - self._last_reply >= self._retry_interval:
                        break  # the daemon is away: do not hang the emitter
                    self._room.wait(self._retry_interval)
            finally:
                self._room_waiters -= 1
        if len(self._outbox) >= self.max_outbox:
            self._outbox.popleft()
            self.stats["dropped"] += 1
            if self.stats["dropped"] == 1 or not self.stats["dropped"] % 10000:
                logger.error(
                    "encored is not taking events; %d dropped so far",
                    self.stats["dropped"],
                )

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # full pipe: the I/O thread is awake; closed: shutting down

    # -- I/O thread --------------------------------------------------------------

    def _new_dealer(self) -> None:
        assert self._context is not None
        if self._dealer is not None:
            self._poller.unregister(self._dealer)
            self._dealer.close(linger=0)
        dealer = self._context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.SNDHWM, 4 * _EMIT_WINDOW)
        apply_curve(dealer, self.endpoints)  # tcp:// to a remote daemon only
        dealer.connect(self.endpoints.requests)
        self._dealer = dealer
        self._poller.register(dealer, zmq.POLLIN)
        # Everything unanswered goes again, in its original order.
        self._unsent = collections.deque(self._pending)

    def _send(
        self,
        kind: str,
        op: str,
        args: dict[str, Any],
        frames: tuple[bytes, ...] | list[bytes] = (),
        **extra: Any,
    ) -> None:
        request_id = next(self._ids)
        message = [build_request(self.client_id, request_id, op, args), *frames]
        self._pending[request_id] = _Pending(
            kind, message, time.monotonic() + self._retry_interval, extra=extra
        )
        if kind == "emit":
            self._emits_inflight += extra["count"]
        self._unsent.append(request_id)
        self._flush_unsent()

    def _flush_unsent(self) -> bool:
        """Send queued requests in order; False if the socket is full."""
        assert self._dealer is not None
        while self._unsent:
            pending = self._pending.get(self._unsent[0])
            if pending is not None:
                try:
                    send_frames(self._dealer, pending.frames, _NOBLOCK)
                except zmq.Again:
                    return False  # no room (no daemon yet): keep the order
            self._unsent.popleft()
        return True

    def _forget(self, request_id: int) -> _Pending | None:
        pending = self._pending.pop(request_id, None)
        if pending is not None and pending.kind == "emit":
            self._emits_inflight -= pending.extra["count"]
        return pending

    def _io_loop(self) -> None:
        try:
            self._context = zmq.Context()
            self._poller = zmq.Poller()
            sub = self._context.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.RCVHWM, self.receive_hwm)
            # Every event but our own (we learn their sequence numbers from
            # the emit replies), then the control topics: subscriptions
            # take effect in order, so once our probe arrives all are live.
            for prefix in subscriptions_without(origin_tag(self.client_id)):
                sub.setsockopt(zmq.SUBSCRIBE, prefix)
            sub.setsockopt(zmq.SUBSCRIBE, TOPIC_CONTROL)
            apply_curve(sub, self.endpoints)  # tcp:// to a remote daemon only
            sub.connect(self.endpoints.events)
            self._sub = sub
            self._new_dealer()
            self._poller.register(self._wake_r, zmq.POLLIN)
            self._io_run()
        except Exception as exc:  # pragma: no cover - reported to start()
            logger.exception("bus bridge I/O thread failed")
            self._start_error = exc
            self._ready.set()
        finally:
            for sock in (self._sub, self._dealer):
                if sock is not None:
                    sock.close(linger=0)
            if self._context is not None:
                self._context.term()

    def _io_run(self) -> None:
        sub = self._sub
        assert sub is not None
        self._send("hello", OP_HELLO, {"name": self.name, "pid": os.getpid()})
        next_probe = 0.0
        sub_registered = False
        while not self._stopping:
            now = time.monotonic()
            if not self._ready.is_set() and now >= next_probe:
                # Until a probe of ours comes back on the SUB socket the
                # subscription may not be live (ZeroMQ's slow joiner).
                self._send("probe", OP_PROBE, {"token": self._probe_token})
                next_probe = now + 0.05
            want_sub = self._queued() < self.max_queue
            if want_sub != sub_registered:
                if want_sub:
                    self._poller.register(sub, zmq.POLLIN)
                else:
                    self._poller.unregister(sub)
                sub_registered = want_sub
            self._maybe_request_replay()
            if self._flush_requested and not self._outbox and not self._emits_inflight:
                return
            timeout = 100 if want_sub else 10
            # Last before waiting: the dispatch thread, woken here, wants
            # the interpreter lock, which this thread gives up in poll.
            self._hand_over()
            events = dict(self._poller.poll(timeout))
            if self._wake_r in events:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                # Only after the pipe is empty: an emitter that sees False
                # now writes a byte that stays for the next poll, and one
                # that saw True appended before this, so the outbox drain
                # below takes its event.
                self._wake_pending = False
            if sub in events:
                self._last_heard = now
                if self.state == "waiting" and self._ready.is_set():
                    self._set_state("joined")  # the daemon is back
                for _ in range(1000):
                    try:
                        frames = recv_frames(sub, _NOBLOCK)
                    except zmq.Again:
                        break
                    self._on_sub(frames)
                    if self._queued() >= self.max_queue:
                        break
            if self._dealer in events:
                while True:
                    try:
                        frames = recv_frames(self._dealer, _NOBLOCK)
                    except zmq.Again:
                        break
                    self._on_reply(frames)
            # After the replies: the acknowledgements just read may have
            # opened the window, and nothing else would wake the loop to
            # send what waits (its emitters may be waiting for room).
            if self._flush_unsent() and self._outbox and self._ready.is_set():
                self._send_outbox()
            self._check_deadlines()
            if want_sub and self.state == "joined":
                self._check_silence(time.monotonic())

    def _send_outbox(self) -> None:
        outbox = self._outbox
        while outbox and self._emits_inflight < _EMIT_WINDOW and not self._unsent:
            # Whatever has queued up goes in one request (up to a batch):
            # under load this divides the per-request cost; under light
            # load batches are of one event and add no delay.
            frames: list[bytes] = []
            size = 0
            while outbox and len(frames) < 2 * _EMIT_BATCH and size < _BATCH_BYTES:
                header, attributes = outbox.popleft()
                frames.append(header)
                frames.append(attributes)
                size += len(header) + len(attributes)
            count = len(frames) // 2
            self.stats["sent"] += count
            if self._room_waiters:
                with self._room:
                    self._room.notify_all()
            self._send(
                "emit",
                OP_EMIT,
                {},
                [_codec.pack_events(frames)],
                first_sent=time.monotonic(),
                count=count,
            )

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        expired = [rid for rid, p in self._pending.items() if p.deadline <= now]
        if not expired:
            return
        if now - self._last_reply < self._retry_interval:
            # The daemon answers, just not these yet (a long queue): wait on.
            for rid in expired:
                self._pending[rid].deadline = now + self._retry_interval
            return
        for rid in expired:
            pending = self._pending[rid]
            if pending.kind == "probe" or pending.kind == "hello":
                self._forget(rid)  # probes are re-sent by the loop
                continue
            give_up = (
                pending.kind == "emit"
                and now - pending.extra["first_sent"] >= self.timeout
            ) or (pending.kind == "replay" and pending.attempts >= 3)
            if give_up:
                self._forget(rid)
                if pending.kind == "emit":
                    self.stats["dropped"] += pending.extra["count"]
                    logger.error(
                        "%d event(s) not acknowledged by encored within %g s; dropped",
                        pending.extra["count"],
                        self.timeout,
                    )
                else:
                    self._replay_inflight = False
                    self._declare_lost(self._next_seq, self._gap_end())
                continue
            pending.attempts += 1
            pending.deadline = now + self._retry_interval
        # No reply at all for a while usually means a dead pipe (daemon
        # restarted): resend on a fresh socket.  Same request ids, so the
        # daemon applies each request once.
        self._new_dealer()
        self._flush_unsent()

    # Receiving ------------------------------------------------------------------

    def _on_sub(self, frames: list[bytes]) -> None:
        try:
            topic = frames[0]
            if topic.startswith(TOPIC_EVENT):
                if len(frames) != 2:
                    raise ProtocolError("bad event message")
                # One message carries one or more events (header and
                # attributes each).  Only the binary prefix is read here;
                # the header map is decoded by the dispatch thread, and
                # never for our own events.
                parts = _codec.unpack_events(frames[1])
                for i in range(0, len(parts), 2):
                    header = parts[i]
                    seq, stamp, instance, origin = _codec.parse_prefix(header)
                    if instance != self._instance_raw and not self._track_instance(
                        instance.hex()
                    ):
                        return
                    self.stats["received"] += 1
                    if seq > self._want_until:
                        self._want_until = seq
                    if seq == self._next_seq:
                        self._deliver(seq, stamp, header, origin, parts[i + 1], False)
                        if self._held or self._own:
                            self._drain_held()
                    elif seq > self._next_seq:
                        self._held[seq] = (seq, stamp, header, origin, parts[i + 1])
                    # seq < next: already delivered (replayed before it came)
            elif topic == TOPIC_HEARTBEAT:
                now = time.monotonic()
                if self._last_beat:
                    self._beat_gap = now - self._last_beat
                self._last_beat = now
                beat = parse_beacon(topic, frames[1])
                if self._track_instance(beat.instance):
                    self._want_until = max(self._want_until, beat.last_seq)
            elif topic == TOPIC_PROBE:
                probe = parse_beacon(topic, frames[1])
                if not self._ready.is_set() and probe.token == self._probe_token:
                    self._set_instance(probe.instance)
                    self._next_seq = probe.last_seq + 1
                    self._want_until = self._next_seq - 1
                    # The daemon answered (its reply to the probe may come
                    # later, on the other socket).
                    self._last_reply = self._last_heard = time.monotonic()
                    self._set_state("joined")  # before start() wakes
                    self._ready.set()
        except (
            ProtocolError,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            IndexError,
        ) as exc:
            logger.warning(
                "ignoring a malformed message from the event socket: %s", exc
            )

    def _set_instance(self, instance: str) -> None:
        self._instance_raw = bytes.fromhex(instance)
        self.instance_id = instance

    def _track_instance(self, instance: object) -> bool:
        """Follow the daemon's instance id; False means ignore the message."""
        if not self._ready.is_set() or not isinstance(instance, str):
            return False
        if instance == self.instance_id:
            return True
        if instance in self._old_instances:
            return False  # a straggler from a daemon that is gone
        logger.info("encored restarted (instance %s -> %s)", self.instance_id, instance)
        if self._next_seq <= self._want_until:
            # Events of the old daemon we never got: nobody can replay them.
            self._declare_lost(
                self._next_seq,
                self._want_until,
                count=self._missing(self._next_seq, self._want_until + 1),
            )
        if self.instance_id is not None:
            self._old_instances.add(self.instance_id)
        self._set_instance(instance)
        self._next_seq = 1
        self._want_until = 0
        self._held.clear()
        self._own.clear()
        self._own_horizon = 0
        self._replay_inflight = False
        for rid in [r for r, p in self._pending.items() if p.kind == "replay"]:
            self._forget(rid)
        # Resend unacknowledged emits to the new daemon now, not at timeout.
        for pending in self._pending.values():
            pending.deadline = 0.0
        self._last_reply = 0.0
        self.stats["restarts"] += 1
        return True

    def _gap_end(self) -> int:
        return self._want_until

    def _maybe_request_replay(self) -> None:
        if (
            self._replay_inflight
            or not self._ready.is_set()
            or self._next_seq > self._want_until
            or self._queued() >= self.max_queue
        ):
            return
        # A gap: events between next_seq and want_until were published but
        # have not arrived in order.  Fetch them from the replay buffer.
        if self._held or self._own:
            last = (
                min(
                    min(self._held, default=self._want_until + 1),
                    min(self._own, default=self._want_until + 1),
                )
                - 1
            )
            if last < self._next_seq:
                self._drain_held()
                return
        else:
            last = self._want_until
        if self._emits_inflight and self._next_seq > self._own_horizon:
            # The missing event may be one of ours whose reply is on its
            # way (replies and published events travel on different
            # sockets): wait for it.  Replies come in the order the daemon
            # served our requests, so a number at or below the horizon that
            # is still missing is not ours.
            return
        self._replay_inflight = True
        self._send(
            "replay",
            OP_REPLAY,
            {"first": self._next_seq, "last": last, "limit": _REPLAY_LIMIT},
        )

    def _drain_held(self) -> None:
        held, own = self._held, self._own
        while True:
            seq = self._next_seq
            if seq in held:
                self._deliver(*held.pop(seq), False)
            elif seq in own:
                own.discard(seq)
                self._next_seq = seq + 1
                self.stats["received"] += 1
            else:
                break
        if own and min(own) < self._next_seq:
            # Passed by a replay or a loss report: forget them.
            self._own = {seq for seq in own if seq >= self._next_seq}

    def _missing(self, first: int, stop: int) -> int:
        """How many numbers in ``range(first, stop)`` are neither held nor ours."""
        return sum(
            1
            for seq in range(first, stop)
            if seq not in self._held and seq not in self._own
        )

    def _on_own_seqs(self, result: Any) -> None:
        """Account for our own events, numbered in an emit reply."""
        if not isinstance(result, dict) or result.get("instance") != self.instance_id:
            # Numbered by a daemon we do not follow (yet): if they matter,
            # they show up as a gap and are fetched like any other.
            return
        seqs = [s for s in result.get("seqs", ()) if type(s) is int]
        if not seqs:
            return
        top = max(seqs)
        if top > self._own_horizon:
            self._own_horizon = top
        if top > self._want_until:
            self._want_until = top
        first = self._next_seq
        self._own.update(s for s in seqs if s >= first)
        self._drain_held()

    def _on_reply(self, frames: list[bytes]) -> None:
        try:
            request_id, outcome = parse_reply(frames)
        except ProtocolError as exc:
            logger.warning("ignoring a malformed reply from encored: %s", exc)
            return
        self._last_reply = time.monotonic()
        pending = self._forget(request_id)
        if pending is None:
            return  # a late duplicate of something already answered
        if isinstance(outcome, Exception):
            if pending.kind == "emit" and pending.extra["count"] > 1:
                # One bad event fails its whole batch: send them one by one
                # so that only the bad one is refused.
                parts = _codec.unpack_events(pending.frames[1])
                for i in range(0, len(parts), 2):
                    self._send(
                        "emit",
                        OP_EMIT,
                        {},
                        [_codec.pack_events(parts[i : i + 2])],
                        first_sent=pending.extra["first_sent"],
                        count=1,
                    )
            elif pending.kind == "emit":
                self.stats["rejected"] += 1
                logger.error("encored rejected an event: %s", outcome)
            elif pending.kind == "replay":
                self._replay_inflight = False
                logger.error("replay failed: %s", outcome)
                self._declare_lost(self._next_seq, self._gap_end())
            else:
                logger.warning("%s failed: %s", pending.kind, outcome)
            return
        if pending.kind == "emit":
            self.stats["acknowledged"] += pending.extra["count"]
            self._on_own_seqs(outcome.result)
        elif pending.kind == "replay":
            self._replay_inflight = False
            self._on_replay(outcome.result, outcome.frames)

    def _on_replay(self, result: Any, frames: list[bytes]) -> None:
        if not isinstance(result, dict) or result.get("instance") != self.instance_id:
            return  # an answer from a daemon we no longer follow
        first_available = int(result["first_available"])
        if first_available > self._next_seq:
            lost_first = self._next_seq
            lost = self._missing(self._next_seq, first_available)
            if lost:
                self._declare_lost(lost_first, first_available - 1, count=lost)
            for seq in range(lost_first, first_available):
                item = self._held.pop(seq, None)
                if item is not None:
                    self._deliver(*item, False)
            self._next_seq = max(self._next_seq, first_available)
        for i in range(0, len(frames) - 1, 2):
            try:
                seq, stamp, _instance, origin = _codec.parse_prefix(frames[i])
            except ProtocolError as exc:
                logger.warning("ignoring a malformed replayed event: %s", exc)
                continue
            if seq == self._next_seq:
                self._held.pop(seq, None)
                self.stats["replayed"] += 1
                self._deliver(seq, stamp, frames[i], origin, frames[i + 1], True)
        self._drain_held()

    def _declare_lost(self, first: int, last: int, count: int | None = None) -> None:
        if last < first:
            return
        count = last - first + 1 if count is None else count
        self.stats["lost"] += count
        logger.warning(
            "%d events lost (%d-%d) from encored %s",
            count,
            first,
            last,
            self.instance_id,
        )
        event = EventsLostEvent(
            count=count,
            first_seq=first,
            last_seq=last,
            since=self._last_time,
            instance=self.instance_id,
        )
        self._next_seq = max(self._next_seq, last + 1)
        self._enqueue(event)

    def _deliver(
        self,
        seq: int,
        stamp: float,
        header: bytes,
        origin: bytes,
        attributes: bytes,
        replayed: bool,
    ) -> None:
        self._next_seq = seq + 1
        self._last_time = stamp
        if origin == self._origin:
            return  # our own event: it was dispatched here when emitted
        self._staged.append((header, attributes, replayed))

    def _enqueue(self, item: Any) -> None:
        # Staged here and handed over once per loop turn: one lock round
        # trip per batch of received events instead of one per event.
        self._staged.append(item)

    def _hand_over(self) -> None:
        if not self._staged:
            return
        with self._inbox_cv:
            was_empty = not self._inbox
            self._inbox.extend(self._staged)
            if was_empty:
                self._inbox_cv.notify()
        self._staged.clear()

    def _queued(self) -> int:
        return len(self._inbox) + len(self._staged)

    # -- dispatch thread ---------------------------------------------------------

    def _build(self, frame: bytes, attributes: bytes, replayed: bool) -> BaseEvent:
        seq, stamp, instance, origin, name, bases, source = _codec.decode_event_header(
            frame
        )
        cls = self.registry.resolve(name, bases)
        attrs = _codec.decode_attributes(attributes, cls)
        event = cls.__new__(cls)
        # Rebuild like unpickling does: the base initialiser for the
        # bookkeeping, then the attributes; the class's own __init__ (with
        # its own signature) is not run again.
        BaseEvent.__init__(
            event, source=None if source is None else _codec.decode_source(source)
        )
        state = event.__dict__
        state.update(attrs)
        state[_BUS_INFO_ATTR] = BusInfo(seq, instance, stamp, origin, replayed)
        return event

    def _dispatch_loop(self) -> None:
        emit = self.event_manager.emit
        inbox = self._inbox
        while True:
            with self._inbox_cv:
                while not inbox and not self._stopping:
                    self._inbox_cv.wait()
                if self._stopping:
                    return
                was_full = len(inbox) >= self.max_queue
                batch = list(inbox)
                inbox.clear()
            if was_full:
                self._wake()  # let the I/O thread read again
            for item in batch:
                if self._stopping:
                    return
                try:
                    if isinstance(item, BaseEvent):
                        event = item
                        event.__dict__[_BUS_INFO_ATTR] = None  # local: never sent
                    else:
                        event = self._build(*item)
                except (ProtocolError, KeyError, TypeError, ValueError) as exc:
                    logger.warning("dropping an event that cannot be rebuilt: %s", exc)
                    continue
                self.stats["delivered"] += 1
                try:
                    emit(event)
                except Exception:  # the manager logs listener errors itself
                    logger.exception("emitting a bus event failed")
