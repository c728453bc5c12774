"""Executors, futures and work schedulers built on `concurrent.futures`.

Modules (their paths are public API):

- `future`: `Future`, a `concurrent.futures.Future` that keeps the formatted
  traceback of its exception.
- `synchronous`: `SynchronousExecutor`, runs each call at once.
- `enhanced_thread_pool_executor`: `EnhancedThreadPoolExecutor`, a thread
  pool with per-worker initializer and uninitializer.
- `abc_work_scheduler`, `asynchronizer`, `delayed_asynchronizer`,
  `serializer`, `serializing_asynchronizer`: schedulers that decide which
  submitted jobs run, and in which order, on top of any executor.

`encore.concurrent.futures.api` re-exports the public names.
"""
