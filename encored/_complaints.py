"""Logging what clients do wrong without letting them flood the journal.

Used by the router (malformed requests) and the publisher (malformed
events): both log a line per complaint, at most a few a second.
"""

from __future__ import annotations

__all__ = ["LazyHex", "RateLimitedLog"]

import logging
import time

logger = logging.getLogger("encored")


class RateLimitedLog:
    """Log a kind of complaint at most ``per_second`` times a second.

    A client flooding the daemon with garbage must not flood the journal.
    """

    def __init__(self, per_second: int = 10) -> None:
        self.per_second = per_second
        self.window = 0
        self.count = 0
        self.suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        """Log ``message % args`` as a warning unless over this second's budget."""
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


class LazyHex:
    """A peer identity that formats as hex only when a log line needs it."""

    __slots__ = ("_identity",)

    def __init__(self, identity: bytes) -> None:
        self._identity = identity

    def __str__(self) -> str:
        return self._identity.hex()
