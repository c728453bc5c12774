"""Fixtures shared by several test directories.

A short private runtime directory, a real daemon on it, client processes and
bridges (tests/daemon, tests/client, tests/service); and an event recorder
(tests/storage_composite, tests/storage_http).
"""

import threading

import pytest

from encored.testing import DaemonProcess, short_tempdir, wait_until

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


class PythonProcess:
    """A client subprocess running a script; stdout read line by line."""

    def __init__(self, script, cwd, env):
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", script],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = []
        self._buffer = b""

    def readline(self, timeout=20.0):
        import os
        import select
        import time

        # Read the pipe ourselves: a buffered reader would hide lines that
        # arrived together from select().
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.1))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break  # EOF
                self._buffer += chunk
        if b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            self.lines.append(line.decode())
            return self.lines[-1]
        raise AssertionError(
            f"no line from client (exit {self.proc.poll()}); stderr:\n"
            + (self.proc.stderr.read() if self.proc.poll() is not None else "")
        )

    def wait_for(self, text, timeout=20.0):
        while True:
            line = self.readline(timeout)
            if text in line:
                return line

    def finish(self, timeout=30.0):
        out, err = self.proc.communicate(timeout=timeout)
        rest = self._buffer.decode() + out
        self._buffer = b""
        self.lines.extend(rest.splitlines())
        assert self.proc.returncode == 0, f"client failed:\n{err}"
        return self.lines

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def clients(runtime_dir, tmp_path):
    """Factory: ``clients(script)`` runs a Python client against the daemon.

    Scripts run with cwd ``tmp_path`` (so modules written there import) and
    ``ENCORE_RUNTIME_DIR`` set to the daemon's directory.
    """
    import os

    from encored.testing import package_root

    started = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(package_root())])
    env["ENCORE_RUNTIME_DIR"] = str(runtime_dir)

    def start(script):
        proc = PythonProcess(script, tmp_path, env)
        started.append(proc)
        return proc

    start.env = env
    start.dir = tmp_path
    try:
        yield start
    finally:
        for proc in started:
            proc.kill()


@pytest.fixture
def bridges(runtime_dir):
    """Factory: ``bridges(manager=None, **kw)`` -> a started BusBridge."""
    from encore.events.api import EventManager
    from encore_client import BusBridge

    made = []

    def make(manager=None, **kwargs):
        bridge = BusBridge(manager or EventManager(), runtime_dir, **kwargs)
        made.append(bridge)
        return bridge.start()

    try:
        yield make
    finally:
        for bridge in made:
            bridge.close(flush_timeout=1)


@pytest.fixture
def wait():
    """The ``wait_until(condition, timeout, message)`` helper."""
    return wait_until


# -- event recording, for the storage tests ------------------------------------
# Used by tests/storage_composite and tests/storage_http (one copy here
# instead of one in each of their conftests).


class EventRecorder:
    """Collects the events a manager emits, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list = []

    def __call__(self, event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, cls, source=None) -> list:
        """The recorded events that are instances of ``cls`` (from ``source``)."""
        with self._lock:
            return [
                e
                for e in self.events
                if isinstance(e, cls) and (source is None or e.source is source)
            ]

    def clear(self) -> None:
        """Forget what was recorded."""
        with self._lock:
            self.events.clear()


@pytest.fixture
def event_manager():
    """A private `EventManager`, so tests never share listeners."""
    from encore.events.event_manager import EventManager

    return EventManager()


@pytest.fixture
def recorder(event_manager) -> EventRecorder:
    """Records every `BaseEvent` emitted on ``event_manager``."""
    from encore.events.abstract_event_manager import BaseEvent

    recorder = EventRecorder()
    event_manager.connect(BaseEvent, recorder)
    return recorder
