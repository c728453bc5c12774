"""The daemon's publisher: its epoch, its events, and what it hears.

Clients' events do not pass through here: the
:class:`~encored._event_hub.EventHub` forwards them inside libzmq.  The
:class:`Publisher` numbers the daemon's own events (emitted on its
``EventManager``, from any thread) under the daemon's epoch and sends them
into the hub at once; it builds heartbeats and probes; and it reads the
hub's capture copy (on the I/O thread, off the hot path) into the replay
buffer (:class:`~encored._epoch_log.EpochLog`) and to the daemon's own
listeners.
"""

from __future__ import annotations

__all__ = ["PUBLISH_PRIORITY", "DaemonEventManager", "Publisher"]

import threading
import time
from typing import Any

import zmq

from encore.events.abstract_event_manager import BaseEvent
from encore.events.event_manager import EventManager
from encore_client import _codec
from encore_client._protocol import DAEMON_TAG, TOPIC_EVENT, event_topic, origin_tag
from encore_client.wire.beacons import MAX_BEACON_EPOCHS, build_heartbeat, build_probe

from ._complaints import RateLimitedLog
from ._epoch_log import EpochLog
from ._event_hub import EventHub

#: The publishing listener runs before any other daemon-side listener, so a
#: listener that marks an event handled cannot keep it off the bus.
PUBLISH_PRIORITY = 2**62
#: Most events, and bytes, in one published message.
_BATCH_PARTS = 2 * _codec.MAX_PACKED_EVENTS
_BATCH_BYTES = 64 * 1024
_NOBLOCK = int(zmq.NOBLOCK)


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


class Publisher:
    """The daemon's epoch, its published events, and the capture reader.

    Parameters
    ----------
    instance_id : str
        The daemon's instance id (32 hex digits); its bytes are the
        daemon's epoch.
    event_manager : EventManager
        The daemon's manager: every event emitted on it is published.
    event_buffer : int
        Capacity of the replay buffer.
    complaints : RateLimitedLog
        Where malformed captured events are logged.
    """

    def __init__(
        self,
        instance_id: str,
        event_manager: EventManager,
        event_buffer: int,
        complaints: RateLimitedLog,
    ) -> None:
        self.instance_id = instance_id
        self.event_manager = event_manager
        self.registry = _codec.ClassRegistry(event_manager)
        self.log = EpochLog(event_buffer)
        #: The daemon's own events are numbered under its instance id.
        self.epoch = bytes.fromhex(instance_id)
        self.last_seq = 0
        self._seq_lock = threading.Lock()
        #: Origin tags of event topics, by client id.
        self._tags: dict[str | None, bytes] = {}
        #: Messages published before the hub existed (sent once it does).
        self._early: list[list[bytes]] = []
        self._early_lock = threading.Lock()
        self._hub: EventHub | None = None
        #: Captured event messages that were not well-formed (their sender
        #: is at fault; subscribers drop them too).
        self.malformed_events = 0
        #: A client's event being emitted on the daemon's manager (already
        #: published: the publishing listener leaves it alone).
        self._inbound: BaseEvent | None = None
        self._only_published: dict[tuple[str, tuple[str, ...]], bool] = {}
        self._only_published_generation = -1
        self._complaints = complaints
        event_manager.connect(BaseEvent, self.on_event, priority=PUBLISH_PRIORITY)

    def detach(self) -> None:
        """Stop publishing the manager's events (at shutdown)."""
        self.event_manager.disconnect(BaseEvent, self.on_event)

    # -- publishing ---------------------------------------------------------------

    def on_event(self, event: BaseEvent) -> None:
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

    def start_hub(self, hub: EventHub) -> None:
        """Start forwarding; send what was published before, in order."""
        hub.start()
        with self._seq_lock, self._early_lock:
            for frames in self._early:
                hub.send(frames)
            self._early.clear()
            self._hub = hub

    # -- beacons ------------------------------------------------------------------

    def publish_probe(self, token: str) -> None:
        """Publish a probe message carrying ``token`` (see the probe op)."""
        self._send(build_probe(self.instance_id, token))

    def epochs(self, limit: int) -> list[tuple[bytes, int]]:
        """Where the ``limit`` most recently heard epochs stand, ours last."""
        table = [(e, s) for e, s in self.log.recent(limit) if e != self.epoch]
        return [*table[-(limit - 1) :], (self.epoch, self.last_seq)]

    def heartbeat(self) -> None:
        """Publish a heartbeat listing where the active epochs stand."""
        self._send(
            build_heartbeat(
                self.instance_id, self.epochs(MAX_BEACON_EPOCHS), time.time()
            )
        )

    # -- the capture --------------------------------------------------------------

    def on_capture(self, capture: Any) -> None:
        """Read forwarded messages from ``capture`` (the hub's capture socket):
        keep events for replay, show clients' events to the daemon's own
        listeners.  Bounded per call; I/O thread only."""
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

        Then the daemon leaves the client's frames as they were forwarded
        instead of rebuilding the event and emitting it on a manager where
        no listener could observe it.  Always False with a manager that is
        not a :class:`DaemonEventManager`.
        """
        if not self._listener_caches_valid():
            return False
        manager = self.event_manager
        key = (header["class"], tuple(header["bases"]))
        answer = self._only_published.get(key)
        if answer is None:
            cls = self.registry.resolve(header["class"], header["bases"])
            answer = manager.is_enabled(cls) and manager.get_listeners(cls) == [
                self.on_event
            ]
            if len(self._only_published) > 4096:
                self._only_published.clear()
            self._only_published[key] = answer
        return answer
