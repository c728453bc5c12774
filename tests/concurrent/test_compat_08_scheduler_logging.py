"""Schedulers report failures the way encore 0.8 does (issue 14).

A failed job or a raising completion callback gives two ERROR records on
``encore.concurrent.futures.abc_work_scheduler``: first one carrying the
exception (``exc_info``), then one with the traceback formatted on the
worker thread. The callback runs first, then the job's outcome is checked.
"""

from __future__ import annotations

import logging

import pytest

from encore.concurrent.futures.asynchronizer import Asynchronizer
from encore.concurrent.futures.delayed_asynchronizer import DelayedAsynchronizer
from encore.concurrent.futures.serializer import Serializer
from encore.concurrent.futures.serializing_asynchronizer import (
    SerializingAsynchronizer,
)
from encore.concurrent.futures.synchronous import SynchronousExecutor

LOGGER = "encore.concurrent.futures.abc_work_scheduler"
DEADLINE = 30.0

SCHEDULERS = {
    "Asynchronizer": Asynchronizer,
    "DelayedAsynchronizer": lambda ex, **kw: DelayedAsynchronizer(ex, 0.01, **kw),
    "Serializer": Serializer,
    "SerializingAsynchronizer": SerializingAsynchronizer,
}


class Records(logging.Handler):
    """Collects the records of the scheduler logger (from any thread)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records():
    """The records logged on the scheduler logger during the test."""
    handler = Records()
    log = logging.getLogger(LOGGER)
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


@pytest.fixture(params=["threaded", "synchronous"])
def executor(request, threaded_executor):
    """A thread pool (ours and the standard one) or a synchronous executor."""
    if request.param == "threaded":
        yield threaded_executor
    else:
        sync = SynchronousExecutor()
        yield sync
        sync.shutdown()


class JobError(Exception):
    """Raised by the failing job."""


class CallbackError(Exception):
    """Raised by the failing callback."""


def failing_job():
    """A job that fails."""
    raise JobError("the job failed")


def check_pair(pair, exc_type, message, where):
    """The two records of one failure, in order."""
    first, second = pair
    assert first.levelno == second.levelno == logging.ERROR
    assert first.name == second.name == LOGGER
    assert first.exc_info is not None and first.exc_info[0] is exc_type
    assert str(first.exc_info[1]) == message
    text = second.getMessage()
    assert second.exc_info is None
    assert "Traceback (most recent call last)" in text
    assert where in text
    assert f"{exc_type.__name__}: {message}" in text
    return first.exc_info[1]


@pytest.mark.parametrize("make", SCHEDULERS.values(), ids=SCHEDULERS.keys())
def test_failed_job_gives_two_records(make, executor, records):
    scheduler = make(executor, name="plots")
    future = scheduler.submit(failing_job)
    assert scheduler.wait(DEADLINE)
    assert len(records) == 2, [r.getMessage() for r in records]
    exc = check_pair(records, JobError, "the job failed", "failing_job")
    assert exc is future.exception(0)  # the job's own exception object
    assert all("plots" in r.getMessage() for r in records)


@pytest.mark.parametrize("make", SCHEDULERS.values(), ids=SCHEDULERS.keys())
def test_raising_callback_gives_two_records(make, executor, records):
    raised = []

    def callback(future):
        exc = CallbackError("the callback failed")
        raised.append(exc)
        raise exc

    scheduler = make(executor, callback=callback)
    assert scheduler.submit(abs, -3).result(DEADLINE) == 3
    assert scheduler.wait(DEADLINE)
    assert len(records) == 2, [r.getMessage() for r in records]
    exc = check_pair(records, CallbackError, "the callback failed", "callback")
    assert exc is raised[0]


@pytest.mark.parametrize("make", SCHEDULERS.values(), ids=SCHEDULERS.keys())
def test_callback_first_then_the_result_is_checked(make, executor, records):
    seen_at_callback = []

    def callback(future):
        # The job's failure is not reported yet when the callback runs.
        seen_at_callback.append((len(records), type(future.exception(0))))
        raise CallbackError("the callback failed")

    scheduler = make(executor, callback=callback)
    scheduler.submit(failing_job)
    assert scheduler.wait(DEADLINE)
    assert seen_at_callback == [(0, JobError)]
    assert len(records) == 4, [r.getMessage() for r in records]
    check_pair(records[:2], CallbackError, "the callback failed", "callback")
    check_pair(records[2:], JobError, "the job failed", "failing_job")


@pytest.mark.parametrize("make", SCHEDULERS.values(), ids=SCHEDULERS.keys())
def test_success_logs_nothing_and_scheduler_goes_on(make, executor, records):
    scheduler = make(executor)
    scheduler.submit(failing_job)
    assert scheduler.wait(DEADLINE)
    assert scheduler.submit(abs, -4).result(DEADLINE) == 4
    assert scheduler.wait(DEADLINE)
    assert len(records) == 2
