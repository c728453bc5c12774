"""``DelayedAsynchronizer`` bursts, as in encore 0.8 (issue 14).

After ``wait()`` returns, a new burst of submissions runs its first job (no
sooner than ``interval`` after the previous job) and its last: three bursts
of five with ``wait()`` between run six jobs, each starting at least
``interval`` after the one before.
"""

from __future__ import annotations

import threading
import time

from encore.concurrent.futures.delayed_asynchronizer import DelayedAsynchronizer

DEADLINE = 30.0
INTERVAL = 0.2


def run_bursts(executor, bursts=3, size=5):
    """Submit ``bursts`` bursts of ``size`` jobs, waiting between bursts.

    Each job records its tag and start time; it then waits until its whole
    burst is submitted, so a job cannot finish (and the scheduler go idle)
    in the middle of a burst however the threads are scheduled.
    """
    scheduler = DelayedAsynchronizer(executor, INTERVAL)
    starts = []
    futures = {}
    for b in range(bursts):
        submitted = threading.Event()

        def job(tag, submitted=submitted):
            starts.append((tag, time.monotonic()))
            assert submitted.wait(DEADLINE)
            return tag

        for n in range(size):
            futures[(b, n)] = scheduler.submit(job, (b, n))
        submitted.set()
        assert scheduler.wait(DEADLINE)
    return starts, futures


def test_three_bursts_of_five_run_six_jobs(threaded_executor):
    starts, futures = run_bursts(threaded_executor)
    tags = [tag for tag, _ in starts]
    assert tags == [(0, 0), (0, 4), (1, 0), (1, 4), (2, 0), (2, 4)]
    times = [t for _, t in starts]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(gap >= INTERVAL for gap in gaps), gaps
    for (b, n), future in futures.items():
        if n in (0, 4):
            assert future.result(0) == (b, n)
        else:
            assert future.cancelled()


def test_first_of_a_burst_waits_for_the_interval(threaded_executor):
    scheduler = DelayedAsynchronizer(threaded_executor, INTERVAL)
    ends = []
    scheduler.submit(lambda: ends.append(time.monotonic()))
    assert scheduler.wait(DEADLINE)
    started = scheduler.submit(time.monotonic).result(DEADLINE)
    assert started - ends[0] >= INTERVAL


def test_after_a_quiet_period_the_first_job_runs_at_once(threaded_executor):
    scheduler = DelayedAsynchronizer(threaded_executor, INTERVAL)
    scheduler.submit(abs, -1).result(DEADLINE)
    assert scheduler.wait(DEADLINE)
    time.sleep(INTERVAL)  # the quiet period itself is what is tested
    submitted = time.monotonic()
    started = scheduler.submit(time.monotonic).result(DEADLINE)
    assert started - submitted < INTERVAL
