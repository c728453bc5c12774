"""The daemon's store part: the configured stores served on the request socket.

Where each piece lives:

* :mod:`.hosting`: :class:`StoreHost` builds the ``[stores.*]`` tables into
  live stores (composites on their parts), connects them and closes them;
  :class:`StoreBuildError` when one cannot be opened.
* :mod:`.watcher`: a filesystem store's watcher, which reports changes
  made by other programs as store events.
* :mod:`.operations`: :class:`StoreService`, one handler per ``store.*``
  operation and the operations table (``docs/store_calls.md``).
* :mod:`.transfers`: chunked downloads and uploads, their table and bounds.
* :mod:`.sessions`: the private store instances of logged-in clients.
* :mod:`.wiring`: :func:`start_store_service` builds host, service and the
  daemon's whole operations table in one call; :class:`RunningStores`
  closes them at shutdown.
"""

from .hosting import StoreBuildError, StoreHost
from .operations import StoreService
from .wiring import RunningStores, start_store_service

__all__ = [
    "RunningStores",
    "StoreBuildError",
    "StoreHost",
    "StoreService",
    "start_store_service",
]
