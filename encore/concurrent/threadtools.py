"""Small, reusable patterns for threaded code."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["synchronized"]

F = TypeVar("F", bound=Callable[..., object])


def synchronized(func: F) -> F:
    """Decorate `func` so that at most one thread runs it at a time.

    Each decorated function gets its own private lock; calls from other
    threads wait until the running call returns or raises.  The lock is
    re-entrant, so a synchronized function may call itself (or another
    path back into itself) on the same thread without deadlocking.  For a
    method the lock is shared by every instance, because it belongs to the
    function, not to the object.

    The wrapper keeps the name, docstring and module of `func`; the lock is
    reachable as ``wrapper.lock`` for code that must hold it across several
    calls.  Exceptions raised by `func` propagate unchanged and release the
    lock.
    """
    lock = threading.RLock()

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with lock:
            return func(*args, **kwargs)

    wrapper.lock = lock  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
