"""An executor that runs each call immediately on the calling thread."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from encore.concurrent.futures.future import Future

__all__ = ["SynchronousExecutor"]


class SynchronousExecutor(concurrent.futures.Executor):
    """Executor whose `submit` runs the call at once and returns it finished.

    Useful in tests and wherever code written against the executor
    interface must run without threads.  The returned future holds the
    call's result or exception; the exception is not raised by `submit`.
    `KeyboardInterrupt` and `SystemExit` are stored on the future and then
    re-raised, so they still stop the caller.
    """

    def __init__(self) -> None:
        self._shutdown = False
        self._shutdown_lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` now and return a finished `Future`.

        Raises
        ------
        RuntimeError
            If the executor has been shut down.
        """
        with self._shutdown_lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        future = Future()
        future.set_running_or_notify_cancel()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            future.set_result(result)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse further submissions.

        Nothing is ever pending, so `wait` and `cancel_futures` have no
        effect; they are accepted for compatibility with `Executor`.
        """
        with self._shutdown_lock:
            self._shutdown = True
