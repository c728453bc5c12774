"""Fault-injection suite: shared fixtures and helpers.

Run it on its own with ``python -m pytest tests/faults -v`` (about three
minutes on two cores; ``-m "not slow"`` for the quick cases only).  With
``ENCORE_FAULT_FIGURES=FILE`` every case appends its figures to FILE, one
JSON object a line; ``docs/reliability.md`` records them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from encored.testing import DaemonProcess, package_root, short_tempdir, wait_until


@pytest.fixture
def base_dir():
    """A short private directory under /tmp (ipc paths are limited)."""
    with short_tempdir("encf") as path:
        yield path


@pytest.fixture
def make_daemon(base_dir):
    """Factory: ``make_daemon(config_text, env=None, start=True)``.

    The daemon's runtime directory is ``base_dir / "rt"``.  Every daemon
    made is killed at the end of the test, by its PID.
    """
    made: list[DaemonProcess] = []

    def make(config_text, env=None, start=True):
        daemon = DaemonProcess(base_dir / "rt", config_text, env)
        made.append(daemon)
        if start:
            daemon.start()
        return daemon

    try:
        yield make
    finally:
        for daemon in made:
            daemon.cleanup()


@pytest.fixture
def wait():
    """The :func:`wait_until` helper."""
    return wait_until


def rss_of(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes (from /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.fixture
def rss():
    """The :func:`rss_of` helper."""
    return rss_of


def client_env(runtime_dir: Path, extra_path: Path | None = None) -> dict[str, str]:
    """Environment for a client subprocess of the daemon on ``runtime_dir``."""
    env = dict(os.environ)
    paths = [str(package_root())]
    if extra_path is not None:
        paths.insert(0, str(extra_path))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["ENCORE_RUNTIME_DIR"] = str(runtime_dir)
    env.pop("NOTIFY_SOCKET", None)
    return env


def encore_status(runtime_dir: Path, as_json: bool = True) -> dict | str:
    """Run the real ``encore status`` command; its JSON (or its text)."""
    cmd = [sys.executable, "-m", "encore_client.cli", "--runtime-dir", str(runtime_dir)]
    cmd += ["status", "--json"] if as_json else ["status"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=client_env(runtime_dir), timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if as_json else proc.stdout


@pytest.fixture
def status():
    """The :func:`encore_status` helper."""
    return encore_status


@pytest.fixture
def record(request):
    """``record(**figures)``: keep this case's figures (see the module doc)."""

    def write(**figures):
        entry = {"case": request.node.name, **figures}
        print("FIGURES", json.dumps(entry, sort_keys=True))
        target = os.environ.get("ENCORE_FAULT_FIGURES")
        if target:
            with open(target, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, sort_keys=True) + "\n")

    return write
