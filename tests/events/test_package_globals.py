"""The process-wide event manager, checked in fresh interpreters."""

import subprocess
import sys
import textwrap
from pathlib import Path


def run(code):
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_get_creates_once():
    assert (
        run("""
        from encore.events.api import get_event_manager, EventManager
        a = get_event_manager()
        assert isinstance(a, EventManager) and a is get_event_manager()
        print("ok")
    """).strip()
        == "ok"
    )


def test_set_then_get_and_set_twice_raises():
    assert (
        run("""
        from encore.events.api import get_event_manager, set_event_manager, EventManager
        m = EventManager()
        set_event_manager(m)
        assert get_event_manager() is m
        try:
            set_event_manager(EventManager())
        except ValueError:
            print("refused")
    """).strip()
        == "refused"
    )


def test_set_after_implicit_creation_raises():
    assert (
        run("""
        from encore.events.api import get_event_manager, set_event_manager, EventManager
        get_event_manager()
        try:
            set_event_manager(EventManager())
        except ValueError:
            print("refused")
    """).strip()
        == "refused"
    )
