"""Scheduling guarantees, proved with real threads and events."""

import concurrent.futures
import logging
import threading
import time

import pytest

from encore.concurrent.futures.abc_work_scheduler import ABCWorkScheduler
from encore.concurrent.futures.asynchronizer import Asynchronizer
from encore.concurrent.futures.delayed_asynchronizer import DelayedAsynchronizer
from encore.concurrent.futures.enhanced_thread_pool_executor import (
    EnhancedThreadPoolExecutor,
)
from encore.concurrent.futures.serializer import Serializer
from encore.concurrent.futures.serializing_asynchronizer import (
    SerializingAsynchronizer,
)
from encore.concurrent.futures.synchronous import SynchronousExecutor

DEADLINE = 10.0
LOGGER = "encore.concurrent.futures.abc_work_scheduler"

ALL_SCHEDULERS = [
    Asynchronizer,
    Serializer,
    SerializingAsynchronizer,
    lambda executor, **kw: DelayedAsynchronizer(executor, 0.0, **kw),
]


class Log:
    """Thread-safe record of what ran, and how many ran at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ran = []
        self.inside = 0
        self.most_inside = 0

    def record(self, tag):
        with self.lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.ran.append(tag)
        # Give other workers every chance to overlap if they could.
        time.sleep(0)
        with self.lock:
            self.inside -= 1
        return tag


def blocker(log, tag):
    """A job that runs until the test lets it go, and says when it started."""
    started = threading.Event()
    release = threading.Event()

    def job():
        started.set()
        assert release.wait(DEADLINE)
        return log.record(tag)

    return job, started, release


def submit_concurrently(scheduler, log, threads=4, each=200):
    """Submit ``log.record((n, i))`` from `threads` threads released at once."""
    go = threading.Barrier(threads)

    def submitter(n):
        go.wait(DEADLINE)
        for i in range(each):
            scheduler.submit(log.record, (n, i))

    workers = [threading.Thread(target=submitter, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(DEADLINE)
        assert not worker.is_alive()


# -- Asynchronizer ---------------------------------------------------------


def test_asynchronizer_runs_running_job_then_only_the_last(threaded_executor):
    log = Log()
    scheduler = Asynchronizer(threaded_executor)
    job, started, release = blocker(log, "first")
    first = scheduler.submit(job)
    assert started.wait(DEADLINE)
    futures = [scheduler.submit(log.record, i) for i in range(100)]
    release.set()
    assert scheduler.wait(DEADLINE)
    assert log.ran == ["first", 99]
    assert first.result(0) == "first"
    assert all(f.cancelled() for f in futures[:-1])
    assert futures[-1].result(0) == 99


def test_asynchronizer_last_submission_always_runs_under_contention():
    # Four threads submit as fast as they can while jobs run; after they
    # stop, one more submission is made.  Whatever was dropped, that one
    # must be the last job to run, in every round.
    with EnhancedThreadPoolExecutor(4) as executor:
        for round_ in range(30):
            log = Log()
            scheduler = Asynchronizer(executor)
            submit_concurrently(scheduler, log, each=200)
            final = scheduler.submit(log.record, "final")
            assert scheduler.wait(DEADLINE)
            assert final.result(0) == "final"
            assert log.ran[-1] == "final", round_
            assert log.most_inside == 1


# -- Serializer ------------------------------------------------------------


def test_serializer_runs_everything_in_submission_order(threaded_executor):
    log = Log()
    scheduler = Serializer(threaded_executor)
    futures = [scheduler.submit(log.record, i) for i in range(300)]
    assert scheduler.wait(DEADLINE)
    assert log.ran == list(range(300))
    assert [f.result(0) for f in futures] == list(range(300))
    assert log.most_inside == 1


def test_serializer_keeps_each_threads_order_and_loses_nothing(threaded_executor):
    log = Log()
    scheduler = Serializer(threaded_executor)
    submit_concurrently(scheduler, log, each=250)
    assert scheduler.wait(DEADLINE)
    assert len(log.ran) == 1000
    for n in range(4):
        assert [i for m, i in log.ran if m == n] == list(range(250))
    assert log.most_inside == 1


# -- SerializingAsynchronizer ----------------------------------------------


def test_serializing_asynchronizer_semantics_example(threaded_executor):
    # SEMANTICS.md: C running; A, B, A submitted -> runs C, A, B.
    log = Log()
    scheduler = SerializingAsynchronizer(threaded_executor)

    def a(arg):
        return log.record(("A", arg))

    def b():
        return log.record(("B",))

    c, started, release = blocker(log, ("C",))
    scheduler.submit(c)
    assert started.wait(DEADLINE)
    first_a = scheduler.submit(a, 1)
    b_future = scheduler.submit(b)
    second_a = scheduler.submit(a, 2)
    release.set()
    assert scheduler.wait(DEADLINE)
    assert log.ran == [("C",), ("A", 2), ("B",)]
    assert first_a.cancelled()
    assert second_a.result(0) == ("A", 2)
    assert b_future.result(0) == ("B",)


def test_serializing_asynchronizer_treats_equal_bound_methods_as_one(
    threaded_executor,
):
    log = Log()

    class Plot:
        def redraw(self, n):
            return log.record(("redraw", id(self), n))

    one, two = Plot(), Plot()
    scheduler = SerializingAsynchronizer(threaded_executor)
    c, started, release = blocker(log, "C")
    scheduler.submit(c)
    assert started.wait(DEADLINE)
    for n in range(5):
        scheduler.submit(one.redraw, n)  # a new bound method object each time
        scheduler.submit(two.redraw, n)
    release.set()
    assert scheduler.wait(DEADLINE)
    assert log.ran == ["C", ("redraw", id(one), 4), ("redraw", id(two), 4)]


def test_serializing_asynchronizer_accepts_unhashable_callables(sync_executor):
    class Unhashable:
        __hash__ = None

        def __call__(self):
            return "called"

    scheduler = SerializingAsynchronizer(sync_executor)
    assert scheduler.submit(Unhashable()).result(0) == "called"


# -- DelayedAsynchronizer --------------------------------------------------


def test_delayed_asynchronizer_leaves_interval_between_jobs(threaded_executor):
    interval = 0.25
    times = {}
    scheduler = DelayedAsynchronizer(threaded_executor, interval)
    assert scheduler.interval == interval

    def first():
        times["first_end"] = time.monotonic()

    started = threading.Event()
    release = threading.Event()

    def first_blocking():
        started.set()
        assert release.wait(DEADLINE)
        first()

    def later(n):
        times.setdefault("later_starts", []).append((n, time.monotonic()))

    scheduler.submit(first_blocking)
    assert started.wait(DEADLINE)
    for n in range(10):
        scheduler.submit(later, n)
    release.set()
    assert scheduler.wait(DEADLINE)
    [(n, start)] = times["later_starts"]
    assert n == 9
    assert start - times["first_end"] >= interval


def test_delayed_asynchronizer_first_job_after_quiet_runs_at_once(sync_executor):
    scheduler = DelayedAsynchronizer(sync_executor, 3600)
    before = time.monotonic()
    assert scheduler.submit(abs, -5).result(0) == 5
    assert time.monotonic() - before < 60


@pytest.mark.parametrize("interval", [-1, float("inf"), float("nan"), "soon", None])
def test_delayed_asynchronizer_rejects_bad_interval(sync_executor, interval):
    with pytest.raises(ValueError, match="interval"):
        DelayedAsynchronizer(sync_executor, interval)


# -- common rules ----------------------------------------------------------


@pytest.mark.parametrize("make", ALL_SCHEDULERS)
def test_submit_after_shutdown_raises(make, threaded_executor):
    scheduler = make(threaded_executor)
    assert scheduler.submit(abs, -1).result(DEADLINE) == 1
    scheduler.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        scheduler.submit(abs, -1)


@pytest.mark.parametrize("make", ALL_SCHEDULERS)
def test_shutdown_waits_for_pending_jobs(make, threaded_executor):
    log = Log()
    scheduler = make(threaded_executor)
    job, started, release = blocker(log, "running")
    scheduler.submit(job)
    assert started.wait(DEADLINE)
    scheduler.submit(log.record, "pending")
    shut = threading.Thread(target=scheduler.shutdown)
    shut.start()
    shut.join(0.2)
    assert shut.is_alive(), "shutdown returned while a job was still running"
    release.set()
    shut.join(DEADLINE)
    assert not shut.is_alive()
    assert log.ran == ["running", "pending"]


@pytest.mark.parametrize("make", ALL_SCHEDULERS)
def test_job_exception_is_logged_and_scheduler_goes_on(make, threaded_executor, caplog):
    scheduler = make(threaded_executor, name="plotter")

    def broken():
        raise ValueError("bad data")

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        bad = scheduler.submit(broken)
        assert scheduler.wait(DEADLINE)
        good = scheduler.submit(abs, -2)
        assert scheduler.wait(DEADLINE)
    assert isinstance(bad.exception(0), ValueError)
    assert "broken" in bad.traceback()
    assert good.result(0) == 2
    # Two records, as in encore 0.8: the exception, then the traceback text.
    record, text = [r for r in caplog.records if r.name == LOGGER]
    assert "plotter" in record.getMessage()
    assert "ValueError" in record.getMessage()
    assert record.exc_info[0] is ValueError  # logged with its traceback
    assert "bad data" in text.getMessage() and text.exc_info is None


@pytest.mark.parametrize("make", ALL_SCHEDULERS)
def test_callback_sees_each_run_and_its_errors_are_logged(
    make, threaded_executor, caplog
):
    seen = []

    def callback(future):
        seen.append(future.result())
        if future.result() == "explode":
            raise RuntimeError("callback broke")

    scheduler = make(threaded_executor, callback=callback)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        scheduler.submit(str, "explode")
        assert scheduler.wait(DEADLINE)
        scheduler.submit(str, "fine")
        assert scheduler.wait(DEADLINE)
    assert seen == ["explode", "fine"]
    assert "completion callback" in caplog.text
    assert "callback broke" in caplog.text


def test_callback_is_not_called_for_replaced_jobs(threaded_executor):
    seen = []
    log = Log()
    scheduler = Asynchronizer(threaded_executor, callback=lambda f: seen.append(f))
    job, started, release = blocker(log, "C")
    c = scheduler.submit(job)
    assert started.wait(DEADLINE)
    scheduler.submit(log.record, "dropped")
    last = scheduler.submit(log.record, "kept")
    release.set()
    assert scheduler.wait(DEADLINE)
    assert seen == [c, last]


@pytest.mark.parametrize("make", ALL_SCHEDULERS)
def test_wait_inside_a_job_raises_instead_of_deadlocking(make, threaded_executor):
    scheduler = make(threaded_executor)
    future = scheduler.submit(lambda: scheduler.wait())
    with pytest.raises(RuntimeError, match="inside one of its own jobs"):
        future.result(DEADLINE)
    assert scheduler.wait(DEADLINE)
    scheduler.shutdown(wait=False)
    with pytest.raises(RuntimeError):
        scheduler.submit(print)


def test_shutdown_without_wait_inside_a_job(threaded_executor):
    scheduler = Serializer(threaded_executor)
    future = scheduler.submit(scheduler.shutdown, wait=False)
    assert future.result(DEADLINE) is None
    with pytest.raises(RuntimeError):
        scheduler.submit(print)


def test_self_resubmitting_job_does_not_recurse(sync_executor):
    # On a synchronous executor a job that submits to its own scheduler
    # must be queued, not run inside the submitting job: 5000 nested calls
    # would overflow the stack.
    count = []
    scheduler = Serializer(sync_executor)

    def again():
        count.append(1)
        if len(count) < 5000:
            scheduler.submit(again)

    scheduler.submit(again)
    assert len(count) == 5000
    assert scheduler.wait(0)


def test_executor_refusing_work_fails_clearly(caplog):
    executor = EnhancedThreadPoolExecutor(1)
    executor.shutdown()
    scheduler = Serializer(executor, name="orphan")
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        with pytest.raises(RuntimeError, match="after shutdown"):
            scheduler.submit(print)
    assert "orphan: the executor refused work; 1 pending job(s) failed" in caplog.text
    assert scheduler.wait(0)  # not stuck looking busy


def test_wait_times_out_while_busy(threaded_executor):
    log = Log()
    scheduler = Serializer(threaded_executor)
    job, started, release = blocker(log, "busy")
    scheduler.submit(job)
    assert started.wait(DEADLINE)
    assert scheduler.wait(timeout=0.01) is False
    release.set()
    assert scheduler.wait(DEADLINE) is True


def test_default_name_and_bad_arguments(sync_executor):
    assert Serializer(sync_executor).name == "Serializer"
    assert "named" in repr(Asynchronizer(sync_executor, name="named"))
    with pytest.raises(TypeError, match="callback"):
        Serializer(sync_executor, callback=42)
    with pytest.raises(TypeError, match="not callable"):
        Serializer(sync_executor).submit(42)
    with pytest.raises(TypeError):
        ABCWorkScheduler(sync_executor)


def test_cancelled_pending_job_is_skipped(threaded_executor):
    log = Log()
    scheduler = Serializer(threaded_executor)
    job, started, release = blocker(log, "C")
    scheduler.submit(job)
    assert started.wait(DEADLINE)
    skipped = scheduler.submit(log.record, "skipped")
    scheduler.submit(log.record, "ran")
    assert skipped.cancel()
    release.set()
    assert scheduler.wait(DEADLINE)
    assert log.ran == ["C", "ran"]
    done, _ = concurrent.futures.wait([skipped], 0)
    assert done == {skipped}


def test_works_on_synchronous_executor():
    with SynchronousExecutor() as executor:
        scheduler = SerializingAsynchronizer(executor)
        assert scheduler.submit(max, 3, 4).result(0) == 4


@pytest.mark.parametrize("make", ALL_SCHEDULERS)
def test_executor_cancelling_the_work_leaves_scheduler_idle(make, caplog):
    executor = EnhancedThreadPoolExecutor(1)
    started, release = threading.Event(), threading.Event()

    def occupy():
        started.set()
        release.wait(DEADLINE)

    executor.submit(occupy)
    assert started.wait(DEADLINE)
    scheduler = make(executor, name="stranded")
    job = scheduler.submit(print, "never")
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        executor.shutdown(wait=False, cancel_futures=True)
        assert scheduler.wait(DEADLINE)
    assert job.cancelled()
    assert "stranded: the executor cancelled its work" in caplog.text
    release.set()
    executor.shutdown(wait=True)
