"""A clean stop removes the socket files; ``encore status`` tells the cases apart.

After SIGTERM the runtime directory holds no socket, and ``encore status``
says no daemon runs (and that the last one stopped cleanly).  After
SIGKILL the sockets stay, and it says they were left by a daemon that did
not stop, naming the pid.  A new daemon on either directory starts.
"""

import json
import os
import signal
import socket
import subprocess
import sys

from encored.testing import package_root


def encore_status(runtime_dir):
    env = dict(os.environ, PYTHONPATH=str(package_root()))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "encore_client.cli",
            "--runtime-dir",
            str(runtime_dir),
            "--timeout",
            "600",  # waiting it out would fail the test with TimeoutExpired
            "status",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def sockets(runtime_dir):
    return sorted(name for name in os.listdir(runtime_dir) if name.endswith(".ipc"))


def test_a_clean_stop_removes_the_sockets_and_status_says_no_daemon(
    make_daemon, runtime_dir
):
    daemon = make_daemon()
    assert sockets(runtime_dir) == ["events-in.ipc", "events.ipc", "requests.ipc"]
    pid = daemon.pid
    assert daemon.stop(signal.SIGTERM) == 0
    assert sockets(runtime_dir) == []
    proc = encore_status(runtime_dir)
    assert proc.returncode == 1
    assert (
        f"encore status: encored is not running on {runtime_dir}: no socket at "
        f"{runtime_dir / 'requests.ipc'} (the last daemon, pid {pid}, stopped "
        "cleanly)"
    ) in proc.stderr, proc.stderr
    assert "did not stop" not in proc.stderr
    # SIGINT (Ctrl-C in a terminal) is a clean stop too.
    daemon.start()
    assert daemon.stop(signal.SIGINT) == 0
    assert sockets(runtime_dir) == []


def test_after_a_kill_status_names_the_stale_sockets(make_daemon, runtime_dir):
    daemon = make_daemon()
    pid = daemon.pid
    daemon.kill()
    assert sockets(runtime_dir) == ["events-in.ipc", "events.ipc", "requests.ipc"]
    proc = encore_status(runtime_dir)
    assert proc.returncode == 1
    assert (
        f"encore status: encored is not running on {runtime_dir}: nothing listens "
        f"on {runtime_dir / 'requests.ipc'}, left by a daemon that did not stop "
        f"(pid {pid} was killed or crashed)"
    ) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    # The next daemon takes the directory over, and a clean stop then
    # leaves it with no socket.
    daemon.start()
    assert encore_status(runtime_dir).returncode == 0
    assert daemon.stop() == 0
    assert sockets(runtime_dir) == []


def test_a_socket_left_by_a_clean_stop_of_an_older_daemon(runtime_dir):
    # Daemons before this change stopped cleanly and left the files: the
    # message must not call that a kill.
    (runtime_dir / "encored.run").write_text(
        json.dumps({"state": "stopped", "pid": 4242, "started": 0.0})
    )
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(runtime_dir / "requests.ipc"))
    stale.close()
    proc = encore_status(runtime_dir)
    assert proc.returncode == 1
    assert (
        f"nothing listens on {runtime_dir / 'requests.ipc'} (the last daemon, "
        "pid 4242, stopped cleanly but left it)"
    ) in proc.stderr, proc.stderr
    assert "did not stop" not in proc.stderr
