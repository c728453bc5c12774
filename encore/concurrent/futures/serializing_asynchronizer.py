"""Asynchronize per callable, serialize across callables."""

from __future__ import annotations

from collections.abc import Hashable

from encore.concurrent.futures.abc_work_scheduler import ABCWorkScheduler, _Job

__all__ = ["SerializingAsynchronizer"]


class SerializingAsynchronizer(ABCWorkScheduler):
    """Per callable the Asynchronizer rule; callables in first-come order.

    Pending jobs are kept one per callable.  A new submission of a callable
    that is already pending replaces that job (the replaced future is
    cancelled) but keeps its place in the line; a new callable joins the end
    of the line.  So with C running and A, B, A submitted, the jobs run C,
    then A (with the arguments of the second submission), then B.

    Callables are told apart by equality, so two bound methods of the same
    object and function count as the same callable; a callable that cannot
    be hashed is told apart by identity.

    ``SerializingAsynchronizer(executor, name=None, callback=None)``; see
    `ABCWorkScheduler` for the parameters, errors and logging.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # dicts keep insertion order, and re-assigning an existing key keeps
        # its position: exactly the rule above.
        self._pending: dict[Hashable, _Job] = {}

    @staticmethod
    def _key(job: _Job) -> Hashable:
        try:
            hash(job.fn)
        except TypeError:
            return ("unhashable callable", id(job.fn))
        return job.fn

    def _add_job(self, job: _Job) -> list[_Job]:
        key = self._key(job)
        old = self._pending.get(key)
        self._pending[key] = job
        return [] if old is None else [old]

    def _has_pending(self) -> bool:
        return bool(self._pending)

    def _pop_job(self) -> _Job | None:
        if not self._pending:
            return None
        key = next(iter(self._pending))
        return self._pending.pop(key)
