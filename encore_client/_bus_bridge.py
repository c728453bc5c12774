"""BusBridge: make a local EventManager part of the daemon's shared bus.

Protocol 4 keeps the daemon's Python off each event's way (see
``docs/protocol.md``).  Per bridge:

* an event emitted locally (on any thread) is encoded, numbered under the
  bridge's *epoch* (a random id; 1, 2, 3, ...) and pushed to the daemon
  **on the emitting thread**.  The daemon forwards it inside libzmq.  A
  full socket makes the emitter wait (flow control); a daemon that takes
  nothing makes the bridge keep its newest ``max_outbox`` events to send
  when one is back, the older ones dropped, counted and logged.  Events
  the daemon has not confirmed seeing are sent again to a restarted one.
* the **dispatch thread** reads the SUB socket itself, puts each epoch's
  events in order (``wire.sequence``), rebuilds them and emits them on
  the local manager.  A listener slower than the bus lets libzmq's queue
  fill; what overflows it is a sequence gap, fetched again from the
  daemon's replay buffer, or reported as an ``EventsLostEvent``.
* the **I/O thread** owns the request socket: it introduces the bridge
  (``hello``), proves the subscription live (``probe``), asks how far the
  daemon has seen our events (``sync``, which also tells a daemon gone or
  restarted), and fetches replays for the dispatch thread.
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
from ._transport import new_client_id, recv_frames, send_frames
from .wire.beacons import parse_beacon, parse_epochs
from .wire.envelope import build_request, parse_reply
from .wire.errors import DaemonUnavailableError, ProtocolError
from .wire.operations import OP_HELLO, OP_PROBE, OP_REPLAY, OP_SYNC
from .wire.sequence import Lost, SequenceTracker
from .wire.topics import (
    TOPIC_CONTROL,
    TOPIC_EVENT,
    TOPIC_HEARTBEAT,
    TOPIC_PROBE,
    event_topic,
    origin_tag,
    subscriptions_without,
)

logger = logging.getLogger(__name__)

#: The bridge's listener sees every event before any ordinary listener, so
#: that a local ``mark_as_handled`` cannot keep an event off the bus
#: (handling is per process).
BRIDGE_PRIORITY = 2**62
_REPLAY_LIMIT = 1000
_NOBLOCK = int(zmq.NOBLOCK)
#: How often the I/O thread asks how far the daemon has seen our events
#: while some are unconfirmed (otherwise once a heartbeat interval).
_SYNC_BUSY = 0.1
#: How long a gap the daemon's buffer cannot fill is asked for again before
#: its events are declared lost (an emitter's resend after a restart).
_LOSS_GRACE = 2.0


class _Wakeup:
    """A pipe that wakes a thread polling it (any thread may wake it)."""

    def __init__(self) -> None:
        self.fd, self._w = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._w, False)

    def wake(self) -> None:
        try:
            os.write(self._w, b"\0")
        except (BlockingIOError, OSError):
            pass  # full pipe: the thread is awake; closed: shutting down

    def drain(self) -> None:
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)
        os.close(self._w)


@dataclass
class _Pending:
    """A request sent on the I/O thread and not answered yet."""

    kind: str
    frames: list[bytes]
    deadline: float
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class _Entry:
    """An emitted event kept until the daemon confirms it saw it."""

    __slots__ = ("seq", "topic", "stamp", "header", "attributes", "message")

    def __init__(self, topic: bytes, stamp: float, header: bytes, attrs: bytes) -> None:
        self.seq = 0  # 0: not sent yet
        self.topic = topic
        self.stamp = stamp
        self.header = header
        self.attributes = attrs
        self.message: list[bytes] = []


class BusBridge:
    """Joins an ``EventManager`` to the bus of a running ``encored``.

    Every event emitted on the manager (except those about the bus itself)
    is sent to the daemon, which publishes it to all other clients; every
    event they publish is re-emitted on this manager by the bridge's
    dispatch thread, rebuilt as its own class when this process has it
    (imported, or defined under a name the bridge can find) and otherwise
    as a :class:`~encore_client.RemoteEvent` subclass that also derives
    from the nearest known base.  A process never receives its own events
    back.  Each received event carries a :class:`~encore_client.BusInfo`
    (see :func:`~encore_client.bus_info`).  The bridge fetches events it
    missed (sequence gaps) from the daemon, and emits
    :class:`~encore_client.EventsLostEvent` when they are gone.

    Parameters
    ----------
    event_manager : EventManager, optional
        The manager to join (default: the process-wide one).
    runtime_dir : path, optional
        Where the daemon's sockets are (default: the usual rule,
        ``ENCORE_RUNTIME_DIR`` first).
    timeout : float
        How long :meth:`start` waits for the daemon, and how long
        :meth:`close` waits for the daemon to confirm the events sent.
    max_queue : int
        Most received events held behind sequence gaps waiting for a
        replay; later ones are not kept but fetched by the replay too.
    receive_hwm : int
        ZeroMQ high-water mark of the SUB socket, in messages: how far a
        slow listener may fall behind before events overflow into gaps.
    max_outbox : int
        Emitted events kept for a daemon that takes nothing (away, or
        restarting) and sent ones kept until it confirms them; beyond it
        the oldest unsent are dropped, counted and logged.
    name : str, optional
        A name for this client in the daemon's log.
    strict : bool
        What :meth:`start` does when no daemon answers.  ``False`` (the
        default, for applications started in any order, as desktop
        sessions start them): return anyway and join the bus when a daemon
        comes; events emitted meanwhile are kept (``max_outbox``).
        ``True``: raise ``DaemonUnavailableError`` (command-line tools).

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
        self.strict = strict
        self.registry = _codec.ClassRegistry(event_manager)
        #: Counters, for tools and tests: events sent, acknowledged (the
        #: daemon saw them), dropped (never sent: no daemon took them),
        #: resent (to a restarted daemon); received (from the bus, for
        #: us), delivered, replayed, duplicates, lost; restarts.
        self.stats: collections.Counter[str] = collections.Counter()
        #: The random id this bridge numbers its events under.
        self.epoch = os.urandom(16)
        #: Id of the daemon instance joined (the last one, while waiting).
        self.instance_id: str | None = None
        #: ``"new"``, then ``"waiting"``/``"joined"``, ``"closed"``.
        self.state = "new"
        self._origin = self.client_id.encode()
        self._tag = origin_tag(self.client_id)
        #: Topic of this bridge's events, by class (built once per class).
        self._topics: dict[type, bytes] = {}
        self._retry_interval = min(1.0, timeout / 3)
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._announce = False
        self._started = False
        self._closed = False
        self._start_error: BaseException | None = None
        self._ready = threading.Event()
        self._stopping = False
        # -- sending (emitting threads, under _send_lock) --
        self._send_lock = threading.Lock()
        self._ring: collections.deque[_Entry] = collections.deque()
        self._seq = 0
        #: The highest of our numbers the daemon said it has seen.
        self._confirmed = 0
        #: True while no daemon takes events: they are kept, not sent.
        self._away = True
        self._context: zmq.Context | None = None
        self._push: zmq.Socket | None = None
        self._push_poller: zmq.Poller | None = None
        # -- I/O thread --
        self._io: threading.Thread | None = None
        self._io_wake = _Wakeup()
        self._io_requests: collections.deque[tuple[Any, ...]] = collections.deque()
        self._dealer: zmq.Socket | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._flush_requested = False
        self._flushed = threading.Event()
        self._probe_token = os.urandom(8).hex()
        self._beat_interval = 1.0
        self._last_reply = 0.0
        # -- dispatch thread --
        self._dispatcher: threading.Thread | None = None
        self._dispatch_wake = _Wakeup()
        self._inbox: collections.deque[Any] = collections.deque()
        self._tracker: SequenceTracker[tuple[bytes, bytes, bool]] = SequenceTracker(
            max_held=max_queue
        )
        self._replaying: set[bytes] = set()
        #: Per epoch: the first missing number a replay came back without,
        #: and when (see _on_replay); when to ask again.
        self._misses: dict[bytes, tuple[int, float]] = {}
        self._not_before: dict[bytes, float] = {}
        self._settling: list[tuple[list[tuple[bytes, int]], threading.Event]] = []
        self._last_time = time.time()

    @property
    def joined(self) -> bool:
        """Whether the bridge is on the bus now (``state == "joined"``)."""
        return self.state == "joined"

    # -- life cycle ---------------------------------------------------------------

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
        try:
            self._context = zmq.Context()
            push = self._context.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            apply_curve(push, self.endpoints)  # tcp:// to a remote daemon only
            if self.endpoints.events_in:
                push.connect(self.endpoints.events_in)
            self._push = push
            self._push_poller = zmq.Poller()
            self._push_poller.register(push, zmq.POLLOUT)
        except zmq.ZMQError as exc:
            self.close()
            raise DaemonUnavailableError(f"cannot join the bus: {exc}") from exc
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

    def close(self, flush_timeout: float | None = None) -> None:
        """Leave the bus: stop sending, flush what was emitted, stop threads.

        Waits until the daemon has seen the events emitted before
        ``close``, for at most ``flush_timeout`` seconds (default:
        ``timeout``).  Received events not yet dispatched are dropped.
        Calling it again does nothing.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.event_manager.disconnect(BaseEvent, self._on_local_event)
        except KeyError:
            pass  # never connected: start() failed
        if self._io is not None and self._io.is_alive():
            if self._ready.is_set() and self.state == "joined":
                self._flush_requested = True
                self._io_wake.wake()
                self._flushed.wait(
                    self.timeout if flush_timeout is None else flush_timeout
                )
        with self._state_lock:
            self.state = "closed"
        self._stopping = True
        self._io_wake.wake()
        self._dispatch_wake.wake()
        for thread in (self._io, self._dispatcher):
            if thread is not None and thread is not threading.current_thread():
                thread.join()
        with self._send_lock:
            if self._push is not None:
                self._push.close(linger=0)
                self._push = None
        if self._context is not None:
            self._context.term()
            self._context = None
        self._io_wake.close()
        self._dispatch_wake.close()

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the events the daemon had seen when called are dispatched.

        For tests and tools that must see the effect of what other
        processes did before going on.  Raises ``TimeoutError`` after
        ``timeout`` seconds; ``DaemonUnavailableError`` if no daemon answers.
        """
        from ._transport import ZmqTransport

        with ZmqTransport(self.endpoints, timeout=timeout) as transport:
            table = parse_epochs(transport.request(OP_HELLO).result.get("epochs"))
        done = threading.Event()
        self._post(("settle", table, done))
        if not done.wait(timeout):
            raise TimeoutError(f"the bus did not settle within {timeout:g} s")

    def __enter__(self) -> BusBridge:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _set_state(self, state: str) -> None:
        """Change :attr:`state`; announce it once started (any thread)."""
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
            self._post(
                BusStateEvent(
                    state=state,
                    instance=self.instance_id,
                    runtime_dir=str(self.endpoints.runtime_dir),
                )
            )

    # -- sending (the emitting thread) ---------------------------------------------

    def _on_local_event(self, event: BaseEvent) -> None:
        """Listener on the local manager: send local events to the daemon."""
        if _BUS_INFO_ATTR in event.__dict__ or getattr(
            event, "_encore_local_only", False
        ):
            return  # it came from the bus, or it is about the bus itself
        cls = type(event)
        source = getattr(event, "source", None)
        stamp = time.time()
        header = _codec.encode_header(
            self.registry.wire_head(cls),
            None if source is None else _codec.encode_source(source),
            stamp,
        )
        topic = self._topics.get(cls)
        if topic is None:
            if len(self._topics) > 4096:
                self._topics.clear()
            topic = event_topic(self._tag, self.registry.wire_names(cls)[0])
            self._topics[cls] = topic
        entry = _Entry(
            topic,
            stamp,
            header,
            _codec.encode_attributes(event),
        )
        with self._send_lock:
            if self._push is None:
                return  # closed meanwhile
            ring = self._ring
            ring.append(entry)
            if not self._away:
                self._push_entry(entry)
            if len(ring) > self.max_outbox:
                self._trim()

    def _push_entry(self, entry: _Entry) -> None:
        """Number ``entry`` and push it (``_send_lock`` held).

        A full socket means the daemon does not keep up: wait for room
        (flow control).  No room within a retry interval means the daemon
        takes nothing: the bridge is away, and keeps the entry unsent.
        """
        seq = self._seq + 1
        frame = _codec.event_frame(
            seq, entry.stamp, self.epoch, self._origin, entry.header
        )
        message = [entry.topic, _codec.pack_events([frame, entry.attributes])]
        push = self._push
        assert push is not None and self._push_poller is not None
        try:
            send_frames(push, message, _NOBLOCK)
        except zmq.Again:
            if not self._push_poller.poll(self._retry_interval * 1000):
                self._away = True
                self._io_wake.wake()  # the I/O thread checks on the daemon
                return
            send_frames(push, message)
        entry.seq = self._seq = seq
        entry.message = message
        self.stats["sent"] += 1

    def _trim(self) -> None:
        """Keep at most ``max_outbox`` entries (``_send_lock`` held)."""
        ring = self._ring
        while len(ring) > self.max_outbox:
            old = ring.popleft()
            if old.seq:
                continue  # sent: only its resending to a new daemon is lost
            self.stats["dropped"] += 1
            if self.stats["dropped"] == 1 or not self.stats["dropped"] % 10000:
                logger.error(
                    "encored is not taking events; %d dropped so far",
                    self.stats["dropped"],
                )

    def _confirm(self, last_seq: int) -> None:
        """The daemon saw our events up to ``last_seq`` (I/O thread)."""
        with self._send_lock:
            if last_seq > self._seq:
                return  # a number from before a restart of this process?
            if last_seq > self._confirmed:
                self.stats["acknowledged"] += last_seq - self._confirmed
                self._confirmed = last_seq
            ring = self._ring
            while ring and ring[0].seq and ring[0].seq <= last_seq:
                ring.popleft()

    def _resume(self, restarted: bool) -> None:
        """A daemon takes events again: send what waited (I/O thread).

        After a restart, events sent to the old daemon that it never
        confirmed go again (the receivers drop any they already have).
        """
        with self._send_lock:
            self._away = False
            if self._push is None:
                return
            for entry in list(self._ring):
                if self._away:
                    break  # the daemon is gone again
                if not entry.seq:
                    self._push_entry(entry)
                elif restarted and entry.seq > self._confirmed:
                    try:
                        send_frames(self._push, entry.message, _NOBLOCK)
                        self.stats["resent"] += 1
                    except zmq.Again:
                        break  # no room: the daemon is slow; the rest waits
            if len(self._ring) > self.max_outbox:
                self._trim()

    def _unconfirmed(self) -> bool:
        return self._seq > self._confirmed

    # -- I/O thread ------------------------------------------------------------------

    def _io_loop(self) -> None:
        try:
            self._io_run()
        except Exception as exc:  # pragma: no cover - reported to start()
            logger.exception("bus bridge I/O thread failed")
            self._start_error = exc
            self._ready.set()
        finally:
            if self._dealer is not None:
                self._dealer.close(linger=0)
            self._flushed.set()

    def _new_dealer(self) -> None:
        assert self._context is not None
        if self._dealer is not None:
            self._dealer.close(linger=0)
        dealer = self._context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        apply_curve(dealer, self.endpoints)
        dealer.connect(self.endpoints.requests)
        self._dealer = dealer
        self._poller = zmq.Poller()
        self._poller.register(dealer, zmq.POLLIN)
        self._poller.register(self._io_wake.fd, zmq.POLLIN)
        # Everything unanswered goes again on the fresh socket.
        for pending in self._pending.values():
            self._send_now(pending)

    def _request(self, kind: str, op: str, args: dict[str, Any], **extra: Any) -> None:
        request_id = next(self._ids)
        frames = [build_request(self.client_id, request_id, op, args)]
        pending = _Pending(
            kind, frames, time.monotonic() + self._retry_interval, extra=extra
        )
        self._pending[request_id] = pending
        self._send_now(pending)

    def _send_now(self, pending: _Pending) -> None:
        assert self._dealer is not None
        try:
            send_frames(self._dealer, pending.frames, _NOBLOCK)
        except zmq.Again:
            pass  # no connection yet: the retry sends it again

    def _hello(self) -> None:
        self._request(
            "hello",
            OP_HELLO,
            {
                "name": self.name,
                "pid": os.getpid(),
                "epoch": self.epoch,
                "last_seq": self._seq,
            },
        )

    def _io_run(self) -> None:
        self._new_dealer()
        self._hello()
        next_probe = next_sync = 0.0
        while not self._stopping:
            now = time.monotonic()
            if self.instance_id is not None and not self._ready.is_set():
                if now >= next_probe:
                    # Until a probe of ours comes back on the SUB socket the
                    # subscription may not be live (ZeroMQ's slow joiner).
                    self._request("probe", OP_PROBE, {"token": self._probe_token})
                    next_probe = now + 0.05
            if self.state == "joined" and now >= next_sync:
                self._request("sync", OP_SYNC, {"epoch": self.epoch})
                busy = self._unconfirmed() or self._flush_requested
                next_sync = now + (_SYNC_BUSY if busy else self._beat_interval)
            while self._io_requests:
                kind, op, args = self._io_requests.popleft()
                self._request(kind, op, args, asked=args)
            if self._flush_requested and (
                not self._unconfirmed() or self.state != "joined"
            ):
                self._flushed.set()
            if self._away and self.state == "joined" and self._last_reply:
                self._check_silence(now, force=True)
            for socket, _ in self._poller.poll(50 if self._flush_requested else 100):
                if socket == self._io_wake.fd:
                    self._io_wake.drain()
                else:
                    while True:
                        try:
                            frames = recv_frames(self._dealer, _NOBLOCK)
                        except zmq.Again:
                            break
                        self._on_reply(frames)
            self._check_deadlines(time.monotonic())
            if self.state == "joined":
                self._check_silence(time.monotonic())

    def _check_silence(self, now: float, force: bool = False) -> None:
        """Call the daemon gone when it stopped answering (I/O thread)."""
        limit = max(4 * self._beat_interval, 0.5)
        if now - self._last_reply > limit or (force and now - self._last_reply > 0.5):
            with self._send_lock:
                self._away = True
            self._set_state("waiting")
            self._new_dealer()  # a fresh connection for the next daemon
            self._hello()

    def _check_deadlines(self, now: float) -> None:
        for request_id, pending in list(self._pending.items()):
            if pending.deadline > now:
                continue
            if pending.kind in ("probe", "sync"):
                del self._pending[request_id]  # the loop sends new ones
                continue
            if pending.kind == "replay" and pending.attempts >= 3:
                del self._pending[request_id]
                self._post(("replay", pending.extra["asked"], None, []))
                continue
            pending.attempts += 1
            pending.deadline = now + self._retry_interval
            self._send_now(pending)

    def _on_reply(self, frames: list[bytes]) -> None:
        try:
            request_id, outcome = parse_reply(frames)
        except ProtocolError as exc:
            logger.warning("ignoring a malformed reply from encored: %s", exc)
            return
        pending = self._pending.pop(request_id, None)
        if pending is None:
            return  # a late duplicate of something already answered
        if isinstance(outcome, Exception):
            logger.warning("%s failed: %s", pending.kind, outcome)
            if pending.kind == "replay":
                self._post(("replay", pending.extra["asked"], None, []))
            return
        self._last_reply = time.monotonic()
        result = outcome.result
        if not isinstance(result, dict) or type(result.get("instance")) is not str:
            logger.warning("ignoring a %s reply without an instance", pending.kind)
            return
        instance = result["instance"]
        if instance != self.instance_id:
            self._on_new_instance(instance, pending.kind == "hello")
            if pending.kind != "hello":
                return
        if pending.kind == "hello":
            self._on_hello(result)
        elif pending.kind == "sync":
            if type(result.get("last_seq")) is int:
                self._confirm(result["last_seq"])
            if self.state == "waiting" and self._ready.is_set():
                self._rejoin(restarted=False)
        elif pending.kind == "replay":
            self._post(("replay", pending.extra["asked"], result, outcome.frames))

    def _on_new_instance(self, instance: str, from_hello: bool) -> None:
        """A daemon we did not know answered (the first, or a restart)."""
        restarted = self.instance_id is not None
        if restarted:
            logger.info(
                "encored restarted (instance %s -> %s)", self.instance_id, instance
            )
            self.stats["restarts"] += 1
        self.instance_id = instance
        if restarted and not from_hello:
            self._hello()  # it must learn where our epoch stands

    def _on_hello(self, result: dict[str, Any]) -> None:
        interval = result.get("heartbeat_interval")
        if isinstance(interval, int | float) and interval > 0:
            self._beat_interval = float(interval)
        try:
            epochs = parse_epochs(result.get("epochs"))
        except ProtocolError as exc:
            logger.warning("ignoring a hello reply: %s", exc)
            return
        self._post(("table", epochs))
        if self._ready.is_set():
            self._rejoin(restarted=self.stats["restarts"] > 0)

    def _rejoin(self, restarted: bool) -> None:
        self._set_state("joined")
        self._resume(restarted)

    # -- handing over to the dispatch thread ----------------------------------------

    def _post(self, item: Any) -> None:
        """Hand ``item`` to the dispatch thread (any thread)."""
        self._inbox.append(item)
        self._dispatch_wake.wake()

    # -- dispatch thread --------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        assert self._context is not None
        sub = self._context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, self.receive_hwm)
        try:
            # Every event but our own, then the control topics:
            # subscriptions take effect in order, so once our probe arrives
            # all are live.
            for prefix in subscriptions_without(self._tag):
                sub.setsockopt(zmq.SUBSCRIBE, prefix)
            sub.setsockopt(zmq.SUBSCRIBE, TOPIC_CONTROL)
            apply_curve(sub, self.endpoints)  # tcp:// to a remote daemon only
            sub.connect(self.endpoints.events)
            poller = zmq.Poller()
            poller.register(sub, zmq.POLLIN)
            poller.register(self._dispatch_wake.fd, zmq.POLLIN)
            wait = 1.0
            while not self._stopping:
                for socket, _ in poller.poll(wait * 1000):
                    if socket == self._dispatch_wake.fd:
                        self._dispatch_wake.drain()
                while self._inbox and not self._stopping:
                    self._on_item(self._inbox.popleft())
                for _ in range(1000):
                    if self._stopping:
                        break
                    try:
                        frames = recv_frames(sub, _NOBLOCK)
                    except zmq.Again:
                        break
                    self._on_sub(frames)
                wait = self._request_replays()
                if self._settling:
                    self._check_settled()
        finally:
            sub.close(linger=0)

    def _on_sub(self, frames: list[bytes]) -> None:
        try:
            topic = frames[0]
            if topic.startswith(TOPIC_EVENT):
                if len(frames) != 2:
                    raise ProtocolError("bad event message")
                parts = _codec.unpack_events(frames[1])
                receive = self._tracker.receive
                for i in range(0, len(parts), 2):
                    header = parts[i]
                    seq, _stamp, epoch, _origin = _codec.parse_prefix(header)
                    self.stats["received"] += 1
                    self._deliver(receive(epoch, seq, (header, parts[i + 1], False)))
            elif topic == TOPIC_HEARTBEAT:
                beat = parse_beacon(topic, frames[1])
                for epoch, last_seq in beat.epochs:
                    self._tracker.announce(epoch, last_seq)
            elif topic == TOPIC_PROBE:
                probe = parse_beacon(topic, frames[1])
                if not self._ready.is_set() and probe.token == self._probe_token:
                    self._last_reply = time.monotonic()
                    with self._send_lock:
                        self._away = False
                    self._set_state("joined")  # before start() wakes
                    self._ready.set()
                    self._io_wake.wake()
        except (ProtocolError, KeyError, TypeError, ValueError, IndexError) as exc:
            logger.warning(
                "ignoring a malformed message from the event socket: %s", exc
            )

    def _on_item(self, item: Any) -> None:
        if isinstance(item, BaseEvent):
            item.__dict__[_BUS_INFO_ATTR] = None  # local: never sent
            self._emit(item)
        elif item[0] == "table":
            for epoch, last_seq in item[1]:
                if epoch != self.epoch:
                    self._tracker.expect(epoch, last_seq + 1)
            self._tracker.new_epochs_start_at_one = True
        elif item[0] == "replay":
            self._on_replay(*item[1:])
        elif item[0] == "settle":
            self._settling.append((item[1], item[2]))

    def _check_settled(self) -> None:
        """Release the :meth:`settle` callers whose epochs were all delivered."""
        next_seq = self._tracker.next_seq
        waiting = []
        for table, done in self._settling:
            behind = [
                epoch
                for epoch, last in table
                if epoch != self.epoch and (next_seq(epoch) or last + 1) <= last
            ]
            if behind:
                waiting.append((table, done))
            else:
                done.set()
        self._settling = waiting

    def _request_replays(self) -> float:
        """Ask for the first missing range of each epoch not asked for yet.

        Returns how long until a gap waiting out its grace is asked again.
        """
        now = time.monotonic()
        wait = 1.0
        for gap in self._tracker.gaps():
            if gap.epoch in self._replaying:
                continue
            not_before = self._not_before.get(gap.epoch, 0.0)
            if not_before > now:
                wait = min(wait, not_before - now)
                continue
            self._not_before.pop(gap.epoch, None)
            self._replaying.add(gap.epoch)
            args = {
                "epoch": gap.epoch,
                "first": gap.first,
                "last": gap.last,
                "limit": _REPLAY_LIMIT,
            }
            self._io_requests.append(("replay", OP_REPLAY, args))
            self._io_wake.wake()
        return wait

    def _on_replay(
        self, asked: dict[str, Any], result: dict[str, Any] | None, frames: list[bytes]
    ) -> None:
        epoch, last = asked["epoch"], asked["last"]
        self._replaying.discard(epoch)
        tracker = self._tracker
        if result is None:  # the daemon did not answer: nobody can replay them
            self._deliver(tracker.give_up(epoch, last))
            return
        newest = 0
        for i in range(0, len(frames) - 1, 2):
            try:
                seq, _stamp, frame_epoch, _origin = _codec.parse_prefix(frames[i])
            except ProtocolError as exc:
                logger.warning("ignoring a malformed replayed event: %s", exc)
                continue
            if frame_epoch != epoch or seq > last:
                continue
            newest = max(newest, seq)
            self.stats["replayed"] += 1
            self._deliver(tracker.receive(epoch, seq, (frames[i], frames[i + 1], True)))
        # What the buffer did not return of the range is gone, unless the
        # reply was cut at its limit or the daemon has not seen that far
        # yet (it reads its copy of the bus after forwarding).  Gone for
        # good only after a grace: an emitter resends to a restarted daemon
        # what the old one never confirmed, and may not know of the restart
        # yet when its next event shows the gap.
        seen = result.get("last_seq")
        end = min(last, seen) if type(seen) is int else last
        if result.get("count", 0) >= asked["limit"]:
            end = newest
        nxt = tracker.next_seq(epoch)
        if nxt is None or nxt > end:
            self._misses.pop(epoch, None)
            return
        now = time.monotonic()
        first_miss = self._misses.get(epoch)
        if first_miss is None or first_miss[0] != nxt:
            self._misses[epoch] = (nxt, now)
            self._not_before[epoch] = now + _LOSS_GRACE
        elif now - first_miss[1] >= _LOSS_GRACE:
            del self._misses[epoch]
            self._deliver(tracker.give_up(epoch, end))
        else:
            self._not_before[epoch] = first_miss[1] + _LOSS_GRACE

    def _deliver(self, items: list[Any]) -> None:
        for item in items:
            if isinstance(item, Lost):
                self._declare_lost(item)
                continue
            frame, attributes, replayed = item
            try:
                event = self._build(frame, attributes, replayed)
            except (ProtocolError, KeyError, TypeError, ValueError) as exc:
                logger.warning("dropping an event that cannot be rebuilt: %s", exc)
                continue
            self.stats["delivered"] += 1
            self._emit(event)

    def _declare_lost(self, lost: Lost) -> None:
        self.stats["lost"] += lost.count
        logger.warning(
            "%d events lost (%d-%d) of emitter %s",
            lost.count,
            lost.first,
            lost.last,
            lost.epoch.hex(),
        )
        self._emit(
            EventsLostEvent(
                count=lost.count,
                first_seq=lost.first,
                last_seq=lost.last,
                since=self._last_time,
                instance=lost.epoch.hex(),
            )
        )

    def _emit(self, event: BaseEvent) -> None:
        try:
            self.event_manager.emit(event)
        except Exception:  # the manager logs listener errors itself
            logger.exception("emitting a bus event failed")

    def _build(self, frame: bytes, attributes: bytes, replayed: bool) -> BaseEvent:
        event = rebuild_event(self.registry, frame, attributes, replayed)
        self._last_time = event.__dict__[_BUS_INFO_ATTR].time
        return event


def rebuild_event(
    registry: _codec.ClassRegistry, frame: bytes, attributes: bytes, replayed: bool
) -> BaseEvent:
    """Rebuild a published event from its header frame and attributes.

    The event carries its :class:`BusInfo`.  Raises ``ProtocolError`` (or
    ``KeyError``, ``TypeError``, ``ValueError``) for frames that cannot be
    read.
    """
    seq, stamp, epoch, origin, name, bases, source = _codec.decode_event_header(frame)
    cls = registry.resolve(name, bases)
    attrs = _codec.decode_attributes(attributes, cls)
    event = cls.__new__(cls)
    # Rebuild like unpickling does: the base initialiser for the
    # bookkeeping, then the attributes; the class's own __init__ (with its
    # own signature) is not run again.
    BaseEvent.__init__(
        event, source=None if source is None else _codec.decode_source(source)
    )
    state = event.__dict__
    state.update(attrs)
    state[_BUS_INFO_ATTR] = BusInfo(seq, epoch, stamp, origin, replayed)
    return event
