"""Transitional: the daemon's old import path for the protocol's tables.

Everything here lives in ``encore_client.wire`` (version, operations,
topics, endpoints, limits, errors); this module goes once ``encored``
imports those directly.
"""

from __future__ import annotations

from .wire.endpoints import (  # noqa: F401
    EVENTS_IN_SOCKET,
    EVENTS_SOCKET,
    LOCK_FILE,
    REQUESTS_SOCKET,
)
from .wire.errors import (  # noqa: F401
    DaemonUnavailableError,
    EncoreError,
    ErrorCode,
    ProtocolError,
    RequestTooLargeError,
    ServerError,
    UnknownOperationError,
    error_from_reply,
)
from .wire.limits import MAX_ENVELOPE, MAX_SUBSCRIPTION  # noqa: F401
from .wire.operations import (  # noqa: F401
    OP_EMIT,
    OP_HELLO,
    OP_PING,
    OP_PROBE,
    OP_REPLAY,
    OP_STATUS,
    OP_SYNC,
)
from .wire.topics import (  # noqa: F401
    DAEMON_TAG,
    TOPIC_EVENT,
    TOPIC_HEARTBEAT,
    TOPIC_PROBE,
    event_topic,
    origin_tag,
    subscriptions_without,
    valid_subscription,
)
from .wire.version import PROTOCOL_VERSION  # noqa: F401

__all__: list[str] = []
