"""Fixtures for the URL store tests: real HTTP servers on 127.0.0.1.

The server classes live in `encore.storage.http_test_servers` so that other
suites can start them too; these fixtures only tie their lifetime to a test
(stopped, sockets closed and threads joined even when the test fails).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from encore.storage.http_test_servers import RestStoreServer, StaticSiteServer


@pytest.fixture
def rest_server() -> Iterator[RestStoreServer]:
    """A running `RestStoreServer` with no authentication."""
    with RestStoreServer() as server:
        yield server


@pytest.fixture
def static_server() -> Iterator[StaticSiteServer]:
    """A running `StaticSiteServer` over a fresh temporary directory."""
    with StaticSiteServer() as server:
        yield server


@pytest.fixture
def wait_for() -> Callable[..., None]:
    """Wait until ``condition()`` is true, failing the test at a deadline."""

    def wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        event = threading.Event()
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {timeout} s")
            event.wait(0.01)

    return wait


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch) -> None:
    """Keep loopback requests off any proxy configured in the environment."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
