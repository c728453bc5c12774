"""Logged-in sessions: a private store instance per client login.

Stores that keep per-user state (simple_auth always; dynamic_url when
credentials are given) get a fresh instance for each ``store.connect``
with credentials, kept here by session id for the client that opened
it.  A client keeps at most ``MAX_SESSIONS_PER_CLIENT`` (its oldest are
closed first), and a session unused for ``SESSION_IDLE`` seconds is
closed.  The handlers that use them are in :mod:`.operations`.
"""

from __future__ import annotations

__all__ = ["Sessions", "SESSION_IDLE", "MAX_SESSIONS_PER_CLIENT"]

import threading
import time
from collections.abc import Iterable
from typing import Any

#: Seconds a logged-in session may go unused before it is closed.
SESSION_IDLE = 3600.0
#: Most logged-in sessions per client (the oldest are closed first).
MAX_SESSIONS_PER_CLIENT = 16


class Sessions:
    """Session id -> ``(client, store instance, store name)``, thread-safe.

    Disconnecting the instances of dropped sessions is the caller's job
    (on a worker: a store's ``disconnect`` may block).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, Any, str]] = {}
        self._used: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, sid: object, client: str, name: str) -> Any | None:
        """The store of ``client``'s session ``sid`` on store ``name``.

        ``None`` for an unknown session, or one of another client or
        store.  Marks the session used.
        """
        # One dict lookup, no lock: this runs for every call in a session.
        entry = self._entries.get(sid) if isinstance(sid, str) else None
        if entry is None or entry[0] != client or entry[2] != name:
            return None
        self._used[sid] = time.monotonic()  # type: ignore[index]
        return entry[1]

    def open(self, sid: str, client: str, store: Any, name: str) -> list[Any]:
        """Register a session; return the stores of ``client``'s evicted ones."""
        with self._lock:
            self._entries[sid] = (client, store, name)
            self._used[sid] = time.monotonic()
            mine = [k for k, e in self._entries.items() if e[0] == client]
            evicted = mine[:-MAX_SESSIONS_PER_CLIENT]
            for k in evicted:
                self._used.pop(k, None)
            return [self._entries.pop(k)[1] for k in evicted]

    def close(self, sid: object, client: str) -> Any | None:
        """Forget ``client``'s session ``sid``; return its store (or ``None``)."""
        with self._lock:
            entry = self._entries.get(sid) if isinstance(sid, str) else None
            if entry is None or entry[0] != client:
                return None
            del self._entries[sid]  # type: ignore[arg-type]
            self._used.pop(sid, None)  # type: ignore[arg-type]
            return entry[1]

    def expire(self, now: float) -> list[Any]:
        """Forget sessions unused for ``SESSION_IDLE``; return their stores."""
        with self._lock:
            idle = [
                sid
                for sid in self._entries
                if now - self._used.get(sid, now) > SESSION_IDLE
            ]
            for sid in idle:
                self._used.pop(sid, None)
            return [self._entries.pop(sid)[1] for sid in idle]

    def forget_stores(self, names: Iterable[str]) -> None:
        """Forget the sessions on stores ``names`` (removed by a reload)."""
        gone = set(names)
        with self._lock:
            for sid in [s for s, e in self._entries.items() if e[2] in gone]:
                del self._entries[sid]
                self._used.pop(sid, None)
