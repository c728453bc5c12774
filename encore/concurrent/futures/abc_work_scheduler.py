"""The common machinery of the work schedulers.

A work scheduler sits on top of any `concurrent.futures.Executor` and
decides which of the submitted jobs run and in which order; subclasses only
say how a new job joins the pending ones (`_add_job`) and which one runs
next (`_pop_job`).

How it runs: at most one job of a scheduler runs at a time.  When a job is
submitted to an idle scheduler, one *drain* task goes to the executor; it
runs pending jobs one after the other until none is left, then the
scheduler is idle again.  Deciding "go idle" and "a job was added" under
the same lock is what guarantees that the last submitted job always runs.
A job that submits to its own scheduler simply adds to the pending jobs
(no recursion, even on a `SynchronousExecutor`).
"""

from __future__ import annotations

import abc
import concurrent.futures
import logging
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from encore.concurrent.futures.future import Future, cancel_and_notify

__all__ = ["ABCWorkScheduler"]

logger = logging.getLogger(__name__)


class _Job:
    """One submitted call and the future that reports it."""

    __slots__ = ("future", "fn", "args", "kwargs")

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        self.future = Future()
        self.fn = fn
        self.args = args
        self.kwargs = kwargs


class ABCWorkScheduler(abc.ABC):
    """Base class of the schedulers: one job at a time, on an executor.

    Parameters
    ----------
    executor : concurrent.futures.Executor
        Where the jobs run.  The scheduler never shuts it down.
    name : str, optional
        Used in log messages; defaults to the class name.
    callback : callable, optional
        Called as ``callback(future)`` after each job that ran (not for
        jobs that were replaced or cancelled), on the thread that ran it.

    Notes
    -----
    An exception raised by a job is stored on its future; one raised by
    the callback is caught. Each is logged on the
    ``encore.concurrent.futures.abc_work_scheduler`` logger as two ERROR
    records, as encore 0.8 does: one carrying the exception
    (``exc_info``), then one with the traceback formatted on the worker
    thread. The callback runs (and is reported) first, then the job's
    outcome is checked. Neither stops the scheduler: the next pending job
    runs.
    """

    #: Seconds that must pass between the end of one job and the start of
    #: the next; 0 for most schedulers.
    _interval: float = 0.0

    def __init__(
        self,
        executor: Executor,
        name: str | None = None,
        callback: Callable[[Future], object] | None = None,
    ) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        self._executor = executor
        self.name = name if name is not None else type(self).__name__
        self._callback = callback
        self._cond = threading.Condition(threading.Lock())
        # True from the moment a drain task is handed to the executor until
        # it finds nothing left to run.
        self._active = False
        self._runner: int | None = None
        self._shutdown = False
        self._not_before = 0.0
        # The job that started the current drain, until the drain takes it.
        self._claimed: _Job | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- public API --------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Schedule ``fn(*args, **kwargs)`` under this scheduler's rule.

        Returns the job's `Future`.  If the scheduler's rule replaces the
        job by a later submission before it starts, the future is
        cancelled.

        Raises
        ------
        RuntimeError
            After `shutdown`, or if the executor refuses the work (then
            every pending job's future gets the executor's error too).
        TypeError
            If `fn` is not callable.

        If the executor later cancels the scheduler's work before it starts
        (``shutdown(cancel_futures=True)``), the pending jobs are cancelled
        and the scheduler becomes idle; this is logged as an error.
        """
        if not callable(fn):
            raise TypeError(f"{self.name}: {fn!r} is not callable")
        job = _Job(fn, args, kwargs)
        with self._cond:
            if self._shutdown:
                raise RuntimeError(f"{self.name}: cannot submit after shutdown")
            start = not self._active
            if start:
                # The first job after the scheduler was idle is taken at
                # once: no later submission replaces it, however long the
                # executor takes to start the drain (or the interval lasts).
                self._claimed = job
                replaced = []
            else:
                replaced = self._add_job(job)
            self._active = True
        # Outside the lock: a cancelled future runs its done-callbacks,
        # which may well call back into this scheduler.
        for old in replaced:
            cancel_and_notify(old.future)
        if start:
            self._start_drain()
        return job.future

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no job is running or pending.

        Returns True when the scheduler is idle, False if `timeout`
        seconds passed first.

        Raises
        ------
        RuntimeError
            If called from inside one of this scheduler's jobs or its
            callback, where it would wait for itself forever.
        """
        with self._cond:
            if self._runner == threading.get_ident():
                raise RuntimeError(
                    f"{self.name}: wait() called from inside one of its own jobs"
                )
            return self._cond.wait_for(lambda: not self._active, timeout)

    def shutdown(self, wait: bool = True) -> None:
        """Refuse new submissions; pending jobs still run.

        With `wait` (default) block until they have all run.

        Raises
        ------
        RuntimeError
            If called with ``wait=True`` from inside one of this
            scheduler's jobs (nothing is changed then).
        """
        with self._cond:
            if wait and self._runner == threading.get_ident():
                raise RuntimeError(
                    f"{self.name}: shutdown(wait=True) called from inside one of "
                    "its own jobs; use shutdown(wait=False) there"
                )
            self._shutdown = True
        if wait:
            self.wait()

    # -- rule of the subclass ----------------------------------------------

    @abc.abstractmethod
    def _add_job(self, job: _Job) -> list[_Job]:
        """Add `job` to the pending jobs; return the jobs it replaces.

        Called with the scheduler's lock held.
        """

    @abc.abstractmethod
    def _has_pending(self) -> bool:
        """Whether a job is pending.  Called with the scheduler's lock held."""

    @abc.abstractmethod
    def _pop_job(self) -> _Job | None:
        """Remove and return the job to run next, or None if none is pending.

        Called with the scheduler's lock held.
        """

    # -- machinery ---------------------------------------------------------

    def _start_drain(self) -> None:
        try:
            drain = self._executor.submit(self._drain)
        except BaseException as exc:
            self._abandon_pending(exc, "the executor refused work")
            raise
        drain.add_done_callback(self._drain_done)

    def _drain_done(self, drain: concurrent.futures.Future) -> None:
        # The executor may drop the drain task before it starts (shutdown
        # with cancel_futures): the pending jobs would then wait forever.
        if drain.cancelled():
            self._abandon_pending(None, "the executor cancelled its work")

    def _abandon_pending(self, exc: BaseException | None, reason: str) -> None:
        """Fail (or, without `exc`, cancel) every pending job and go idle."""
        with self._cond:
            stranded = [] if self._claimed is None else [self._claimed]
            self._claimed = None
            while (job := self._pop_job()) is not None:
                stranded.append(job)
            self._active = False
            self._runner = None
            self._cond.notify_all()
        logger.error(
            "%s: %s; %d pending job(s) %s",
            self.name,
            reason,
            len(stranded),
            "cancelled" if exc is None else "failed",
            exc_info=exc,
        )
        for job in stranded:
            if exc is None:
                cancel_and_notify(job.future)
            elif job.future.set_running_or_notify_cancel():
                job.future.set_exception(exc)

    def _next_job(self) -> _Job | None:
        """Take the next job (or go idle) and wait out the interval.

        The first job of a drain (the first submission after the scheduler
        was idle, claimed by `submit`) is taken before waiting, so a burst
        always runs its first job; later jobs are taken after waiting, so
        the submissions made meanwhile still replace each other and the
        latest one runs.
        """
        with self._cond:
            job, self._claimed = self._claimed, None
            # Wait only while there is something to wait for: an idle
            # scheduler must not hold the executor thread for the interval.
            while (job is not None or self._has_pending()) and (
                delay := self._not_before - time.monotonic()
            ) > 0:
                self._cond.wait(delay)
            if job is None:
                job = self._pop_job()
            if job is None:
                self._active = False
                self._runner = None
                self._cond.notify_all()
            else:
                self._runner = threading.get_ident()
            return job

    def _drain(self) -> None:
        try:
            while (job := self._next_job()) is not None:
                self._run_job(job)
                if self._interval:
                    with self._cond:
                        self._not_before = time.monotonic() + self._interval
        except BaseException:
            # Only a bug in the scheduler itself gets here; never leave
            # waiters hanging on a scheduler that looks busy.
            logger.exception("%s: scheduler loop failed", self.name)
            with self._cond:
                self._active = False
                self._runner = None
                self._cond.notify_all()
            raise

    def _run_job(self, job: _Job) -> None:
        future = job.future
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = job.fn(*job.args, **job.kwargs)
        except BaseException as exc:
            future.set_exception(exc)
            del exc  # the traceback's frames refer to this one
        else:
            future.set_result(result)
        # As in encore 0.8: the callback first, then the job's outcome.
        if self._callback is not None:
            try:
                self._callback(future)
            except BaseException as exc:
                self._report(
                    exc,
                    f"completion callback {self._callback!r} raised "
                    f"{type(exc).__name__}",
                    traceback.format_exc(),
                )
                del exc
        failure = future.exception(0)
        if failure is not None:
            # A job runs on a worker thread: nobody else would see this
            # unless they hold the future, so it is always logged.
            self._report(
                failure,
                f"job {job.fn!r} raised {type(failure).__name__}",
                future.traceback(0) if isinstance(future, Future) else None,
            )

    def _report(self, exc: BaseException, what: str, formatted: str | None) -> None:
        """Log a failure as two ERROR records, the way encore 0.8 does.

        The first carries the exception (``exc_info``), for handlers that
        format it themselves; the second the traceback as formatted on the
        worker thread, text that stays meaningful wherever it is shown.
        """
        logger.error("%s: %s", self.name, what, exc_info=exc)
        if formatted is None:
            formatted = "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)
            )
        logger.error(
            "%s: traceback on the worker thread:\n%s", self.name, formatted.rstrip()
        )
