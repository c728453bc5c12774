"""Run every submitted job, one at a time, in submission order."""

from __future__ import annotations

import collections

from encore.concurrent.futures.abc_work_scheduler import ABCWorkScheduler, _Job

__all__ = ["Serializer"]


class Serializer(ABCWorkScheduler):
    """Run all jobs one after the other, in the order they were submitted.

    Unlike the asynchronizers, nothing is ever dropped: every submitted job
    runs (unless its future is cancelled before it starts).

    ``Serializer(executor, name=None, callback=None)``; see
    `ABCWorkScheduler` for the parameters, errors and logging.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pending: collections.deque[_Job] = collections.deque()

    def _add_job(self, job: _Job) -> list[_Job]:
        self._pending.append(job)
        return []

    def _has_pending(self) -> bool:
        return bool(self._pending)

    def _pop_job(self) -> _Job | None:
        return self._pending.popleft() if self._pending else None
