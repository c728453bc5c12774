import threading

import pytest

from encore.concurrent.futures.future import Future
from encore.concurrent.futures.synchronous import SynchronousExecutor


def test_runs_at_once_on_calling_thread(sync_executor):
    ran_on = []
    future = sync_executor.submit(
        lambda x, y=0: ran_on.append(threading.get_ident()) or x + y, 1, y=2
    )
    assert ran_on == [threading.get_ident()]
    assert isinstance(future, Future)
    assert future.done()
    assert future.result(timeout=0) == 3


def test_exception_goes_to_future_not_caller(sync_executor):
    def broken():
        raise ValueError("nope")

    future = sync_executor.submit(broken)
    assert isinstance(future.exception(timeout=0), ValueError)
    assert "broken" in future.traceback()


def test_keyboard_interrupt_is_stored_and_reraised(sync_executor):
    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sync_executor.submit(interrupt)


def test_submit_after_shutdown_raises():
    executor = SynchronousExecutor()
    executor.shutdown()
    with pytest.raises(RuntimeError, match="shutdown"):
        executor.submit(print)


def test_map_and_context_manager():
    with SynchronousExecutor() as executor:
        assert list(executor.map(pow, [2, 3], [3, 2])) == [8, 9]
    with pytest.raises(RuntimeError):
        executor.submit(print)
