"""encore_client: what a process imports to use a running ``encored``.

* :class:`BusBridge` joins a local ``EventManager`` to the shared bus.
* :class:`RemoteEvent`, :class:`EventsLostEvent`, :func:`bus_info`,
  :class:`BusInfo`, :class:`RemoteSource`, :class:`RemoteObject`: what
  arrives from the bus.
* :class:`Transport`, :class:`ZmqTransport`: the request seam.
* The errors a daemon reply turns into.

The ``encore`` command line lives in :mod:`encore_client.cli`.
"""

from ._bus_bridge import BusBridge
from ._events import (
    BusInfo,
    EventsLostEvent,
    RemoteEvent,
    RemoteObject,
    RemoteSource,
    bus_info,
)
from ._paths import Endpoints, endpoints, resolve_runtime_dir
from ._protocol import (
    PROTOCOL_VERSION,
    DaemonUnavailableError,
    EncoreError,
    ErrorCode,
    ProtocolError,
    RequestTooLargeError,
    ServerError,
    UnknownOperationError,
)
from ._transport import Reply, Transport, ZmqTransport

__all__ = [
    "PROTOCOL_VERSION",
    "BusBridge",
    "BusInfo",
    "DaemonUnavailableError",
    "EncoreError",
    "Endpoints",
    "ErrorCode",
    "EventsLostEvent",
    "ProtocolError",
    "RemoteEvent",
    "RemoteObject",
    "RemoteSource",
    "Reply",
    "RequestTooLargeError",
    "ServerError",
    "Transport",
    "UnknownOperationError",
    "ZmqTransport",
    "bus_info",
    "endpoints",
    "resolve_runtime_dir",
]
