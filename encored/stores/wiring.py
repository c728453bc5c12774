"""Wiring the hosted stores into a daemon: one call for the entry point.

:func:`start_store_service` builds the configured stores on a new event
manager, and returns that manager, the complete operations table (bus and
store operations merged) and a :class:`RunningStores` to close at shutdown.
"""

from __future__ import annotations

__all__ = ["RunningStores", "start_store_service"]

from encore.events.event_manager import EventManager

from .._config import Config
from .._handlers import BUS_OPERATIONS, Operation, merge_tables
from .._publisher import DaemonEventManager
from .hosting import StoreHost
from .operations import StoreService


class RunningStores:
    """The live stores and their service; :meth:`close` at shutdown."""

    def __init__(self, host: StoreHost, service: StoreService) -> None:
        self.host = host
        self.service = service

    def close(self) -> None:
        """Finish running store calls, then stop watchers and stores."""
        try:
            self.service.close()
        finally:
            self.host.close()


def start_store_service(
    config: Config, event_manager: EventManager | None = None
) -> tuple[EventManager, dict[str, Operation], RunningStores]:
    """Build the configured stores and the daemon's operations table.

    Raises
    ------
    StoreBuildError
        If a store cannot be opened (nothing is left running).
    """
    # The daemon's own manager type: it counts listener changes, which the
    # daemon needs to publish a client's event without rebuilding it when
    # nothing else listens (Daemon.only_published); a plain EventManager
    # turns that off.
    manager = event_manager if event_manager is not None else DaemonEventManager()
    host = StoreHost(config, manager)
    service = StoreService(host)
    operations = merge_tables(BUS_OPERATIONS, service.operations())
    return manager, operations, RunningStores(host, service)
