"""What a new user of ``encore`` meets (issue 16, items 8-12).

Ctrl-C in a transfer, options anywhere, ``emit``'s names, binary data on a
terminal: every test runs the real command against a real daemon (and a
real HTTP server on 127.0.0.1 where a transfer must stall).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from encore_client import RemoteStore
from encored.testing import package_root

BIG = 8 * 1024 * 1024
#: More than one chunk (4 MiB), so a get has written some when it stalls.
BEFORE_STALL = 5 * 1024 * 1024


def command(runtime_dir, *args):
    return [
        sys.executable,
        "-m",
        "encore_client.cli",
        "--runtime-dir",
        str(runtime_dir),
        *args,
    ]


def cli_env():
    return dict(os.environ, PYTHONPATH=str(package_root()))


def encore(runtime_dir, *args, **kwargs):
    return subprocess.run(
        command(runtime_dir, *args),
        capture_output=True,
        env=cli_env(),
        timeout=60,
        **kwargs,
    )


class StallingSite:
    """A static site whose one key, ``big``, stops half way until released."""

    def __init__(self):
        self.release = threading.Event()
        self.stalled = threading.Event()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _headers(self, length):
                self.send_response(200)
                self.send_header("Content-Length", str(length))
                self.end_headers()

            def do_HEAD(self):
                if self.path == "/data/big":
                    self._headers(BIG)
                else:
                    self.send_error(404)

            def do_GET(self):
                if self.path == "/index.json":
                    body = json.dumps({"big": {}}).encode()
                    self._headers(len(body))
                    self.wfile.write(body)
                elif self.path == "/data/big":
                    self._headers(BIG)
                    try:
                        self.wfile.write(b"x" * BEFORE_STALL)
                        self.wfile.flush()
                        site.stalled.set()
                        site.release.wait(60)
                        self.wfile.write(b"x" * (BIG - BEFORE_STALL))
                    except OSError:
                        pass  # the daemon gave up on the download
                else:
                    self.send_error(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def site():
    site = StallingSite()
    try:
        yield site
    finally:
        site.close()


@pytest.fixture
def cli_daemon(make_daemon, site, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    return make_daemon(
        "[daemon]\nheartbeat_interval = 0.2\n"
        '[stores.mem]\ntype = "memory"\n'
        "[stores.web]\n"
        'type = "static_url"\n'
        f'root_url = "{site.url}"\n'
        'data_path = "/data/"\n'
        'query_path = "/index.json"\n',
        env={"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"},
    )


def wait_until(condition, proc, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the command ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.01)


def interrupted_lines(stderr):
    """stderr's lines, without the progress bar's redrawn parts."""
    return [line.rpartition("\r")[2] for line in stderr.decode().split("\n")[:-1]]


# -- item 8: Ctrl-C --------------------------------------------------------------


def test_ctrl_c_during_get_is_one_line_130_and_no_partial_file(
    cli_daemon, site, tmp_path
):
    target = tmp_path / "out.bin"
    proc = subprocess.Popen(
        command(cli_daemon.runtime_dir, "--timeout", "60", "get", "web", "big")
        + ["-o", str(target)],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        part = tmp_path / f"out.bin.part-{proc.pid}"
        # The first chunk is on disk and the next one is stalled: the
        # download is in the middle.
        wait_until(
            lambda: (
                site.stalled.is_set()
                and part.exists()
                and part.stat().st_size >= 4 * 1024 * 1024
            ),
            proc,
            "partial download",
        )
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.decode() == "encore get: interrupted\n"
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_put_is_one_line_130_and_keeps_the_old_value(cli_daemon):
    runtime_dir = cli_daemon.runtime_dir
    assert encore(runtime_dir, "put", "mem", "k", "-", input=b"old").returncode == 0
    proc = subprocess.Popen(
        command(runtime_dir, "--timeout", "60", "put", "mem", "k", "-", "--progress"),
        env=cli_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    err = bytearray()

    def read_stderr():
        for data in iter(lambda: proc.stderr.read1(4096), b""):
            err.extend(data)

    reader = threading.Thread(target=read_stderr)
    reader.start()
    try:
        # Two chunks' worth: the first is sent (the bar shows it), then
        # the command waits for more input that does not come.
        proc.stdin.write(b"n" * (5 * 1024 * 1024))
        proc.stdin.flush()
        wait_until(lambda: b"MiB" in err, proc, "progress bar")
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        reader.join(10)
        proc.stderr.close()
    lines = interrupted_lines(bytes(err))
    assert proc.returncode == 130, lines
    assert lines[-1] == "encore put: interrupted"
    assert len(lines) == 2  # the bar's line, ended, and the message
    store = RemoteStore("mem", runtime_dir, timeout=10)
    try:
        assert store.get_data("k").read() == b"old"
    finally:
        store.disconnect()


# -- item 9: options anywhere ------------------------------------------------------


def test_options_go_anywhere_among_a_commands_arguments(cli_daemon):
    runtime_dir = cli_daemon.runtime_dir
    for key, author in (("a", "me"), ("b", "you")):
        put = encore(runtime_dir, "put", "mem", key, "-", "--meta", f"author={author}")
        assert put.returncode == 0, put.stderr
    for args in (
        ["query", "mem", "--keys", "author=me"],
        ["query", "mem", "author=me", "--keys"],
        ["query", "--keys", "mem", "author=me"],
    ):
        done = encore(runtime_dir, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert done.stdout == b"a\n", args
    removed = encore(runtime_dir, "rm", "mem", "gone", "-f", "a", "b")
    assert removed.returncode == 0, removed.stderr
    assert encore(runtime_dir, "ls", "mem").stdout == b""


# -- item 10: emit's names ---------------------------------------------------------


def test_emit_help_says_names_are_dotted_paths():
    done = subprocess.run(
        command("/nonexistent", "emit", "--help"),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "dotted path" in text
    assert "myevents.FileEvent" in text
    assert "not `--base FileEvent`" in text


def test_emit_without_arguments_asks_only_for_the_class():
    done = subprocess.run(
        command("/nonexistent", "emit"),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "encore emit: error: the following arguments are required: CLASS"
    )


def test_emit_takes_base_and_attributes_in_any_order(cli_daemon):
    from encore.events.abstract_event_manager import BaseEvent
    from encore.events.event_manager import EventManager
    from encore_client import BusBridge

    manager = EventManager()
    seen = []
    got = threading.Event()

    def record(event):
        seen.append(event)
        got.set()

    bridge = BusBridge(manager, cli_daemon.runtime_dir, timeout=10).start()
    try:
        manager.connect(BaseEvent, record, filter={"tag": "t16"})
        done = encore(
            cli_daemon.runtime_dir,
            "emit",
            "mine.Saved",
            "n=1",
            "--base",
            "myevents.FileEvent",
            "tag=t16",
        )
        assert done.returncode == 0, done.stderr
        assert got.wait(30)
    finally:
        bridge.close()
    from encore_client import _codec

    names = _codec.event_class_names(seen[0])
    assert names[0] == "mine.Saved" and "myevents.FileEvent" in names
    assert seen[0].n == 1
