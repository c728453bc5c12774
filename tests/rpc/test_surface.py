"""The store-calls part of the public surface: exported and documented."""

import importlib
import inspect

import pytest

import encore_client

STORE_NAMES = {
    "RemoteStore",
    "RemoteValue",
    "StoreResyncEvent",
    "TransferError",
    "UnknownStoreError",
    "list_stores",
}


def test_encore_client_exports_the_store_client():
    assert STORE_NAMES <= set(encore_client.__all__)
    for name in STORE_NAMES:
        obj = getattr(encore_client, name)
        assert obj.__doc__, name


@pytest.mark.parametrize(
    "module",
    [
        "encore_client._remote_store", "encore_client._store_cli",
        "encore_client._store_events", "encore_client._store_protocol",
        "encored._deferred", "encored.stores", "encored.stores.hosting",
        "encored.stores.operations", "encored.stores.transfers",
        "encored.stores.sessions", "encored.stores.wiring",
        "encored.stores.watcher",
    ],
)  # fmt: skip
def test_modules_document_themselves(module):
    mod = importlib.import_module(module)
    assert mod.__doc__
    for name in mod.__all__:
        obj = getattr(mod, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"{module}.{name} has no docstring"
            for attr, member in vars(obj).items() if inspect.isclass(obj) else ():
                if inspect.isfunction(member) and not attr.startswith("_"):
                    assert member.__doc__, f"{module}.{name}.{attr} has no docstring"


def test_every_store_operation_has_a_handler():
    from encore_client.wire.operations import STORE_OPS
    from encored.stores.operations import StoreService

    class _Host:
        stores: dict = {}
        watchers: dict = {}

    service = StoreService(_Host(), workers=1)
    try:
        assert set(service.operations()) == set(STORE_OPS)
        for operation in service.operations().values():
            assert operation.handler.__doc__
    finally:
        service.close()
