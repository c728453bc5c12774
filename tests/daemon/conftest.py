"""Fixtures: a short private runtime directory and a real daemon on it."""

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
    """Factory: ``make_daemon(config_text=None, start=True)``; all are killed."""
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


@pytest.fixture
def daemon(make_daemon):
    return make_daemon()
