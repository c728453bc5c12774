"""systemd's service watchdog: ``WATCHDOG=1`` from the daemon's I/O loop.

With ``WatchdogSec=`` in its unit, systemd sets ``WATCHDOG_USEC`` (and
``WATCHDOG_PID``) in the service's environment and restarts the service
when no ``WATCHDOG=1`` arrives within that time.  The ping is sent from
the I/O loop itself, not from a thread of its own: a thread would go on
pinging while the loop that serves every client is stuck, which is the
one failure the watchdog is there to catch.  It is sent every half of
``WATCHDOG_USEC``, as ``sd_watchdog_enabled(3)`` recommends.
"""

from __future__ import annotations

__all__ = ["WatchdogPinger", "watchdog_interval"]

import logging
import os
import time
from collections.abc import Callable, Mapping

from ._notify import notify

logger = logging.getLogger("encored")


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings asked for by the environment, or ``None``.

    ``None`` when ``WATCHDOG_USEC`` is unset, not a positive integer, or
    meant for another process (``WATCHDOG_PID`` names a different PID, as
    happens when the variable leaks into a child).  A malformed value is
    logged, not raised: the daemon then runs without the watchdog.
    """
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(raw)
    except ValueError:
        logger.warning("ignoring WATCHDOG_USEC=%r: not an integer", raw)
        return None
    if usec <= 0:
        logger.warning("ignoring WATCHDOG_USEC=%r: not positive", raw)
        return None
    return usec / 2e6


class WatchdogPinger:
    """Sends ``WATCHDOG=1`` when due; the daemon loop calls :meth:`tick`.

    Parameters
    ----------
    interval : float
        Seconds between pings (half the watchdog timeout).
    send : callable, optional
        Sends the notification (default: :func:`encored.notify`).

    Attributes
    ----------
    pings : int
        Pings sent so far (shown by ``encore status``).
    """

    def __init__(
        self, interval: float, send: Callable[..., bool] | None = None
    ) -> None:
        self.interval = interval
        self.pings = 0
        self._send = send if send is not None else notify
        self._next = 0.0

    def tick(self, now: float | None = None) -> float:
        """Ping if one is due; return the monotonic time of the next ping.

        Never raises (sending failures are logged by the notifier).
        """
        now = time.monotonic() if now is None else now
        if now >= self._next:
            self._send("WATCHDOG=1")
            self.pings += 1
            self._next = now + self.interval
        return self._next

    @classmethod
    def from_environment(cls) -> WatchdogPinger | None:
        """A pinger for this process's ``WATCHDOG_USEC``, or ``None``."""
        interval = watchdog_interval()
        if interval is None:
            return None
        logger.info("systemd watchdog: pinging every %.3g s", interval)
        return cls(interval)
