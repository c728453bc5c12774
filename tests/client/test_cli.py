"""The ``encore`` command line, run as real processes."""

import fcntl
import json
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time

import pytest

from encore_client import RemoteStore
from encored.testing import package_root


def encore(*args, runtime_dir, timeout=60, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(package_root()))
    return subprocess.run(
        [sys.executable, "-m", "encore_client.cli", "--runtime-dir", str(runtime_dir)]
        + list(args),
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        **kwargs,
    )


def spawn_encore(*args, runtime_dir, env=None, **kwargs):
    env = dict(env or os.environ, PYTHONPATH=str(package_root()))
    return subprocess.Popen(
        [sys.executable, "-m", "encore_client.cli", "--runtime-dir", str(runtime_dir)]
        + list(args),
        env=env,
        **kwargs,
    )


def wait_for_file(path, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "command exited early"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_without_a_daemon_commands_fail_at_once(runtime_dir):
    # A timeout far beyond the subprocess's own: waiting it out would fail
    # the test with TimeoutExpired.
    for command in (["status"], ["emit", "X"], ["ls", "memory"]):
        proc = encore("--timeout", "600", *command, runtime_dir=runtime_dir, timeout=30)
        assert proc.returncode == 1, command
        assert (
            f"encore {command[0]}: encored is not running on {runtime_dir}: "
            f"no socket at {runtime_dir / 'requests.ipc'}"
        ) in proc.stderr


def test_a_socket_left_by_a_killed_daemon_is_named(runtime_dir):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(runtime_dir / "requests.ipc"))
    stale.close()  # the file stays, nobody listens: what SIGKILL leaves
    for command in (["status"], ["ls", "memory"], ["events"]):
        proc = encore("--timeout", "600", *command, runtime_dir=runtime_dir, timeout=30)
        assert proc.returncode == 1, command
        assert "encored is not running" in proc.stderr
        assert "nothing listens on" in proc.stderr and "Traceback" not in proc.stderr


def test_a_daemon_that_accepts_but_never_answers_times_out(runtime_dir):
    # Something listens on the socket, so only asking can tell: the usual
    # timeout applies.
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        mute.bind(str(runtime_dir / "requests.ipc"))
        mute.listen()
        for command, message in (
            (["status"], f"encored is not answering on {runtime_dir}"),
            (["emit", "X"], "did not answer"),
            (["ls", "memory"], "did not answer within 0.5 s"),
        ):
            proc = encore("--timeout", "0.5", *command, runtime_dir=runtime_dir)
            assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    finally:
        mute.close()


def test_output_to_a_closed_pipe_ends_quietly(make_daemon):
    daemon = make_daemon('[stores.mem]\ntype = "memory"\n')
    store = RemoteStore("mem", daemon.runtime_dir)
    try:
        store.set("k", (b"v", {}))
    finally:
        store.disconnect()
    # `encore status | head -0`: the reader is gone before the first write.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        for command in (["status"], ["ls", "mem"], ["get", "mem", "k"]):
            proc = subprocess.run(
                [sys.executable, "-m", "encore_client.cli"]
                + ["--runtime-dir", str(daemon.runtime_dir), *command],
                stdout=write_end,
                stderr=subprocess.PIPE,
                text=True,
                env=dict(os.environ, PYTHONPATH=str(package_root())),
                timeout=60,
            )
            assert proc.returncode == 141, (command, proc.stderr)
            assert proc.stderr == "", command
    finally:
        os.close(write_end)


def test_status_of_a_running_daemon(make_daemon, bridges, tmp_path):
    # The embedded default configuration, with its data under tmp_path.
    daemon = make_daemon(None, env={"XDG_DATA_HOME": str(tmp_path)})
    bridges()  # one subscriber
    proc = encore("status", runtime_dir=daemon.runtime_dir)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("encored is running")
    assert f"pid:              {daemon.pid}" in out
    assert "default (filesystem), memory (memory)" in out
    assert "subscribers:      1" in out
    assert "uptime:" in out and "instance:" in out
    as_json = json.loads(
        encore("status", "--json", runtime_dir=daemon.runtime_dir).stdout
    )
    assert as_json["pid"] == daemon.pid and as_json["events_published"] == 0


def test_emit_and_follow_events(daemon, tmp_path):
    ready = tmp_path / "ready"
    follower = spawn_encore(
        "events",
        "--class",
        "FileEvent",
        "--filter",
        "directory=d",
        "--count",
        "2",
        "--ready-file",
        str(ready),
        runtime_dir=daemon.runtime_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_file(ready, follower)
        emits = [
            ["my.SaveEvent", "--base", "my.FileEvent", "directory=d", "size=3"],
            ["my.SaveEvent", "--base", "my.FileEvent", "directory=x"],
            ["my.OtherEvent", "directory=d"],
            ["my.OpenEvent", "directory=d", 'tags=["a", "b"]', "--base=my.FileEvent"],
        ]
        for args in emits:
            proc = encore("emit", *args, runtime_dir=daemon.runtime_dir)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.startswith(f"emitted {args[0]} as #")
        out, err = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 2, lines
    assert " #1 my.SaveEvent directory='d' size=3 from=" in lines[0]
    assert " #4 my.OpenEvent directory='d' tags=['a', 'b'] from=" in lines[1]


def test_emit_a_known_class_and_bad_arguments(daemon):
    proc = encore(
        "emit",
        "ProgressStartEvent",
        "operation_id=1",
        "steps=3",
        runtime_dir=daemon.runtime_dir,
    )
    assert proc.returncode == 0, proc.stderr
    assert "encore.events.progress_events.ProgressStartEvent as #1" in proc.stdout
    bad = encore("emit", "X", "not-an-assignment", runtime_dir=daemon.runtime_dir)
    assert bad.returncode == 2 and "expected NAME=VALUE" in bad.stderr
    bad = encore("emit", "os.system('x')", runtime_dir=daemon.runtime_dir)
    assert bad.returncode == 2 and "bad class name" in bad.stderr


PRODUCER = """
import sys
from encore.events.api import EventManager, ProgressManager
from encore_client import BusBridge

manager = EventManager()
with BusBridge(manager):
    with ProgressManager(manager, None, "copy", "Copying files", 4) as progress:
        for i in range(4):
            progress(f"file {i}", step=i + 1)
    warn = ProgressManager(manager, None, "scan", "Scanning", -1)
    warn.start()
    warn.step("still scanning")
    warn.end("disk almost full", exit_state="warning")
    try:
        with ProgressManager(manager, None, "upload", "Uploading", 10) as progress:
            progress("part 1", step=1)
            raise OSError("network down")
    except OSError:
        pass
"""


@pytest.mark.slow
def test_progress_view_of_another_process_on_a_terminal(daemon, tmp_path):
    """Story 2: ProgressManager in one process, `encore progress` in another."""
    ready = tmp_path / "ready"
    master, slave = pty.openpty()
    # A real terminal has a size; a fresh pseudo-terminal says 0x0.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    viewer = spawn_encore(
        "progress",
        "--ready-file",
        str(ready),
        runtime_dir=daemon.runtime_dir,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=dict(
            os.environ, PYTHONPATH=str(package_root()), TERM="xterm", COLUMNS="100"
        ),
    )
    os.close(slave)
    screen = b""
    try:
        wait_for_file(ready, viewer)
        env = dict(os.environ, PYTHONPATH=str(package_root()))
        env["ENCORE_RUNTIME_DIR"] = str(daemon.runtime_dir)
        producer = subprocess.run(
            [sys.executable, "-c", PRODUCER], env=env, capture_output=True, timeout=60
        )
        assert producer.returncode == 0, producer.stderr
        wanted = [
            b"Copying files",
            b"done",
            b"WARNING",
            b"disk almost full",
            b"EXCEPTION",
            b"network down",
        ]
        deadline = time.monotonic() + 30
        while not all(w in screen for w in wanted):
            assert time.monotonic() < deadline, screen.decode(errors="replace")
            if select.select([master], [], [], 0.1)[0]:
                screen += os.read(master, 65536)
        viewer.send_signal(signal.SIGINT)
        # Keep reading, as a terminal does: a viewer drawing its last frame
        # into a full pseudo-terminal would otherwise block and never exit.
        deadline = time.monotonic() + 20
        while viewer.poll() is None:
            assert time.monotonic() < deadline, "viewer did not exit on SIGINT"
            if select.select([master], [], [], 0.1)[0]:
                try:
                    screen += os.read(master, 65536)
                except OSError:  # EIO: the viewer closed its side
                    break
        assert viewer.wait(20) == 0
    finally:
        if viewer.poll() is None:
            viewer.kill()
            viewer.wait()
        os.close(master)
    assert b"\x1b[" in screen  # drawn in place, as on a terminal


def _ignore_sigint():
    # What a shell does to a command started in the background with `&`.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("command", ["events", "progress"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_following_commands_stop_cleanly_on_signals(daemon, tmp_path, command, signum):
    """Started in the background (SIGINT ignored), still stopped by a signal."""
    ready = tmp_path / "ready"
    proc = spawn_encore(
        command,
        "--ready-file",
        str(ready),
        runtime_dir=daemon.runtime_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_ignore_sigint,
    )
    try:
        wait_for_file(ready, proc)
        proc.send_signal(signum)
        assert proc.wait(20) == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
