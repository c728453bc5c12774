"""A real pseudo-terminal, a child process drawing on it, and a screen.

`Screen` interprets the subset of ANSI/VT100 that a progress display may
use and fails loudly on anything else, so a test sees what a terminal
would show (and notices stray escape sequences).  `PtyChild` runs a
Python script whose stdout is the slave side of a real pty; a reader
thread feeds the master side into a `Screen`.
"""

import codecs
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import tempfile
import termios
import threading
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
DEADLINE = 20.0

_CSI_RE = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


class Screen:
    """A character grid that understands CR, LF, BS and a few CSI codes."""

    def __init__(self, rows, cols):
        self.rows, self.cols = rows, cols
        self.grid = [[" "] * cols for _ in range(rows)]
        self.x = self.y = 0
        self._pending = ""

    def feed(self, text):
        data = self._pending + text
        self._pending = ""
        i = 0
        while i < len(data):
            ch = data[i]
            if ch == "\x1b":
                match = _CSI_RE.match(data, i)
                if match is None:
                    if len(data) - i < 16 and re.fullmatch(
                        r"\x1b(\[[0-9;?]*)?", data[i:]
                    ):
                        self._pending = data[i:]  # split across reads
                        return
                    raise ValueError(
                        f"unsupported escape sequence {data[i : i + 12]!r}"
                    )
                self._csi(match.group(1), match.group(2))
                i = match.end()
                continue
            if ch == "\r":
                self.x = 0
            elif ch == "\n":
                self._linefeed()
            elif ch == "\b":
                self.x = max(self.x - 1, 0)
            elif ch < " " or ch == "\x7f":
                raise ValueError(f"unexpected control character {ch!r}")
            else:
                if self.x >= self.cols:
                    self.x = 0
                    self._linefeed()
                self.grid[self.y][self.x] = ch
                self.x += 1
            i += 1

    def _linefeed(self):
        if self.y == self.rows - 1:
            self.grid.pop(0)
            self.grid.append([" "] * self.cols)
        else:
            self.y += 1

    def _csi(self, params, final):
        numbers = [int(p) if p else 0 for p in params.split(";")] if params else []
        n = numbers[0] if numbers else 0
        if final == "A":
            self.y = max(self.y - max(n, 1), 0)
        elif final == "B":
            self.y = min(self.y + max(n, 1), self.rows - 1)
        elif final == "F":
            self.y = max(self.y - max(n, 1), 0)
            self.x = 0
        elif final == "K":
            row = self.grid[self.y]
            if n == 0:
                row[self.x :] = [" "] * (self.cols - self.x)
            elif n == 1:
                row[: self.x + 1] = [" "] * (self.x + 1)
            else:
                self.grid[self.y] = [" "] * self.cols
        elif final == "J" and n == 0:
            self.grid[self.y][self.x :] = [" "] * (self.cols - self.x)
            for y in range(self.y + 1, self.rows):
                self.grid[y] = [" "] * self.cols
        else:
            raise ValueError(f"unsupported CSI sequence {params!r}{final}")

    def lines(self):
        """The screen's rows, right-stripped, trailing blank rows removed."""
        rows = ["".join(row).rstrip() for row in self.grid]
        while rows and not rows[-1]:
            rows.pop()
        return rows

    def dump(self):
        return "\n".join(f"{i:2d}|{line}" for i, line in enumerate(self.lines()))


CHILD = r"""
import json, os, sys, time
from encore.events.event_manager import EventManager
from encore.events.progress_events import (
    ProgressEndEvent, ProgressStartEvent, ProgressStepEvent)
from encore.terminal.progress_display import ProgressDisplay

control = os.fdopen(int(sys.argv[1]), "r")
report = sys.argv[2]
em = EventManager()
display = None
results = {}
for line in control:
    cmd = json.loads(line)
    op = cmd.pop("op")
    if op == "print":
        print(cmd["text"], flush=True)
    elif op == "open":
        display = ProgressDisplay(em, **cmd)
    elif op == "start":
        em.emit(ProgressStartEvent(operation_id=cmd["id"], message=cmd["message"],
                                   steps=cmd.get("steps", -1)))
    elif op == "step":
        em.emit(ProgressStepEvent(operation_id=cmd["id"], step=cmd.get("step", -1),
                                  message=cmd.get("message")))
    elif op == "many":
        start = time.perf_counter()
        for i in range(1, cmd["count"] + 1):
            em.emit(ProgressStepEvent(operation_id=cmd["id"], step=i, message=None))
        results["many_seconds"] = time.perf_counter() - start
        results["frames_after_many"] = display.frames
    elif op == "end":
        em.emit(ProgressEndEvent(operation_id=cmd["id"], message=cmd["message"],
                                 exit_state=cmd["state"]))
    elif op == "close":
        display.close()
        results["frames"] = display.frames
        results["listeners"] = len(em.get_listeners(ProgressStepEvent))
    with open(report, "w") as f:
        json.dump(results, f)
"""


class PtyChild:
    """A Python process drawing on a real pty, driven by JSON commands."""

    def __init__(self, rows=24, cols=80):
        self.screen = Screen(rows, cols)
        self.raw = []
        self._cond = threading.Condition()
        self._eof = False
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        control_r, self._control_w = os.pipe()
        self._tmp = tempfile.TemporaryDirectory(prefix="enc")
        self.report_path = os.path.join(self._tmp.name, "report.json")
        self._stderr = open(os.path.join(self._tmp.name, "stderr"), "w+b")
        env = dict(os.environ, PYTHONPATH=ROOT, TERM="xterm")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(control_r), self.report_path],
                stdin=slave,
                stdout=slave,
                stderr=self._stderr,
                pass_fds=(control_r,),
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(slave)
            os.close(control_r)
        self._master = master
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        decoder = codecs.getincrementaldecoder("utf-8")()
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: the child closed the terminal
                data = b""
            with self._cond:
                if not data:
                    self._eof = True
                    self._cond.notify_all()
                    return
                self.raw.append(data)
                self.screen.feed(decoder.decode(data))
                self._cond.notify_all()

    def send(self, op, **args):
        os.write(self._control_w, (json.dumps({"op": op, **args}) + "\n").encode())

    def wait_for(self, predicate, what="the expected screen"):
        """Wait (with a deadline) until predicate(screen lines) is true."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: predicate(self.screen.lines()) or self._eof, DEADLINE
            )
            lines = self.screen.lines()
            if not ok or not predicate(lines):
                raise AssertionError(
                    f"timed out waiting for {what}; screen:\n{self.screen.dump()}\n"
                    f"stderr:\n{self.stderr()}"
                )
            return lines

    def finish(self, timeout=DEADLINE):
        """Let the child exit; return its report once all output is read."""
        os.close(self._control_w)
        self._control_w = None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the child did not exit") from None
        self._reader.join(DEADLINE)
        assert code == 0, self.stderr()
        with open(self.report_path) as f:
            return json.load(f)

    def raw_bytes(self):
        with self._cond:
            return b"".join(self.raw)

    def stderr(self):
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def cleanup(self):
        if self._control_w is not None:
            os.close(self._control_w)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(DEADLINE)
        os.close(self._master)
        self._stderr.close()
        self._tmp.cleanup()


@pytest.fixture
def pty_child():
    """Factory of `PtyChild` processes, each killed after the test."""
    children = []

    def make(rows=24, cols=80):
        child = PtyChild(rows, cols)
        children.append(child)
        return child

    try:
        yield make
    finally:
        for child in children:
            child.cleanup()


@pytest.fixture
def screen_class():
    """The `Screen` class, for tests that drive their own pty child."""
    return Screen
