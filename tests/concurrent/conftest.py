"""Fixtures shared by the concurrency tests."""

import concurrent.futures

import pytest

from encore.concurrent.futures.enhanced_thread_pool_executor import (
    EnhancedThreadPoolExecutor,
)
from encore.concurrent.futures.synchronous import SynchronousExecutor


@pytest.fixture(params=["enhanced", "stdlib"])
def threaded_executor(request):
    """A multi-threaded executor: ours and the standard library's."""
    if request.param == "enhanced":
        executor = EnhancedThreadPoolExecutor(4, name="param")
    else:
        executor = concurrent.futures.ThreadPoolExecutor(4)
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def sync_executor():
    """A synchronous executor."""
    executor = SynchronousExecutor()
    yield executor
    executor.shutdown()
