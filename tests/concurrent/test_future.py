import concurrent.futures
import gc

import pytest

from encore.concurrent.futures.future import Future


def failing_job():
    raise KeyError("missing piece")


def test_traceback_none_on_success():
    future = Future()
    future.set_result(3)
    assert future.traceback() is None
    assert future.result() == 3


def test_traceback_text_survives_the_exception_frames():
    future = Future()
    try:
        failing_job()
    except KeyError as exc:
        future.set_exception(exc)
    # Drop the frames the exception points at: the text must not need them.
    future.exception().__traceback__ = None
    gc.collect()
    text = future.traceback()
    assert text.startswith("Traceback (most recent call last):")
    assert "failing_job" in text
    assert "KeyError: 'missing piece'" in text


def test_traceback_waits_like_exception():
    future = Future()
    with pytest.raises(concurrent.futures.TimeoutError):
        future.traceback(timeout=0)


def test_traceback_of_cancelled_future_raises():
    future = Future()
    assert future.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        future.traceback()


def test_is_a_standard_future():
    future = Future()
    future.set_result(None)
    done, _ = concurrent.futures.wait([future], timeout=0)
    assert done == {future}


def test_api_reexports():
    import importlib

    from encore.concurrent.futures import api

    modules = {
        "ABCWorkScheduler": "abc_work_scheduler",
        "Asynchronizer": "asynchronizer",
        "BrokenThreadPool": "enhanced_thread_pool_executor",
        "DelayedAsynchronizer": "delayed_asynchronizer",
        "EnhancedThreadPoolExecutor": "enhanced_thread_pool_executor",
        "Future": "future",
        "Serializer": "serializer",
        "SerializingAsynchronizer": "serializing_asynchronizer",
        "SynchronousExecutor": "synchronous",
    }
    assert sorted(api.__all__) == sorted(modules)
    for name, module in modules.items():
        real = importlib.import_module(f"encore.concurrent.futures.{module}")
        assert getattr(api, name) is getattr(real, name)
