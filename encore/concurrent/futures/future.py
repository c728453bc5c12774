"""A `concurrent.futures.Future` that remembers its exception's traceback."""

from __future__ import annotations

import concurrent.futures
import traceback as _traceback

__all__ = ["Future", "cancel_and_notify"]


class Future(concurrent.futures.Future):
    """A future that also keeps the formatted traceback of its exception.

    An exception object only keeps its traceback while somebody holds it;
    formatting it at the moment it is set means the text survives even
    after the frames are gone, and can be logged long after the job ended.
    """

    def __init__(self) -> None:
        super().__init__()
        self._traceback_text: str | None = None

    def set_exception(self, exception: BaseException | None) -> None:
        """Mark the future done with `exception` and format its traceback.

        The formatted text is stored before waiters are woken, so any
        thread that sees the future done also sees its traceback.
        """
        if exception is not None:
            self._traceback_text = "".join(
                _traceback.format_exception(
                    type(exception), exception, exception.__traceback__
                )
            )
        super().set_exception(exception)

    def traceback(self, timeout: float | None = None) -> str | None:
        """Return the formatted traceback of the call's exception.

        Waits like `exception()`: up to `timeout` seconds (forever when
        None) for the future to finish.  Returns None when the call
        succeeded.

        Raises
        ------
        concurrent.futures.CancelledError
            If the future was cancelled.
        TimeoutError
            If the future did not finish within `timeout`.
        """
        if self.exception(timeout) is None:
            return None
        return self._traceback_text


def cancel_and_notify(future: concurrent.futures.Future) -> bool:
    """Cancel a future that an executor holds but will never run.

    `Future.cancel` alone leaves the future in a state that
    `concurrent.futures.wait` and `as_completed` do not count as done;
    an executor that drops a queued job must also notify those waiters,
    as it would have when it tried to start the job.  Returns whether the
    future ended cancelled (False if it was already running or finished).
    """
    if not future.cancel():
        return False
    try:
        future.set_running_or_notify_cancel()
    except RuntimeError:
        # Already notified: nothing left to do.
        pass
    return True
