"""``EnhancedThreadPoolExecutor`` with no name names its threads after its
class, as encore 0.8 does (issue 14)."""

from __future__ import annotations

import threading

from encore.concurrent.futures.enhanced_thread_pool_executor import (
    EnhancedThreadPoolExecutor,
)


def _names(executor, count):
    """Names of the threads that ran ``count`` jobs held until all started."""
    barrier = threading.Barrier(count, timeout=30)

    def job():
        barrier.wait()
        return threading.current_thread().name

    futures = [executor.submit(job) for _ in range(count)]
    return {f.result(timeout=30) for f in futures}


def test_default_name_is_the_class_name():
    with EnhancedThreadPoolExecutor(2) as executor:
        assert executor.name == "EnhancedThreadPoolExecutor"
        names = _names(executor, 2)
    assert names == {
        "EnhancedThreadPoolExecutorWorker-0",
        "EnhancedThreadPoolExecutorWorker-1",
    }


def test_subclass_default_is_its_own_name():
    class Downloader(EnhancedThreadPoolExecutor):
        """A subclass, named after itself."""

    with Downloader(1) as executor:
        assert _names(executor, 1) == {"DownloaderWorker-0"}


def test_given_name_still_wins():
    with EnhancedThreadPoolExecutor(1, name="Fetch") as executor:
        assert _names(executor, 1) == {"FetchWorker-0"}
