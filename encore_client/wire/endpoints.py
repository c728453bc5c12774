"""File names of the daemon's endpoints inside its runtime directory."""

from __future__ import annotations

__all__ = ["EVENTS_SOCKET", "EVENTS_IN_SOCKET", "REQUESTS_SOCKET", "LOCK_FILE"]

#: The PUB socket: every published event, heartbeats, probes.
EVENTS_SOCKET = "events.ipc"
#: The PULL socket where local clients push the events they emit.
EVENTS_IN_SOCKET = "events-in.ipc"
#: The ROUTER socket: requests and their replies.
REQUESTS_SOCKET = "requests.ipc"
#: ``flock``ed by the running daemon (it holds its PID), so that a second
#: daemon stays off the same directory.
LOCK_FILE = "encored.lock"
