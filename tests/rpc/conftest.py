"""Fixtures for the store-calls tests: a real daemon, real bridges.

``rpc_env`` (module scope: no test outside this directory sees its
threads) runs one ``encored`` with a store of every
locally writable type and a bridge joining an ``EventManager`` to its bus;
tests that need a daemon of their own (restarts, kills, configs) start one
with :func:`encored.testing.run_daemon`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from encore.events.event_manager import EventManager
from encore_client import BusBridge
from encored.testing import package_root, run_daemon, short_tempdir


def store_config(base: Path) -> str:
    """A configuration with one store of each locally writable type."""
    return f"""
[daemon]
heartbeat_interval = 0.2

[stores.mem]
type = "memory"

[stores.fs]
type = "filesystem"
path = "{base}/fs"
create = true
watch = true

[stores.jfs]
type = "joined"
stores = ["fs"]

[stores.sq]
type = "sqlite"
location = "{base}/store.db"

[stores.jmem]
type = "memory"

[stores.jsq]
type = "sqlite"
location = "{base}/joined.db"

[stores.joined]
type = "joined"
stores = ["jmem", "jsq"]

[stores.mmount]
type = "memory"

[stores.mbacking]
type = "sqlite"
location = "{base}/backing.db"

[stores.mounted]
type = "mounted"
mount_point = ""
mount_store = "mmount"
backing_store = "mbacking"

[stores.authrec]
type = "memory"

[stores.auth]
type = "simple_auth"
store = "authrec"
encoder = "sha1"   # fast: the suite logs in for every test

[stores.cli]
type = "memory"

[stores.hostile]
type = "filesystem"
path = "{base}/hostile"
create = true
"""


def settle(bridge: BusBridge, timeout: float = 10.0) -> None:
    """Wait until every event the daemon published so far was dispatched."""
    bridge.settle(timeout)


@dataclass
class RpcEnv:
    """The shared daemon: its runtime dir, work dir, manager and bridge."""

    runtime_dir: Path
    base: Path
    event_manager: EventManager
    bridge: BusBridge
    daemon: object

    def settle(self) -> None:
        settle(self.bridge)


@pytest.fixture(scope="module")
def rpc_env():
    with short_tempdir("encr") as base:
        with run_daemon(
            base / "rt", store_config(base), env={"ENCORED_TRANSFER_TIMEOUT": "3"}
        ) as daemon:
            manager = EventManager()
            bridge = BusBridge(manager, base / "rt", timeout=10.0)
            bridge.start()
            try:
                yield RpcEnv(base / "rt", base, manager, bridge, daemon)
            finally:
                bridge.close()
                if os.environ.get("ENCORE_TEST_DUMP"):
                    print(daemon.stderr())


@pytest.fixture(scope="class")
def rpc_class_env(request, rpc_env):
    request.cls.env = rpc_env
    yield rpc_env


@pytest.fixture
def own_daemon():
    """Start daemons on a private runtime dir: ``own_daemon(config_text)``."""
    import contextlib

    with contextlib.ExitStack() as stack:
        base = stack.enter_context(short_tempdir("encq"))

        def start(config: str | None = None, env: dict | None = None):
            return stack.enter_context(run_daemon(base / "rt", config, env=env))

        start.base = base  # type: ignore[attr-defined]
        yield start


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child Python process importing the worktree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(package_root()), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    env.update(extra)
    return env


@pytest.fixture
def child_python():
    """``child_python(code, *args)`` -> Popen of ``sys.executable -c code``."""
    import subprocess

    started: list[subprocess.Popen] = []

    def run(code: str, *args: str, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **kw,
        )
        started.append(proc)
        return proc

    yield run
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def in_process_host():
    """For tests that build a ``StoreHost`` in this process.

    A host registers the daemon's source adapters with the codec for the
    whole process (its stores become event sources there); the client's
    own adapters (a source arrives as a ``RemoteStore``) are put back
    afterwards, or later tests' bridges would decode store events wrongly.
    """
    from encore_client import _codec

    encoders = list(_codec._source_encoders)
    decoders = dict(_codec._source_decoders)
    try:
        yield
    finally:
        _codec._source_encoders[:] = encoders
        _codec._source_decoders.clear()
        _codec._source_decoders.update(decoders)
