"""The unit files pass ``systemd-analyze verify``; the daemon feeds the watchdog."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from encored._watchdog_ping import WatchdogPinger, watchdog_interval
from encored.testing import package_root

UNITS = package_root() / "systemd"
USER_UNIT = UNITS / "user" / "encored.service"
SYSTEM_UNIT = UNITS / "system" / "encored.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``key -> [values]`` of a unit file (sections merged; comments dropped)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def verify(unit_text: str, tmp_path: Path, user: bool) -> subprocess.CompletedProcess:
    """Run ``systemd-analyze [--user] verify`` on ``unit_text``.

    ``verify`` insists that ExecStart's program exists and is executable,
    so the installed path is replaced by a real executable wrapper that
    runs this checkout's daemon; everything else is verified as shipped.
    """
    wrapper = tmp_path / "bin" / "encored"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(
        f"#!/bin/sh\nPYTHONPATH={package_root()} exec {sys.executable} -m encored"
        ' "$@"\n'
    )
    wrapper.chmod(0o755)
    text = unit_text.replace("%h/.local/bin/encored", str(wrapper)).replace(
        "/usr/local/bin/encored", str(wrapper)
    )
    unit = tmp_path / "encored.service"
    unit.write_text(text)
    env = dict(os.environ)
    cmd = [SYSTEMD_ANALYZE]
    if user:
        # A user manager needs a runtime directory to exist, even offline.
        runtime = tmp_path / "xdg-runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        cmd.append("--user")
    cmd += ["verify", str(unit)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize(
    "unit, user", [(USER_UNIT, True), (SYSTEM_UNIT, False)], ids=["user", "system"]
)
def test_units_pass_systemd_analyze_verify(unit, user, tmp_path):
    result = verify(unit.read_text(), tmp_path, user)
    # verify exits 0 on unknown keys and only warns: any output is a failure.
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", (
        result.stdout + result.stderr
    )


def test_verify_catches_a_mistake(tmp_path):
    """The check above can fail: a misspelt key is reported."""
    text = SYSTEM_UNIT.read_text().replace("WatchdogSec=", "WatchdogSecs=")
    result = verify(text, tmp_path, user=False)
    assert "Unknown key" in result.stderr


@pytest.mark.parametrize("unit", [USER_UNIT, SYSTEM_UNIT], ids=["user", "system"])
def test_units_are_notify_services_with_watchdog_and_sandbox(unit):
    s = unit_settings(unit)
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert s["Restart"] == ["on-failure"]
    assert int(s["WatchdogSec"][0]) >= 10
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for option in ("NoNewPrivileges", "PrivateTmp"):
        assert s[option] == ["yes"], option
    assert "ProtectSystem" in s


def test_system_unit_runs_as_its_own_user_with_private_dirs():
    s = unit_settings(SYSTEM_UNIT)
    assert s["User"] == ["encored"] and s["Group"] == ["encored"]
    assert s["StateDirectory"] == ["encored"]
    assert s["RuntimeDirectory"] == ["encored"]
    assert s["RuntimeDirectoryMode"] == ["0700"]
    assert s["ProtectHome"] == ["yes"] and s["ProtectSystem"] == ["strict"]
    assert s["ExecStart"][0].endswith("encored --runtime-dir /run/encored")


# -- the watchdog ---------------------------------------------------------------


def test_watchdog_interval_from_environment():
    pid = str(os.getpid())
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": pid}) == 1
    # Meant for another process (leaked into a child): not ours to feed.
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_pinger_pings_when_due():
    sent = []
    pinger = WatchdogPinger(0.5, send=lambda *lines: sent.append(lines) or True)
    assert pinger.tick(100.0) == 100.5
    assert pinger.tick(100.2) == 100.5  # not due yet
    assert pinger.tick(100.6) == 101.1
    assert sent == [("WATCHDOG=1",), ("WATCHDOG=1",)]
    assert pinger.pings == 2


def _count_pings(sock: socket.socket, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    pings = 0
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            break
        pings += message.splitlines().count("WATCHDOG=1")
    return pings


@pytest.mark.parametrize("pid_matches", [True, False], ids=["ours", "not-ours"])
def test_daemon_sends_watchdog_at_half_the_timeout(make_daemon, pid_matches):
    """A Unix datagram socket plays systemd, as for READY=1."""
    name = f"encore-wd-{os.getpid()}-{int(pid_matches)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        # 0.4 s timeout: a ping every 0.2 s.  Without WATCHDOG_PID the
        # variable is taken as ours; with another PID it is not.
        env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "400000"}
        if not pid_matches:
            env["WATCHDOG_PID"] = "1"
        daemon = make_daemon(start=False, env=env)
        daemon.start(wait=False)
        listener.settimeout(15)
        assert "READY=1" in listener.recv(4096).decode().splitlines()
        pings = _count_pings(listener, 2.0)
        if pid_matches:
            # 2 s / 0.2 s = 10 pings; allow for a loaded machine, but far
            # more than the heartbeat interval alone would give.
            assert 4 <= pings <= 12, pings
        else:
            assert pings == 0
        assert daemon.stop() == 0
