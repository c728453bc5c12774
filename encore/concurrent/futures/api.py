"""Public names of `encore.concurrent.futures` in one place."""

from encore.concurrent.futures.abc_work_scheduler import ABCWorkScheduler
from encore.concurrent.futures.asynchronizer import Asynchronizer
from encore.concurrent.futures.delayed_asynchronizer import DelayedAsynchronizer
from encore.concurrent.futures.enhanced_thread_pool_executor import (
    BrokenThreadPool,
    EnhancedThreadPoolExecutor,
)
from encore.concurrent.futures.future import Future
from encore.concurrent.futures.serializer import Serializer
from encore.concurrent.futures.serializing_asynchronizer import (
    SerializingAsynchronizer,
)
from encore.concurrent.futures.synchronous import SynchronousExecutor

__all__ = [
    "ABCWorkScheduler",
    "Asynchronizer",
    "BrokenThreadPool",
    "DelayedAsynchronizer",
    "EnhancedThreadPoolExecutor",
    "Future",
    "Serializer",
    "SerializingAsynchronizer",
    "SynchronousExecutor",
]
