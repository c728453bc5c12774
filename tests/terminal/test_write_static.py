"""``encore.terminal.utils.write_static`` on a real pseudo-terminal.

A child Python process writes to the slave side of a pty; the test reads
the master side into the `Screen` of this directory's conftest (a grid that
interprets what a terminal would) and checks what is shown and where the
cursor is.
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys

import pytest

from encore.terminal.utils import display_width, write_static

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_on_pty(script: str, screen_class) -> tuple[object, bytes]:
    """Run ``script`` with stdout on a real pty; return (screen, raw bytes)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=slave,
            stdout=slave,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=ROOT),
            start_new_session=True,
        )
    finally:
        os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    raw = b"".join(chunks)
    screen = screen_class(10, 40)
    screen.feed(raw.decode("utf-8").replace("\r\n", "\n").replace("\n", "\r\n"))
    return screen, raw


def test_cursor_returns_to_where_it_was(screen_class):
    screen, _ = run_on_pty(
        "import sys\n"
        "from encore.terminal.utils import write_static\n"
        "sys.stdout.write('abc'); sys.stdout.flush()\n"
        "write_static('xyz12')\n"
        "sys.stdout.write('Q'); sys.stdout.flush()\n",
        screen_class,
    )
    assert screen.lines() == ["abcQyz12"]
    # The cursor is right after the Q: back where write_static started, +1.
    assert (screen.y, screen.x) == (0, 4)


def test_redrawn_in_place(screen_class):
    screen, raw = run_on_pty(
        "from encore.terminal.utils import write_static\n"
        "for p in range(0, 101, 10):\n"
        "    write_static(f'{p:3d}%')\n",
        screen_class,
    )
    assert screen.lines() == ["100%"]
    assert (screen.y, screen.x) == (0, 0)
    assert raw.count(b"\b") == 4 * 11


def test_wide_characters_move_back_two_columns(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    write_static("\u65e5\u672ca")
    assert out.getvalue() == "\u65e5\u672ca" + "\b" * 5
    assert display_width("e\u0301") == 1


@pytest.mark.parametrize("bad", ["two\nlines", "cr\r", "tab\t", "bell\x07"])
def test_control_characters_refused_and_nothing_written(monkeypatch, bad):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with pytest.raises(ValueError, match="control character"):
        write_static(bad)
    assert out.getvalue() == ""


def test_non_string_refused(monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    with pytest.raises(TypeError, match="needs a str"):
        write_static(b"bytes")  # type: ignore[arg-type]
