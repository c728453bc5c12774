"""A thread pool with per-worker set-up and tear-down.

`EnhancedThreadPoolExecutor` behaves like `concurrent.futures.
ThreadPoolExecutor` and adds what long-lived workers often need: every
worker thread runs an `initializer` when it starts and an `uninitializer`
when it ends (open and close a per-thread database connection, say), a
name prefix for its threads, `Future` objects that keep their traceback,
and a choice whether the interpreter waits for running jobs at exit.

Lifecycle guarantees:

- A job accepted by `submit` runs, unless it is cancelled (by its future or
  by ``shutdown(cancel_futures=True)``) or the pool is broken by a failing
  initializer, in which case its future holds `BrokenThreadPool`.
- ``shutdown(wait=False)`` still runs every queued job; it only does not
  block the caller.
- When the executor object is garbage collected, its workers finish the
  queued jobs, run the uninitializer and exit.
- With ``wait_at_exit=True`` (default) the interpreter, at exit, lets the
  workers finish queued jobs and run their uninitializer; with
  ``wait_at_exit=False`` it exits without waiting for them (the workers
  are daemon threads and neither running jobs nor the uninitializer are
  guaranteed to finish).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import itertools
import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

from encore.concurrent.futures.future import Future, cancel_and_notify

__all__ = ["BrokenThreadPool", "EnhancedThreadPoolExecutor"]

logger = logging.getLogger(__name__)


class BrokenThreadPool(concurrent.futures.BrokenExecutor):
    """A worker's initializer failed, so the pool accepts no more work."""


# Interpreter-exit bookkeeping.  Workers are daemon threads so that a pool
# with wait_at_exit=False never holds the interpreter; pools that do want
# to be waited for register their threads here and the atexit hook below
# wakes and joins them (atexit runs after non-daemon threads were joined,
# while daemon threads still run).
_exit_lock = threading.Lock()
_interpreter_exiting = False
_waited_threads: weakref.WeakKeyDictionary[threading.Thread, queue.SimpleQueue] = (
    weakref.WeakKeyDictionary()
)


def _join_workers_at_exit() -> None:
    global _interpreter_exiting
    with _exit_lock:
        _interpreter_exiting = True
        items = list(_waited_threads.items())
    for _, work_queue in items:
        work_queue.put(None)
    for thread, _ in items:
        thread.join()


atexit.register(_join_workers_at_exit)


class _WorkItem:
    __slots__ = ("future", "fn", "args", "kwargs")

    def __init__(self, future: Future, fn: Callable[..., Any], args, kwargs) -> None:
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            self.future.set_exception(exc)
            # The traceback references this frame, which references self:
            # drop the cycle now rather than at the next gc run.
            self = None
        else:
            self.future.set_result(result)


def _worker(
    executor_ref: weakref.ref,
    work_queue: queue.SimpleQueue,
    initializer: Callable[[], object] | None,
    uninitializer: Callable[[], object] | None,
) -> None:
    if initializer is not None:
        try:
            initializer()
        except BaseException:
            logger.exception("EnhancedThreadPoolExecutor worker initializer failed")
            executor = executor_ref()
            if executor is not None:
                executor._initializer_failed()
            return
    try:
        while True:
            item = work_queue.get()
            if item is not None:
                item.run()
                del item
                executor = executor_ref()
                if executor is not None:
                    executor._idle_semaphore.release()
                del executor
                continue
            # None is a wake-up call: the pool was shut down or collected,
            # or the interpreter is exiting.  Jobs queued before it have
            # already been taken, so nothing is lost by leaving.
            executor = executor_ref()
            if (
                _interpreter_exiting
                or executor is None
                or executor._shutdown
                or executor._broken is not None
            ):
                # Pass the wake-up on so every sibling worker sees it too.
                work_queue.put(None)
                return
            del executor
    finally:
        if uninitializer is not None:
            try:
                uninitializer()
            except BaseException:
                logger.exception(
                    "EnhancedThreadPoolExecutor worker uninitializer failed"
                )


class EnhancedThreadPoolExecutor(concurrent.futures.Executor):
    """Thread pool whose workers run an initializer and an uninitializer.

    Parameters
    ----------
    max_workers : int, optional
        Most threads the pool starts; threads are started on demand, when
        no idle worker is available.  Default ``min(32, cpus + 4)``.
    initializer : callable, optional
        Called with no arguments by each worker when it starts.  If it
        raises, the exception is logged, the pool is marked broken, every
        queued job fails with `BrokenThreadPool` and `submit` raises it.
    uninitializer : callable, optional
        Called with no arguments by each worker when it exits (after
        shutdown, after the executor is collected, or at interpreter exit
        when ``wait_at_exit`` is true).  Exceptions are logged.
    name : str, optional
        Prefix of the worker thread names, ``<name>Worker-<n>`` with n
        counting from 0.  Default (None): the class name, so threads are
        ``EnhancedThreadPoolExecutorWorker-<n>`` as in encore 0.8.
    wait_at_exit : bool
        Whether the interpreter waits, at exit, for the workers to finish
        their queued jobs.

    Raises
    ------
    ValueError
        If `max_workers` is not positive.
    TypeError
        If `initializer` or `uninitializer` is given and not callable.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        initializer: Callable[[], object] | None = None,
        uninitializer: Callable[[], object] | None = None,
        name: str | None = None,
        wait_at_exit: bool = True,
    ) -> None:
        if max_workers is None:
            max_workers = min(32, (os.cpu_count() or 1) + 4)
        if max_workers <= 0:
            raise ValueError(f"max_workers must be greater than 0, not {max_workers}")
        hooks = (("initializer", initializer), ("uninitializer", uninitializer))
        for label, func in hooks:
            if func is not None and not callable(func):
                raise TypeError(f"{label} must be callable, not {func!r}")
        self._max_workers = max_workers
        self._initializer = initializer
        self._uninitializer = uninitializer
        self._name = type(self).__name__ if name is None else name
        self._wait_at_exit = wait_at_exit
        self._work_queue: queue.SimpleQueue = queue.SimpleQueue()
        self._idle_semaphore = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._thread_numbers = itertools.count()
        self._shutdown = False
        self._broken: str | None = None
        self._shutdown_lock = threading.Lock()

    @property
    def name(self) -> str:
        """The prefix of the worker thread names."""
        return self._name

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Schedule ``fn(*args, **kwargs)`` and return its `Future`.

        Raises
        ------
        RuntimeError
            After `shutdown`, or once the interpreter is exiting.
        BrokenThreadPool
            If a worker's initializer failed.
        """
        with self._shutdown_lock:
            if self._broken is not None:
                raise BrokenThreadPool(self._broken)
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if _interpreter_exiting:
                raise RuntimeError(
                    "cannot schedule new futures after interpreter shutdown"
                )
            future = Future()
            self._work_queue.put(_WorkItem(future, fn, args, kwargs))
            self._adjust_thread_count()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more jobs; queued jobs still run unless cancelled.

        Parameters
        ----------
        wait : bool
            Block until every worker has finished its jobs, run its
            uninitializer and exited.  A worker that calls this on its own
            pool is not waited for (it would wait for itself).
        cancel_futures : bool
            Cancel the jobs that have not started yet.
        """
        with self._shutdown_lock:
            self._shutdown = True
            dropped = self._drain_queue() if cancel_futures else []
            self._work_queue.put(None)
        # Outside the lock: done-callbacks may call back into the pool.
        for future in dropped:
            cancel_and_notify(future)
        if wait:
            current = threading.current_thread()
            for thread in list(self._threads):
                if thread is not current:
                    thread.join()

    # -- internals ---------------------------------------------------------

    def _adjust_thread_count(self) -> None:
        # An idle worker will pick the job up; starting a thread per job
        # would defeat the pool.
        if self._idle_semaphore.acquire(timeout=0):
            return
        if len(self._threads) >= self._max_workers:
            return

        def wake_workers(_, work_queue=self._work_queue):
            work_queue.put(None)

        thread = threading.Thread(
            name=f"{self._name}Worker-{next(self._thread_numbers)}",
            target=_worker,
            args=(
                weakref.ref(self, wake_workers),
                self._work_queue,
                self._initializer,
                self._uninitializer,
            ),
            daemon=True,
        )
        thread.start()
        self._threads.append(thread)
        if self._wait_at_exit:
            with _exit_lock:
                _waited_threads[thread] = self._work_queue

    def _drain_queue(self) -> list[Future]:
        """Take every queued job off the queue; return their futures."""
        futures = []
        while True:
            try:
                item = self._work_queue.get_nowait()
            except queue.Empty:
                return futures
            if item is not None:
                futures.append(item.future)

    def _initializer_failed(self) -> None:
        message = "a worker initializer failed; the pool accepts no more work"
        with self._shutdown_lock:
            self._broken = message
            dropped = self._drain_queue()
            self._work_queue.put(None)
        for future in dropped:
            if future.set_running_or_notify_cancel():
                future.set_exception(BrokenThreadPool(message))
