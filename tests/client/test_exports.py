"""The public surface of encore_client and encored: exported, documented."""

import importlib
import inspect

import pytest

EXPECTED = {
    "encore_client": {
        "PROTOCOL_VERSION", "BusBridge", "BusInfo", "DaemonUnavailableError",
        "EncoreError", "Endpoints", "ErrorCode", "EventsLostEvent", "ProtocolError",
        "BusStateEvent",
        "RemoteEvent", "RemoteObject", "RemoteSource", "Reply",
        "RequestTooLargeError", "ServerError", "Transport", "UnknownOperationError",
        "ZmqTransport", "bus_info", "endpoints", "resolve_runtime_dir",
        "RemoteStore", "RemoteValue", "StoreResyncEvent", "TransferError",
        "UnknownStoreError", "list_stores",
    },
    "encored": {
        "STORE_TYPES", "BUS_OPERATIONS", "AlreadyRunningError", "Config",
        "ConfigError", "Daemon", "DaemonSettings", "EpochLog", "Operation",
        "Request", "RequestError", "Response", "RuntimeDir", "RuntimeDirError",
        "StoreConfig", "load_config", "merge_tables", "notify", "parse_config",
    },
}  # fmt: skip


@pytest.mark.parametrize("package", sorted(EXPECTED))
def test_exported_names(package):
    module = importlib.import_module(package)
    assert set(module.__all__) == EXPECTED[package]
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"{package}.{name} has no docstring"


def _all_modules():
    import pkgutil

    names = []
    for package in ("encore_client", "encored"):
        pkg = importlib.import_module(package)
        names += [
            info.name for info in pkgutil.walk_packages(pkg.__path__, package + ".")
        ]
    return sorted(names)


@pytest.mark.parametrize("module", _all_modules())
def test_every_module_has_a_docstring_and_all(module):
    mod = importlib.import_module(module)
    assert mod.__doc__
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.__all__ names missing {name}"


def test_handler_tables_merge_and_refuse_duplicates():
    from encored import BUS_OPERATIONS, merge_tables

    merged = merge_tables(BUS_OPERATIONS, {"store_get": BUS_OPERATIONS["ping"]})
    assert "store_get" in merged and "emit" in merged
    with pytest.raises(ValueError, match="'ping' is defined twice"):
        merge_tables(BUS_OPERATIONS, {"ping": BUS_OPERATIONS["ping"]})
