"""The service modules: documented, with an honest ``__all__``."""

import importlib
import inspect

import pytest

MODULES = [
    "encored._watchdog_ping",
    "encored._service",
    "encored._reload",
    "encored._curve",
    "encored._listen_config",
    "encore_client._keys",
    "encore_client._keys_cli",
    "encore_client._status_view",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_is_documented(name):
    module = importlib.import_module(name)
    assert module.__doc__ and module.__doc__.strip()
    for public in module.__all__:
        obj = getattr(module, public)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"{name}.{public} has no docstring"


def test_status_rows_for_an_old_daemon_and_a_full_one():
    from encore_client._status_view import service_rows

    assert service_rows({}) == []
    rows = dict(
        service_rows(
            {
                "service": {
                    "memory": {"rss": 2**25, "rss_peak": 2**26},
                    "threads": 9,
                    "previous_exit": {"clean": False, "pid": 42},
                    "watchdog": {"interval": 15.0, "pings": 3},
                    "replays": {"requests": 1, "events": 5, "gone": 7},
                    "errors": {
                        "OS_ERROR": {"count": 2, "last": "No space left", "ago": 1.5}
                    },
                    "reload": {"reloads": 1, "failures": 1, "last_error": ["bad"]},
                    "transfers": {
                        "downloads": 1,
                        "uploads": 2,
                        "sessions": 3,
                        "finished_downloads": 4,
                        "finished_bytes": 3 * 2**20,
                    },
                }
            }
        )
    )
    assert rows["memory"] == "32.0 MiB resident (peak 64.0 MiB), 9 threads"
    assert rows["previous exit"].startswith("NOT CLEAN: pid 42")
    assert rows["watchdog"] == "ping every 15 s, 3 sent"
    assert "7 asked for but gone (a subscriber fell" in rows["replays"]
    assert rows["error replies"] == "OS_ERROR x2 (last, 1.5 s ago: No space left)"
    assert rows["reloads"] == "1 applied, 1 rejected (last rejected: bad)"
    assert rows["transfers"] == (
        "1 downloads, 2 uploads open, 3 store sessions; "
        "4 finished downloads keep 3.0 MiB for repeated reads"
    )
