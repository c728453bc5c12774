"""Runtime directory, lock, systemd notifications and signals."""

import os
import signal
import socket
import stat
import subprocess
import sys

import pytest

from encore_client import ZmqTransport, resolve_runtime_dir
from encore_client._paths import endpoints
from encored import AlreadyRunningError, RuntimeDir, RuntimeDirError
from encored.testing import package_root


def test_runtime_dir_rule(monkeypatch):
    monkeypatch.setenv("ENCORE_RUNTIME_DIR", "/tmp/a")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/7")
    assert str(resolve_runtime_dir("/tmp/explicit")) == "/tmp/explicit"
    assert str(resolve_runtime_dir()) == "/tmp/a"
    monkeypatch.delenv("ENCORE_RUNTIME_DIR")
    assert str(resolve_runtime_dir()) == "/run/user/7/encored"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert str(resolve_runtime_dir()) == f"/tmp/encored-{os.getuid()}"


def test_too_long_runtime_dir_is_refused_clearly():
    with pytest.raises(ValueError, match="too long for an ipc socket path"):
        endpoints("/tmp/" + "x" * 120)


def test_runtime_dir_is_created_private_and_locked(runtime_dir):
    target = runtime_dir / "sub" / "encored"
    with RuntimeDir(target):
        assert stat.S_IMODE(target.stat().st_mode) == 0o700
        with pytest.raises(AlreadyRunningError, match=f"pid {os.getpid()}"):
            RuntimeDir(target).acquire()
    # Released: a new daemon may take it.
    with RuntimeDir(target):
        pass


def test_open_runtime_dir_is_made_private(runtime_dir):
    os.chmod(runtime_dir, 0o777)
    with RuntimeDir(runtime_dir):
        assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700


def test_runtime_dir_of_another_user_is_refused(runtime_dir):
    if os.getuid() == 0:
        foreign = runtime_dir / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        owner = 65534
    else:
        foreign, owner = runtime_dir.parent, runtime_dir.parent.stat().st_uid
    with pytest.raises(RuntimeDirError, match=f"belongs to uid {owner}"):
        RuntimeDir(foreign).acquire()


def test_ready_then_stopping_on_sigterm(daemon):
    with ZmqTransport(daemon.runtime_dir, timeout=5) as transport:
        assert "instance" in transport.request("ping").result
    sockets = [
        daemon.runtime_dir / name
        for name in ("events.ipc", "events-in.ipc", "requests.ipc")
    ]
    for path in sockets:
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    assert daemon.stop(signal.SIGTERM) == 0
    daemon.wait_notification("STOPPING=1")
    assert "received SIGTERM, shutting down" in daemon.stderr()


def test_sigint_shuts_down_cleanly(daemon):
    assert daemon.stop(signal.SIGINT) == 0
    daemon.wait_notification("STOPPING=1")


def test_abstract_notify_socket(make_daemon):
    name = f"encore-test-{os.getpid()}-{id(make_daemon)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(15)
        daemon = make_daemon(start=False, env={"NOTIFY_SOCKET": "@" + name})
        daemon.start(wait=False)
        assert "READY=1" in listener.recv(4096).decode().splitlines()
        assert daemon.stop() == 0
        assert "STOPPING=1" in listener.recv(4096).decode().splitlines()


def test_second_daemon_on_same_directory_is_refused(daemon):
    env = dict(os.environ, PYTHONPATH=str(package_root()))
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.run(
        [sys.executable, "-m", "encored", "--runtime-dir", str(daemon.runtime_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1
    assert f"another encored (pid {daemon.pid}) is already running" in proc.stderr
    # The first one still owns its sockets and answers.
    with ZmqTransport(daemon.runtime_dir, timeout=5) as transport:
        assert transport.request("status").result["pid"] == daemon.pid


def test_restart_after_kill_reuses_the_directory(daemon):
    first = daemon.pid
    daemon.kill()
    daemon.start()
    assert daemon.pid != first
    with ZmqTransport(daemon.runtime_dir, timeout=5) as transport:
        assert transport.request("status").result["pid"] == daemon.pid


def test_journald_log_format(make_daemon):
    daemon = make_daemon(env={"JOURNAL_STREAM": "8:1234"})
    daemon.stop()
    lines = daemon.stderr().splitlines()
    assert lines and all(line.startswith("<") for line in lines), lines
    assert any(line.startswith("<6>encored: encored ") for line in lines)


@pytest.mark.parametrize("unit", ["user/encored.service", "system/encored.service"])
def test_unit_files_use_notify_and_do_not_restart_on_bad_config(unit):
    import configparser

    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(package_root() / "systemd" / unit)
    service = parser["Service"]
    assert service["Type"] == "notify"  # we send READY=1 and STOPPING=1
    assert "encored" in service["ExecStart"]
    assert service["RestartPreventExitStatus"] == "78"  # EX_CONFIG
