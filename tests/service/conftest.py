"""Fixtures for the service tests: a short runtime directory, real daemons."""

import pytest

from encored.testing import DaemonProcess, short_tempdir

#: Fast heartbeats so that tests see gaps and restarts quickly.
TEST_CONFIG = """
[daemon]
heartbeat_interval = 0.1
"""


@pytest.fixture
def runtime_dir():
    with short_tempdir() as path:
        yield path


@pytest.fixture
def make_daemon(runtime_dir):
    """Factory: ``make_daemon(config_text, start=True, env=None)``; all killed."""
    started = []

    def make(config_text=TEST_CONFIG, start=True, directory=None, env=None):
        daemon = DaemonProcess(directory or runtime_dir, config_text, env)
        started.append(daemon)
        if start:
            daemon.start()
        return daemon

    try:
        yield make
    finally:
        for daemon in started:
            daemon.cleanup()


def wait_until(condition, timeout=10.0, message="condition"):
    """Poll ``condition`` until true; fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(0.01)
