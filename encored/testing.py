"""Run a real ``encored`` in a subprocess, for tests of anything that uses it.

:func:`run_daemon` starts ``python -m encored`` on a runtime directory,
plays systemd's part (a Unix datagram ``NOTIFY_SOCKET``) to know exactly
when the daemon is ready, and always stops the process it started, by its
PID, even when the test fails.
"""

from __future__ import annotations

__all__ = ["DaemonProcess", "run_daemon", "short_tempdir", "package_root", "wait_until"]

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path


def package_root() -> Path:
    """The directory that holds the ``encore*`` packages (for PYTHONPATH)."""
    return Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def short_tempdir(prefix: str = "enc") -> Iterator[Path]:
    """A fresh private directory under /tmp, short enough for ipc paths."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class DaemonProcess:
    """A running ``encored`` subprocess and the notifications it sent.

    Attributes
    ----------
    runtime_dir : Path
    process : subprocess.Popen
    notifications : list of str
        Every datagram received on the fake ``NOTIFY_SOCKET`` so far (read
        them with :meth:`wait_notification`).
    """

    def __init__(
        self,
        runtime_dir: Path,
        config_text: str | None = None,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.runtime_dir = Path(runtime_dir)
        self._work = Path(tempfile.mkdtemp(prefix="encd", dir="/tmp"))
        self.config_path: Path | None = None
        if config_text is not None:
            self.config_path = self._work / "encored.toml"
            self.config_path.write_text(config_text)
        self.env = dict(env or {})
        self.args = args
        self.notifications: list[str] = []
        self.stderr_path = self._work / "stderr.log"
        self._notify_path = self._work / "notify"
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(self._notify_path))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """PID of the current daemon process."""
        assert self.process is not None
        return self.process.pid

    def start(self, wait: bool = True, timeout: float = 15.0) -> DaemonProcess:
        """Start the daemon; with ``wait``, return once it sent READY=1.

        Raises ``RuntimeError`` (with the daemon's stderr) if it exits or
        does not become ready within ``timeout``.
        """
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(package_root()), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        env["NOTIFY_SOCKET"] = str(self._notify_path)
        env.pop("JOURNAL_STREAM", None)
        env.update(self.env)
        cmd = [sys.executable, "-m", "encored", "--runtime-dir", str(self.runtime_dir)]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        cmd += list(self.args)
        self.notifications = []
        with open(self.stderr_path, "ab") as err:
            self.process = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err
            )
        if wait:
            self.wait_notification("READY=1", timeout)
        return self

    def wait_notification(self, text: str, timeout: float = 15.0) -> str:
        """Wait for a notification containing the line ``text``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.notifications:
                if text in message.splitlines():
                    self.notifications.remove(message)
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._notify.settimeout(min(remaining, 0.2))
            try:
                self.notifications.append(self._notify.recv(4096).decode())
            except TimeoutError:
                if self.process is not None and self.process.poll() is not None:
                    break
        raise RuntimeError(
            f"encored did not send {text!r} (exit status "
            f"{self.process.poll() if self.process else None}); stderr:\n"
            + self.stderr()
        )

    def stderr(self) -> str:
        """Everything the daemon wrote to stderr so far."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` to the daemon and return its exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(
                "encored did not exit after " + signal.Signals(sig).name
            ) from None

    def kill(self) -> None:
        """SIGKILL the daemon (a crash) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait()

    def cleanup(self) -> None:
        """Kill the process if it still runs; remove the work directory."""
        try:
            self.kill()
        finally:
            self._notify.close()
            shutil.rmtree(self._work, ignore_errors=True)


@contextlib.contextmanager
def run_daemon(
    runtime_dir: str | os.PathLike[str],
    config_text: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[DaemonProcess]:
    """Start a ready ``encored`` on ``runtime_dir``; kill it on exit."""
    daemon = DaemonProcess(Path(runtime_dir), config_text, env)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.cleanup()


def wait_until(
    condition: Callable[[], object],
    timeout: float = 10.0,
    message: str = "condition",
    interval: float = 0.005,
) -> None:
    """Poll ``condition`` until it is true.

    Raises
    ------
    AssertionError
        If it is still false after ``timeout`` seconds, naming ``message``.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)
