"""Event classes and value types that only exist because of the bus.

* :class:`RemoteEvent` is the base of every event rebuilt from the wire
  whose class this process does not know.
* :class:`EventsLostEvent` is emitted locally by a bridge when events it
  should have received are gone for good.
* :class:`BusInfo`, :class:`RemoteSource` and :class:`RemoteObject` carry
  what crossed the process boundary in place of live objects.
"""

from __future__ import annotations

__all__ = [
    "RemoteEvent",
    "EventsLostEvent",
    "BusStateEvent",
    "BusInfo",
    "RemoteSource",
    "RemoteObject",
    "bus_info",
]

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from encore.events.abstract_event_manager import BaseEvent

#: Name of the private instance attribute holding a received event's
#: :class:`BusInfo`; private names never travel on the wire.
_BUS_INFO_ATTR = "_encore_bus"


class BusInfo(NamedTuple):
    """Where a received event came from.

    Attributes
    ----------
    seq : int
        Sequence number the daemon gave the event.
    instance : str
        Instance id of the daemon that published it.
    time : float
        When the event was first emitted (UTC seconds since the epoch).
    origin : str or None
        Client id of the bridge that emitted it; ``None`` for events the
        daemon emitted itself.
    replayed : bool
        True when the event was fetched from the daemon's recent-events
        buffer after a sequence gap rather than received live.
    """

    seq: int
    instance: str
    time: float
    origin: str | None
    replayed: bool = False


def bus_info(event: object) -> BusInfo | None:
    """Return the :class:`BusInfo` of an event received from the bus.

    Events emitted in this process (not received from the bus) give
    ``None``.
    """
    return getattr(event, _BUS_INFO_ATTR, None)


@dataclass(frozen=True)
class RemoteSource:
    """Stand-in for an event's ``source`` object from another process.

    Live objects do not cross processes; the sender describes its source
    (type name, ``repr``, process id) and the receiver gets this.
    ``data`` keeps the whole descriptor for adapters that rebuild something
    richer (a store proxy, for example).
    """

    type_name: str
    repr: str
    pid: int | None = None
    data: dict[str, Any] = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        where = f" in pid {self.pid}" if self.pid is not None else ""
        return f"<{self.type_name}{where}: {self.repr}>"


@dataclass(frozen=True)
class RemoteObject:
    """Stand-in for an attribute value that the wire cannot carry.

    An event attribute holding, say, an open file or a class instance is
    sent as its type name and ``repr`` rather than failing the emit.
    """

    type_name: str
    repr: str

    def __str__(self) -> str:
        return f"<{self.type_name}: {self.repr}>"


class RemoteEvent(BaseEvent):
    """An event received from the bus whose class this process does not know.

    A bridge rebuilds an unknown event class as a subclass of this class
    *and* of the nearest of its bases that are known here, so a listener
    connected on a known base (``connect(FileEvent, f)``) is called for it.
    The original names are kept as class attributes.

    Attributes
    ----------
    remote_class_name : str
        Full name (``module.QualName``) of the sender's class.
    remote_bases : tuple of str
        Full names of its bases in method resolution order.
    """

    remote_class_name: str = "encore_client.RemoteEvent"
    remote_bases: tuple[str, ...] = ()

    def __repr__(self) -> str:
        attrs = ", ".join(
            f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_")
        )
        return f"<remote {self.remote_class_name}({attrs})>"


class BusStateEvent(BaseEvent):
    """A bridge joined the bus, or lost it (the daemon went away).

    Emitted on the local event manager by a :class:`~encore_client.BusBridge`
    for every change of its ``state`` after ``start()`` returned: a bridge
    started before the daemon reports ``"joined"`` when the daemon arrives,
    ``"waiting"`` when the daemon stops answering, and ``"joined"`` again
    when one is back.  This event is local: bridges never send it.

    Attributes
    ----------
    state : str
        ``"joined"`` (events flow both ways) or ``"waiting"`` (no daemon;
        emitted events are kept and sent when one comes).
    instance : str or None
        Instance id of the daemon joined (the last one, when waiting).
    runtime_dir : str
        Where the bridge looks for the daemon.
    """

    _encore_local_only = True


class EventsLostEvent(BaseEvent):
    """Events were published on the bus but can no longer be delivered here.

    Emitted on the local event manager by a bridge when a sequence gap
    cannot be filled from the daemon's recent-events buffer (the subscriber
    fell too far behind, or the daemon that published them is gone).  This
    event is local: bridges never send it to the bus.

    Attributes
    ----------
    count : int
        How many events were lost.
    first_seq, last_seq : int
        Their sequence numbers (inclusive range).
    since : float
        Time (UTC seconds since the epoch) of the last event received
        before the loss, or when the bridge started if none was.
    instance : str
        Instance id of the daemon whose events were lost.
    """

    _encore_local_only = True
