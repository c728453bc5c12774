"""Tools for threaded code: locks as decorators, executors and schedulers.

`encore.concurrent.threadtools` holds small threading patterns and
`encore.concurrent.futures` extends the standard `concurrent.futures`
with an enhanced thread pool, a synchronous executor and work schedulers.
"""
