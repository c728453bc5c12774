"""An Asynchronizer that leaves a minimum interval between jobs."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor

from encore.concurrent.futures.asynchronizer import Asynchronizer
from encore.concurrent.futures.future import Future

__all__ = ["DelayedAsynchronizer"]


class DelayedAsynchronizer(Asynchronizer):
    """Asynchronizer with at least `interval` seconds between jobs.

    The next job starts no sooner than `interval` seconds after the
    previous one finished; submissions made meanwhile replace each other,
    so the last one always runs.  As in encore 0.8, a burst of submissions
    to an idle scheduler runs its first job (at once after a quiet period,
    else `interval` after the previous job) and its last: three bursts of
    five with `wait()` between run six jobs.

    The waiting happens inside the task given to the executor, so it holds
    one executor thread (or, on a `SynchronousExecutor`, the submitting
    thread) for up to `interval` seconds.

    Raises
    ------
    ValueError
        If `interval` is negative or not a finite number.
    """

    def __init__(
        self,
        executor: Executor,
        interval: float,
        name: str | None = None,
        callback: Callable[[Future], object] | None = None,
    ) -> None:
        try:
            interval = float(interval)
        except (TypeError, ValueError):
            raise ValueError(f"interval must be a number, not {interval!r}") from None
        if not 0 <= interval < float("inf"):
            raise ValueError(f"interval must be finite and >= 0, not {interval!r}")
        super().__init__(executor, name=name, callback=callback)
        self._interval = interval

    @property
    def interval(self) -> float:
        """The minimum number of seconds between two jobs."""
        return self._interval
