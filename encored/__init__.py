"""encored: the daemon that shares one event bus (and stores) between processes.

Run it as ``encored`` (or ``python -m encored``).  The names below are for
embedding and testing the daemon in Python.
"""

from ._config import (
    STORE_TYPES,
    Config,
    ConfigError,
    DaemonSettings,
    StoreConfig,
    load_config,
    parse_config,
)
from ._epoch_log import EpochLog
from ._handlers import (
    BUS_OPERATIONS,
    Operation,
    Request,
    RequestError,
    Response,
    merge_tables,
)
from ._notify import notify
from ._runtime_dir import AlreadyRunningError, RuntimeDir, RuntimeDirError
from ._server import Daemon

__all__ = [
    "STORE_TYPES",
    "BUS_OPERATIONS",
    "AlreadyRunningError",
    "Config",
    "ConfigError",
    "Daemon",
    "DaemonSettings",
    "EpochLog",
    "Operation",
    "Request",
    "RequestError",
    "Response",
    "RuntimeDir",
    "RuntimeDirError",
    "StoreConfig",
    "load_config",
    "merge_tables",
    "notify",
    "parse_config",
]
