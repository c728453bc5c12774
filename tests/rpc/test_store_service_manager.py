"""The manager a daemon that hosts stores runs on: the daemon's own kind.

``Daemon.only_published`` (publish a client's event as received when no
daemon-side listener could see it) needs a manager that counts listener
changes; by default ``start_store_service`` used to build a plain
``EventManager``, which silently turned that path off.
"""

from encore.storage.events import StoreSetEvent
from encore_client import _codec
from encored import Daemon, RuntimeDir, parse_config
from encored._publisher import DaemonEventManager
from encored.stores.wiring import start_store_service
from encored.testing import short_tempdir


def test_a_client_event_nobody_else_sees_is_published_as_received(in_process_host):
    config = parse_config('[stores.mem]\ntype = "memory"\n')
    manager, table, stores = start_store_service(config)
    with short_tempdir("encm") as base:
        directory = RuntimeDir(base)
        directory.acquire()
        daemon = Daemon(config, directory, manager, table)
        try:
            assert isinstance(manager, DaemonEventManager)
            names = _codec.event_class_names(StoreSetEvent)
            header = {"class": names[0], "bases": list(names[1:])}
            assert daemon.only_published(header)
            # A daemon-side listener for the class turns it off again.
            manager.connect(StoreSetEvent, lambda event: None)
            assert not daemon.only_published(header)
        finally:
            daemon.close()  # never ran: closes its wake-up pipe
            stores.close()
            directory.release()
