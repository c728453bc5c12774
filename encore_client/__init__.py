"""encore_client: what a process imports to use a running ``encored``.

* :class:`BusBridge` joins a local ``EventManager`` to the shared bus.
* :class:`RemoteEvent`, :class:`EventsLostEvent`, :func:`bus_info`,
  :class:`BusInfo`, :class:`RemoteSource`, :class:`RemoteObject`: what
  arrives from the bus.
* :class:`RemoteStore`: a store hosted by the daemon, as a complete
  ``AbstractStore`` (:func:`list_stores` says which stores there are).
* :class:`Transport`, :class:`ZmqTransport`: the request seam.
* The errors a daemon reply turns into.

The ``encore`` command line lives in :mod:`encore_client.cli`.
"""

from ._bus_bridge import BusBridge
from ._events import (
    BusInfo,
    BusStateEvent,
    EventsLostEvent,
    RemoteEvent,
    RemoteObject,
    RemoteSource,
    bus_info,
)
from ._paths import Endpoints, endpoints, resolve_runtime_dir
from ._remote_store import RemoteStore, RemoteValue, list_stores
from ._store_events import StoreResyncEvent
from ._transport import Reply, Transport, ZmqTransport
from .wire.errors import (
    DaemonUnavailableError,
    EncoreError,
    ErrorCode,
    ProtocolError,
    RequestTooLargeError,
    ServerError,
    TransferError,
    UnknownOperationError,
    UnknownStoreError,
)
from .wire.version import PROTOCOL_VERSION

__all__ = [
    "PROTOCOL_VERSION",
    "BusBridge",
    "BusInfo",
    "DaemonUnavailableError",
    "EncoreError",
    "Endpoints",
    "ErrorCode",
    "BusStateEvent",
    "EventsLostEvent",
    "ProtocolError",
    "RemoteEvent",
    "RemoteObject",
    "RemoteSource",
    "RemoteStore",
    "RemoteValue",
    "Reply",
    "RequestTooLargeError",
    "ServerError",
    "StoreResyncEvent",
    "TransferError",
    "Transport",
    "UnknownOperationError",
    "UnknownStoreError",
    "ZmqTransport",
    "bus_info",
    "endpoints",
    "list_stores",
    "resolve_runtime_dir",
]
