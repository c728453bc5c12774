"""RemoteStore without a daemon: the fast answer, and a restart waited for.

Issue 16, item 6: with no daemon a proxy says so at once, as ``encore``
does, instead of waiting out its timeout; a proxy that has reached a daemon
still waits (retrying) for that daemon to come back.
"""

import socket
import threading
import time

import pytest

from encore_client import DaemonUnavailableError, RemoteStore
from encore_client._remote_store import list_stores

#: Far beyond what a fast answer takes: waiting it out fails the test.
LONG = 60.0
#: What "at once" is allowed on a loaded machine (it takes ~1 ms).
FAST = 2.0


def timed(call):
    start = time.monotonic()
    with pytest.raises(DaemonUnavailableError) as info:
        call()
    return time.monotonic() - start, str(info.value)


def test_no_socket_file_is_answered_at_once(runtime_dir):
    store = RemoteStore("memory", runtime_dir, timeout=LONG)
    try:
        for call in (
            store.connect,
            lambda: store.get_metadata("k"),
            lambda: store.set_data("k", b"v"),
        ):
            elapsed, message = timed(call)
            assert elapsed < FAST
            assert message == (
                f"encored is not running on {runtime_dir}: "
                f"no socket at {runtime_dir / 'requests.ipc'}"
            )
        elapsed, _ = timed(lambda: list_stores(runtime_dir, timeout=LONG))
        assert elapsed < FAST
    finally:
        store.disconnect()


def test_a_socket_nobody_listens_on_is_answered_at_once(runtime_dir):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(runtime_dir / "requests.ipc"))
    stale.close()  # what a killed daemon leaves
    store = RemoteStore("memory", runtime_dir, timeout=LONG)
    try:
        elapsed, message = timed(lambda: store.exists("k"))
        assert elapsed < FAST
        assert "encored is not running" in message and "nothing listens" in message
    finally:
        store.disconnect()


def test_a_daemon_that_was_there_is_waited_for_across_a_restart(make_daemon):
    daemon = make_daemon(
        '[daemon]\nheartbeat_interval = 0.1\n[stores.memory]\ntype = "memory"\n'
    )
    store = RemoteStore("memory", daemon.runtime_dir, timeout=LONG)
    try:
        store.set_data("before", b"1")
        daemon.stop()
        ready_at = []

        def restart():
            daemon.start()
            ready_at.append(time.monotonic())

        restarter = threading.Thread(target=restart)
        asked_at = time.monotonic()
        restarter.start()
        try:
            # Sent while no daemon runs: retried until the new one answers.
            store.set_data("after", b"2")
            assert store.get_data("after").read() == b"2"
        finally:
            restarter.join(60)
        assert ready_at and asked_at < ready_at[0]
    finally:
        store.disconnect()
