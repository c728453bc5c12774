"""Logging set-up for the daemon's entry point (and nowhere else).

Under systemd (``JOURNAL_STREAM`` set) each line starts with a ``<N>``
syslog priority prefix, which journald turns into the entry's priority, and
carries no timestamp (journald adds its own).  On a terminal the lines carry
a timestamp and the level name instead.
"""

from __future__ import annotations

__all__ = ["configure_logging"]

import logging
import os
import sys

_PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITIES.get(record.levelno, 6)
        text = super().format(record)
        # One journal entry per line: prefix continuation lines (tracebacks)
        # too, so they keep the priority.
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def configure_logging(level: int = logging.INFO) -> None:
    """Send the ``encored`` and ``encore*`` loggers to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
