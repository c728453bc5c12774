"""What makes encored a service: watchdog, reload, tcp, and a richer status.

:func:`install_service` is called once by the entry point, after the
:class:`~encored.Daemon` is built and before it runs.  It hooks into the
daemon only through the daemon's public seams (``loop_hooks``,
``bind_hooks``, ``call_soon`` and the operations table), so each feature
stays in a module of its own:

* the systemd watchdog (``_watchdog_ping.py``),
* SIGHUP configuration reload (``_reload.py``),
* ``tcp://`` endpoints with CURVE (``_curve.py``),
* the ``status`` operation extended with what an operator needs to tell a
  full disk, a flood of bad requests, a slow subscriber or a hung loop
  apart from outside (``encore status``).
"""

from __future__ import annotations

__all__ = ["Service", "install_service", "process_memory", "RUN_FILE"]

import json
import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from encore_client._paths import RUN_FILE

from ._handlers import Operation, Request, Response
from ._watchdog_ping import WatchdogPinger

if TYPE_CHECKING:  # pragma: no cover
    from ._server import Daemon
    from .stores.wiring import RunningStores


def process_memory() -> dict[str, int]:
    """This process's resident and peak resident memory, in bytes.

    Read from ``/proc/self/status``; an empty map where that is missing.
    """
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    found["rss" if name == "VmRSS" else "rss_peak"] = (
                        int(value.split()[0]) * 1024
                    )
    except (OSError, ValueError):
        pass
    return found


class Service:
    """The service features attached to one daemon (see the module doc).

    Attributes
    ----------
    watchdog : WatchdogPinger or None
    reloader : ConfigReloader or None
    curve : CurveServer or None
    """

    def __init__(
        self,
        daemon: Daemon,
        stores: RunningStores | None = None,
        config_path: str | None = None,
    ) -> None:
        self.daemon = daemon
        self.stores = stores
        self.config_path = config_path
        self.watchdog = WatchdogPinger.from_environment()
        self._run_file = daemon.runtime_dir.path / RUN_FILE
        #: How the previous daemon on this runtime directory ended (None:
        #: no record).  ``clean`` is False after a kill or a crash.
        self.previous_exit = self._read_previous_run()
        self._write_run_state("running")
        self.reloader: Any = None
        self.curve: Any = None
        if self.watchdog is not None:
            daemon.loop_hooks.append(self.watchdog.tick)
        listen = getattr(daemon.config, "listen", None)
        if listen is not None and listen.tcp_configured:
            from ._curve import CurveServer

            self.curve = CurveServer(listen)
            daemon.bind_hooks.append(self.curve.bind)
            daemon.close_hooks.append(self.curve.close)
        if stores is not None:
            from ._reload import ConfigReloader

            self.reloader = ConfigReloader(daemon, stores, config_path)
            if self.curve is not None:
                self.reloader.on_reload.append(self.curve.reload_keys)
        #: Replay requests served, events replayed, and events asked for
        #: that had already left the buffer (a subscriber too far behind).
        self.replays = {"requests": 0, "events": 0, "gone": 0}
        original = daemon.operations.get("status")
        if original is not None:
            daemon.operations["status"] = Operation(
                self._status_handler(original.handler), original.once
            )
        original = daemon.operations.get("replay")
        if original is not None:
            daemon.operations["replay"] = Operation(
                self._replay_handler(original.handler), original.once
            )

    def install_signal_handlers(self) -> None:
        """SIGHUP reloads the configuration (main thread only)."""
        if self.reloader is not None:
            signal.signal(signal.SIGHUP, lambda _s, _f: self.reloader.request())

    def close(self) -> None:
        """Stop the helper threads this service started; record a clean exit."""
        if self.reloader is not None:
            self.reloader.wait(60.0)
        if self.curve is not None:
            self.curve.close()
        self._write_run_state("stopped")

    # -- how the previous run ended ---------------------------------------------

    def _read_previous_run(self) -> dict[str, Any] | None:
        try:
            record = json.loads(self._run_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict):
            return None
        return {
            "clean": record.get("state") == "stopped",
            "pid": record.get("pid"),
            "started": record.get("started"),
            "stopped": record.get("stopped"),
        }

    def _write_run_state(self, state: str) -> None:
        record = {"state": state, "pid": os.getpid(), "started": self.daemon.started}
        if state == "stopped":
            record["stopped"] = time.time()
        temp = self._run_file.with_name(self._run_file.name + ".tmp")
        try:
            temp.write_text(json.dumps(record), encoding="utf-8")
            os.replace(temp, self._run_file)
        except OSError as exc:  # a diagnostic only: never a reason to fail
            logging.getLogger("encored").warning("cannot write %s: %s", temp, exc)

    # -- status -------------------------------------------------------------------

    def _status_handler(self, base: Any) -> Any:
        def handle_status(daemon: Daemon, request: Request) -> Response:
            """The bus status, plus the service's diagnostics (see
            :meth:`Service.diagnostics`)."""
            response = base(daemon, request)
            if isinstance(response.result, dict):
                response.result["service"] = self.diagnostics()
            return response

        return handle_status

    def _replay_handler(self, base: Any) -> Any:
        def handle_replay(daemon: Daemon, request: Request) -> Response:
            """The bus replay, counted for ``status``."""
            response = base(daemon, request)
            result = response.result
            self.replays["requests"] += 1
            self.replays["events"] += result.get("count", 0)
            first = request.args.get("first")
            available = result.get("first_available")
            if isinstance(first, int) and isinstance(available, int):
                self.replays["gone"] += max(0, available - first)
            return response

        return handle_replay

    def diagnostics(self) -> dict[str, Any]:
        """What ``encore status`` shows beyond the bus figures.

        ``memory`` (rss, rss_peak), ``threads``, ``replays`` (requests,
        events replayed, events asked for but gone), ``previous_exit`` (how
        the previous daemon here ended), ``errors`` (error replies
        sent, by code name, with the latest message of each), ``watchdog``,
        ``reload``, ``transfers`` (open downloads and uploads), ``listen``
        (tcp endpoints and authorised key count), ``pending_replies``,
        ``replay_buffer`` (events held, capacity, epochs followed) and
        ``postgres`` (each postgres store's connection state).
        """
        daemon = self.daemon
        now = time.time()
        errors = {
            name: {
                "count": count,
                "last": daemon.last_errors.get(name, (0.0, ""))[1],
                "ago": round(now - daemon.last_errors.get(name, (now, ""))[0], 1),
            }
            for name, count in sorted(daemon.error_counts.items())
        }
        result: dict[str, Any] = {
            "memory": process_memory(),
            "threads": threading.active_count(),
            "errors": errors,
            "watchdog": (
                {"interval": self.watchdog.interval, "pings": self.watchdog.pings}
                if self.watchdog is not None
                else None
            ),
            "replay_buffer": {
                "held": len(daemon.log),
                "capacity": daemon.log.capacity,
                "epochs": daemon.log.epoch_count,
            },
            "previous_exit": self.previous_exit,
            "replays": dict(self.replays),
            "pending_replies": daemon.router.pending_count,
            # Replies kept to answer retries (bounded: see _router.py).
            "remembered_replies": daemon.router.remembered_count,
        }
        if self.stores is not None:
            service = self.stores.service
            # Open downloads, uploads, and the finished downloads kept for a
            # repeated last read with the bytes they hold (bounded).
            result["transfers"] = dict(
                service.transfer_counts(), sessions=len(service.sessions)
            )
            postgres = self.stores.host.connection_states()
            if postgres:
                result["postgres"] = postgres
        if self.reloader is not None:
            result["reload"] = self.reloader.describe()
        if self.curve is not None:
            result["listen"] = self.curve.describe()
        return result


def install_service(
    daemon: Daemon,
    stores: RunningStores | None = None,
    config_path: str | os.PathLike[str] | None = None,
) -> Service:
    """Attach the service features to ``daemon``; return the :class:`Service`.

    Call it on the main thread (it installs the SIGHUP handler).
    """
    service = Service(
        daemon, stores, None if config_path is None else os.fspath(config_path)
    )
    service.install_signal_handlers()
    return service
