"""Public names of `encore.terminal` in one place."""

from encore.terminal.progress_display import (
    BarWriter,
    ProgressDisplay,
    ProgressWriter,
    SpinnerWriter,
    make_writer,
)

__all__ = [
    "BarWriter",
    "ProgressDisplay",
    "ProgressWriter",
    "SpinnerWriter",
    "make_writer",
]
