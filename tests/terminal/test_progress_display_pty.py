"""ProgressDisplay on a real pseudo-terminal, read back as a screen."""

import re

import pytest

BAR_HALF = "[############------------]  50% 5/10 Copying A"


def test_bars_spinners_and_end_states_redrawn_in_place(pty_child):
    child = pty_child(rows=12, cols=80)
    child.send("print", text="before the display")
    child.send("open")
    child.send("start", id="a", message="Copying A", steps=10)
    child.send("step", id="a", step=5)
    child.send("start", id="b", message="Scanning B")
    for _ in range(3):
        child.send("step", id="b")
    lines = child.wait_for(
        lambda lines: (
            lines[1:] == [BAR_HALF, "[-] Scanning B (3)"]
            or (len(lines) == 3 and lines[2].endswith("(3)"))
        ),
        "a bar and a spinner",
    )
    assert lines[0] == "before the display"
    assert lines[1] == BAR_HALF
    assert re.fullmatch(r"\[[|/\\-]\] Scanning B \(3\)", lines[2])

    child.send("step", id="a", step=10, message="Copying A (last file)")
    child.wait_for(
        lambda lines: (
            len(lines) == 3
            and lines[1].startswith(
                "[########################] 100% 10/10 Copying A (last"
            )
        )
    )

    child.send("end", id="a", state="warning", message="disk almost full")
    lines = child.wait_for(lambda lines: "WARNING" in "".join(lines), "the warning")
    assert re.fullmatch(
        r"\[WARNING\] Copying A: disk almost full \(\d+\.\d s\)", lines[1]
    )
    assert lines[2].startswith("[") and lines[2].endswith("Scanning B (3)")
    assert len(lines) == 3

    child.send("end", id="b", state="exception", message="ZeroDivisionError: x")
    lines = child.wait_for(lambda lines: "EXCEPTION" in "".join(lines))
    assert lines[0] == "before the display"
    assert lines[1].startswith("[WARNING] Copying A")
    assert re.fullmatch(
        r"\[EXCEPTION\] Scanning B: ZeroDivisionError: x \(\d+\.\d s\)", lines[2]
    )
    assert len(lines) == 3  # the running lines were erased, not left behind

    child.send("start", id="c", message="Saving C", steps=4)
    child.send("end", id="c", state="normal", message="Saving C")
    child.send("start", id="d", message="Loading D")
    child.send("end", id="d", state="error", message="no such file")
    lines = child.wait_for(lambda lines: len(lines) == 5 and "ERROR" in lines[4])
    assert re.fullmatch(r"\[done\] Saving C \(\d+\.\d s\)", lines[3])
    assert re.fullmatch(r"\[ERROR\] Loading D: no such file \(\d+\.\d s\)", lines[4])

    child.send("close")
    report = child.finish()
    assert report["listeners"] == 0
    assert child.screen.lines()[1:] == lines[1:]


@pytest.mark.slow
def test_a_million_steps_do_not_flood_the_terminal(pty_child):
    child = pty_child()
    child.send("open", min_interval=0.05)
    child.send("start", id="big", message="Tiny steps", steps=1_000_000)
    child.send("many", id="big", count=1_000_000)
    child.send("end", id="big", state="normal", message="Tiny steps")
    child.send("close")
    # a million emits take seconds, many more on a loaded machine
    report = child.finish(timeout=300)
    lines = child.screen.lines()
    assert len(lines) == 1
    assert re.fullmatch(r"\[done\] Tiny steps \(\d+\.\d s\)", lines[0])
    raw = child.raw_bytes()
    frames = raw.count(b"\x1b[J")
    # At most one frame per 50 ms of stepping, plus start, end and close.
    allowed = report["many_seconds"] / 0.05 + 5
    assert frames <= allowed, (frames, report)
    assert len(raw) < 120 * allowed
    # The bar moved while the steps went by (unless stepping was instant).
    assert report["frames_after_many"] >= 1


def test_event_text_cannot_control_the_terminal(pty_child):
    child = pty_child()
    child.send("print", text="keep me")
    child.send("open")
    child.send("start", id="x", message="evil\x1b[2J\x1b[H\x07\nname")
    lines = child.wait_for(lambda lines: len(lines) == 2)
    assert lines == ["keep me", "[|] evil?[2J?[H? name"]
    child.send("close")
    child.finish()


def test_long_lines_are_cut_to_the_terminal_width(pty_child):
    child = pty_child(rows=10, cols=40)
    child.send("open")
    child.send("start", id="long", message="L" * 100, steps=3)
    child.send("start", id="wide", message="\u5bbd" * 50)
    lines = child.wait_for(lambda lines: len(lines) == 2)
    assert len(lines[0]) == 39 and lines[0].endswith("~")
    assert lines[1].startswith("[|] \u5bbd") and lines[1].endswith("~")
    # wide characters take two columns: 4 + 2 * 17 + 1 = 39
    assert lines[1].count("\u5bbd") == 17
    child.send("close")
    child.finish()


def test_more_operations_than_screen_rows(pty_child):
    child = pty_child(rows=6, cols=60)
    child.send("open")
    for n in range(10):
        child.send("start", id=n, message=f"op {n}", steps=2)
    lines = child.wait_for(
        lambda lines: lines and lines[-1] == "... and 6 more operation(s)"
    )
    assert lines == [f"[{'-' * 24}]   0% 0/2 op {n}" for n in range(4)] + [
        "... and 6 more operation(s)"
    ]
    for n in range(10):
        child.send("end", id=n, state="normal", message=f"op {n}")
    child.send("close")
    child.finish()
    lines = child.screen.lines()
    # the last rows of the end lines; the earlier ones scrolled off the top
    assert [line.split(" (")[0] for line in lines] == [
        f"[done] op {n}" for n in range(5, 10)
    ]


@pytest.mark.parametrize("state", ["normal", "warning", "error", "exception"])
def test_end_state_shown_even_right_after_start(pty_child, state):
    # Throttling must delay an end state, never drop it.
    child = pty_child()
    child.send("open", min_interval=5.0)
    child.send("start", id="q", message="Quick", steps=2)
    child.send("step", id="q", step=1)
    child.send("end", id="q", state=state, message="Quick")
    child.send("close")
    child.finish()
    label = {"normal": "done"}.get(state, state.upper())
    [line] = child.screen.lines()
    assert line.startswith(f"[{label}] Quick (")
