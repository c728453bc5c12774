"""The systemd notification protocol (``sd_notify``), in a few lines.

When systemd starts a ``Type=notify`` service it sets ``NOTIFY_SOCKET`` to a
Unix datagram socket (a path, or an abstract name written with a leading
``@``); the service sends ``READY=1`` when it serves and ``STOPPING=1`` when
it begins to shut down.  Without ``NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

__all__ = ["notify"]

import logging
import os
import socket

logger = logging.getLogger(__name__)


def notify(*assignments: str) -> bool:
    """Send ``VAR=value`` lines to the service manager.

    Returns True when a notification was sent.  Never raises: a daemon must
    not fail because its supervisor went away; failures are logged.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    elif not address.startswith("/"):
        logger.warning("ignoring NOTIFY_SOCKET %r: not a path or @name", address)
        return False
    message = "\n".join(assignments).encode()
    try:
        with socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
        ) as s:
            s.sendto(message, address)
    except OSError as exc:
        logger.warning("cannot notify the service manager at %r: %s", address, exc)
        return False
    return True
