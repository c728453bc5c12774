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


# -- item 11: binary data on a terminal, sizes, percentages -----------------------


def run_on_pty(runtime_dir, *args):
    """Run ``encore`` with its standard output on a new pty; (status, output)."""
    import pty
    import select

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            command(runtime_dir, *args),
            env=cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE,
        )
        os.close(slave)
        slave = -1
        output = bytearray()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the last writer closed the pty
                    data = b""
                if not data:
                    break
                output.extend(data)
            elif proc.poll() is not None:
                break
        err = proc.communicate(timeout=30)[1]
        return proc.returncode, bytes(output), err.decode()
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)


def test_get_to_a_terminal_refuses_binary_unless_dash_o_dash(cli_daemon):
    runtime_dir = cli_daemon.runtime_dir
    binary = b"\x00BIN\xff\xfe" * 1000
    assert encore(runtime_dir, "put", "mem", "bin", "-", input=binary).returncode == 0
    text = "héllo wörld\n".encode() * 10
    assert encore(runtime_dir, "put", "mem", "txt", "-", input=text).returncode == 0

    status, output, err = run_on_pty(runtime_dir, "get", "mem", "bin")
    assert status == 1
    assert b"BIN" not in output
    assert err == (
        "encore get: 'bin' holds binary data; not writing it to the terminal "
        "(use -o FILE, or -o - to write it here anyway)\n"
    )

    status, output, err = run_on_pty(runtime_dir, "get", "mem", "bin", "-o", "-")
    assert status == 0, err
    assert output.count(b"BIN") == 1000

    status, output, err = run_on_pty(runtime_dir, "get", "mem", "txt")
    assert status == 0, err
    assert output.replace(b"\r\n", b"\n") == text

    # Not a terminal: the bytes go through as they are.
    assert encore(runtime_dir, "get", "mem", "bin").stdout == binary


def test_unknown_length_upload_shows_sizes_not_bytes(cli_daemon):
    done = encore(
        cli_daemon.runtime_dir,
        "put",
        "mem",
        "piped",
        "-",
        "--progress",
        input=b"p" * (100 * 1024),
    )
    assert done.returncode == 0, done.stderr
    final = done.stderr.decode().split("\r")[-1]
    assert final.startswith("piped 100.0 KiB "), final
    assert final.rstrip().endswith("/s")


def test_format_size_reads_in_kib_mib_gib():
    from encore.terminal.progress_display import format_size

    assert format_size(0) == "0 B"
    assert format_size(1023) == "1023 B"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(300_000_000) == "286.1 MiB"
    assert format_size(1 << 30) == "1.0 GiB"


def test_plain_progress_says_the_real_percentage():
    import io

    from encore.events.event_manager import EventManager
    from encore.events.progress_events import ProgressManager
    from encore.terminal.progress_display import BarWriter, ProgressDisplay

    em = EventManager()
    out = io.StringIO()
    with ProgressDisplay(em, out):
        with ProgressManager(em, None, "q", "Sorting", steps=4) as progress:
            for _ in range(4):
                progress()
    lines = out.getvalue().splitlines()
    assert lines[1:4] == [
        "Sorting: 25% (1/4)",
        "Sorting: 50% (2/4)",
        "Sorting: 75% (3/4)",
    ]
    bar = BarWriter("b", "Copy", 100)
    bar.step(29)
    assert " 29% 29/100 " in bar.render(80)  # int(0.29 * 100) is 28


def test_store_transfers_of_unknown_length_count_in_sizes():
    import io

    from encore.events.event_manager import EventManager
    from encore.storage.utils import StoreProgressManager
    from encore.terminal.progress_display import ProgressDisplay

    em = EventManager()
    out = io.StringIO()
    frames = []
    with ProgressDisplay(em, out, ansi=True, min_interval=0) as display:
        with StoreProgressManager(em, None, "t", "Uploading k", -1, key="k") as p:
            p.step(step=3 * 1024 * 1024)
            writer = next(iter(display._running.values()))
            frames.append(writer.render(80))
    assert frames[0].endswith("Uploading k (3.0 MiB)"), frames


# -- item 12: where the sockets go without XDG_RUNTIME_DIR ------------------------


def test_help_and_readme_say_where_sockets_go_without_xdg_runtime_dir(monkeypatch):
    from encore_client._paths import resolve_runtime_dir

    monkeypatch.delenv("ENCORE_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert str(resolve_runtime_dir()) == f"/tmp/encored-{os.getuid()}"
    for module in ("encored", "encore_client.cli"):
        done = subprocess.run(
            [sys.executable, "-m", module, "--help"],
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=60,
        )
        assert done.returncode == 0
        text = " ".join(done.stdout.split())
        assert "else /tmp/encored-<uid> when XDG_RUNTIME_DIR is unset" in text, module
    readme = (package_root() / "README.md").read_text()
    assert "`/tmp/encored-<uid>`" in readme
