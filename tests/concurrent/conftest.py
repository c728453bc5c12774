"""Fixtures shared by the concurrency tests."""

import concurrent.futures

import pytest

from encore.concurrent.futures.enhanced_thread_pool_executor import (
    EnhancedThreadPoolExecutor,
)
from encore.concurrent.futures.synchronous import SynchronousExecutor

# Deadline for anything that must happen; generous, because a loaded CI
# machine can be slow, and tests only wait this long when they fail.
DEADLINE = 10.0


@pytest.fixture
def deadline():
    """Seconds a test waits for something that must happen."""
    return DEADLINE


@pytest.fixture
def pool():
    """A four-worker pool, shut down after the test."""
    executor = EnhancedThreadPoolExecutor(4, name="test")
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


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
