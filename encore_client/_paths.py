"""Where the daemon's sockets live: one rule shared by daemon and clients.

The runtime directory is, in order: an explicit argument, the environment
variable ``ENCORE_RUNTIME_DIR``, ``$XDG_RUNTIME_DIR/encored``, and finally
``/tmp/encored-<uid>`` when the session has no ``XDG_RUNTIME_DIR`` (a
container, a cron job).  Setting ``ENCORE_RUNTIME_DIR`` therefore points a
whole session of processes at one daemon.
"""

from __future__ import annotations

__all__ = [
    "resolve_runtime_dir",
    "Endpoints",
    "endpoints",
    "no_daemon_reason",
    "MAX_IPC_PATH",
    "RUN_FILE",
]

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .wire.endpoints import EVENTS_IN_SOCKET, EVENTS_SOCKET, LOCK_FILE, REQUESTS_SOCKET

#: ``sockaddr_un.sun_path`` holds 108 bytes including the terminating NUL.
MAX_IPC_PATH = 107

#: In the runtime directory: the daemon's run record, JSON with ``state``
#: ("running" until a clean stop writes "stopped") and ``pid``; the next
#: daemon and ``encore status`` read it to tell a clean stop from a kill.
RUN_FILE = "encored.run"


def resolve_runtime_dir(runtime_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the runtime directory by the documented rule.

    Nothing is created or checked here; the daemon creates the directory,
    clients only connect to the sockets inside it.
    """
    if runtime_dir is not None and str(runtime_dir) != "":
        return Path(runtime_dir).expanduser()
    env = os.environ.get("ENCORE_RUNTIME_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "encored"
    return Path("/tmp") / f"encored-{os.getuid()}"


@dataclass(frozen=True)
class Endpoints:
    """The ZeroMQ endpoints and lock file of one runtime directory."""

    runtime_dir: Path
    events: str
    requests: str
    lock_file: Path
    #: CURVE keys (``encore_client._keys.CurveKeys``) for a remote daemon
    #: reached over tcp://; ``None`` for the local ipc sockets.
    curve: Any = None
    #: Where events are pushed to the daemon (its inbound PULL socket).
    events_in: str = ""


def endpoints(runtime_dir: str | os.PathLike[str] | None = None) -> Endpoints:
    """Return the endpoints of the daemon on ``runtime_dir`` (resolved).

    Raises
    ------
    ValueError
        If a socket path would be longer than an ``ipc://`` path can be
        (about 107 bytes): ZeroMQ would otherwise fail later and obscurely.
    """
    if isinstance(runtime_dir, Endpoints):
        return runtime_dir  # a remote daemon (see encore_client._keys)
    base = resolve_runtime_dir(runtime_dir).absolute()
    paths = [base / EVENTS_SOCKET, base / REQUESTS_SOCKET, base / EVENTS_IN_SOCKET]
    for path in paths:
        if len(os.fsencode(path)) > MAX_IPC_PATH:
            raise ValueError(
                f"runtime directory {str(base)!r} is too long for an ipc "
                f"socket path ({len(os.fsencode(path))} > {MAX_IPC_PATH} bytes);"
                " choose a shorter one (ENCORE_RUNTIME_DIR or --runtime-dir)"
            )
    return Endpoints(
        runtime_dir=base,
        events=f"ipc://{paths[0]}",
        requests=f"ipc://{paths[1]}",
        lock_file=base / LOCK_FILE,
        events_in=f"ipc://{paths[2]}",
    )


def no_daemon_reason(where: Endpoints) -> str | None:
    """Why no daemon can be serving requests on ``where``, if that is certain.

    For the local ipc socket only: a missing socket file (no daemon runs:
    none was started, or it stopped cleanly and removed its sockets), or
    one that refuses connections (left by a daemon that did not stop: it
    was killed or crashed), is known at once, where a ZeroMQ connect would
    wait out a whole timeout.  The run record, when there is one, adds how
    the last daemon ended.  ``None`` when something accepts the
    connection, for tcp endpoints, and whenever the probe cannot tell: the
    caller then asks the daemon as usual.
    """
    if not where.requests.startswith("ipc://"):
        return None
    path = where.requests[len("ipc://") :]
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except FileNotFoundError:
        return f"no socket at {path}" + _last_run(where, stale=False)
    except ConnectionRefusedError:
        last = _last_run(where, stale=True)
        if last.startswith(" (the last daemon"):
            # An older daemon stopped cleanly but did not remove its sockets.
            return f"nothing listens on {path}{last}"
        return f"nothing listens on {path}, left by a daemon that did not stop{last}"
    except PermissionError:
        return f"no permission to connect to {path}"
    except OSError:
        return None  # a full backlog, a timeout: not a verdict
    finally:
        probe.close()
    return None


def _last_run(where: Endpoints, stale: bool) -> str:
    """How the last daemon on ``where`` ended, from its run record, or ``""``.

    Only read, never trusted for more than the message: the socket probe
    has already decided that no daemon serves.
    """
    try:
        with open(where.runtime_dir / RUN_FILE, encoding="utf-8") as f:
            record = json.loads(f.read(4096))
    except (OSError, ValueError):
        return ""
    if not isinstance(record, dict):
        return ""
    pid = record.get("pid")
    who = f"pid {pid}" if isinstance(pid, int) and not isinstance(pid, bool) else "?"
    state = record.get("state")
    if state == "stopped":
        if stale:
            return f" (the last daemon, {who}, stopped cleanly but left it)"
        return f" (the last daemon, {who}, stopped cleanly)"
    if state == "running":
        if stale:
            return f" ({who} was killed or crashed)"
        return f" (the last daemon, {who}, did not record a clean stop)"
    return ""
