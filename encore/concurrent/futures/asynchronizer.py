"""Run only the most recent of the jobs submitted while one is running."""

from __future__ import annotations

from encore.concurrent.futures.abc_work_scheduler import ABCWorkScheduler, _Job

__all__ = ["Asynchronizer"]


class Asynchronizer(ABCWorkScheduler):
    """One job at a time; a new submission replaces the pending one.

    Suited to work whose latest request makes earlier ones pointless (redraw
    a plot, recompute a preview): while a job runs, at most one job waits,
    and it is always the last one submitted, so the last submission always
    runs.  A replaced job never runs and its future is cancelled.

    ``Asynchronizer(executor, name=None, callback=None)``; see
    `ABCWorkScheduler` for the parameters, errors and logging.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pending: _Job | None = None

    def _add_job(self, job: _Job) -> list[_Job]:
        replaced = [] if self._pending is None else [self._pending]
        self._pending = job
        return replaced

    def _has_pending(self) -> bool:
        return bool(self._pending)

    def _pop_job(self) -> _Job | None:
        job, self._pending = self._pending, None
        return job
