"""``encore.terminal.utils``: small helpers for text terminals.

``write_static(s)`` is the helper encore 0.8 users import: it writes ``s``
to standard output and moves the cursor back to where it was, so the next
write overwrites it (a percentage or spinner redrawn in place).
"""

from __future__ import annotations

import sys
import unicodedata

__all__ = ["write_static", "display_width"]


def display_width(s: str) -> int:
    """Return the number of terminal columns ``s`` occupies.

    Wide and full-width characters (CJK) take two columns, combining marks
    none, everything else one.
    """
    width = 0
    for ch in s:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def write_static(s: str) -> None:
    """Write ``s`` to standard output, then move the cursor back over it.

    The cursor returns with one backspace per column written, not with the
    ANSI save/restore sequences: backspaces work on every terminal and in
    the Windows console, and the saved position is lost when the terminal
    scrolls. Backspaces cannot cross a line break, so ``s`` must fit on the
    current line. Standard output is flushed, so the text shows at once.

    Raises
    ------
    TypeError
        If ``s`` is not a str.
    ValueError
        If ``s`` contains a line break, carriage return or other control
        character (the cursor could not be brought back over it); nothing
        is written then.
    """
    if not isinstance(s, str):
        raise TypeError(f"write_static needs a str, not {type(s).__name__}")
    for ch in s:
        if ch < " " or ch == "\x7f":
            raise ValueError(
                f"write_static cannot move back over the control character {ch!r}"
            )
    stream = sys.stdout
    stream.write(s + "\b" * display_width(s))
    stream.flush()
