"""Fixtures for the bus hot-path tests: a real daemon and started bridges."""

import time

import pytest

from encored.testing import DaemonProcess, short_tempdir

#: Fast heartbeats, a small PUB high-water mark (so a subscriber that stops
#: reading loses messages and must replay them) and a replay buffer that
#: holds everything the tests send.
CONFIG = """
[daemon]
heartbeat_interval = 0.1
publish_hwm = 20
event_buffer = 100000
"""


@pytest.fixture
def runtime_dir():
    with short_tempdir() as path:
        yield path


@pytest.fixture
def daemon(runtime_dir):
    daemon = DaemonProcess(runtime_dir, CONFIG)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.cleanup()


@pytest.fixture
def bridges(runtime_dir, daemon):
    """Factory: ``bridges(manager, **kw)`` -> a started ``BusBridge``."""
    from encore_client import BusBridge

    made = []

    def make(manager, **kwargs):
        bridge = BusBridge(manager, runtime_dir, **kwargs)
        made.append(bridge)
        return bridge.start()

    try:
        yield make
    finally:
        for bridge in made:
            bridge.close(flush_timeout=1)


def _wait_until(condition, timeout=20.0, message="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.005)


@pytest.fixture
def wait():
    """``wait(condition, timeout=20, message=...)``: poll with a deadline."""
    return _wait_until
