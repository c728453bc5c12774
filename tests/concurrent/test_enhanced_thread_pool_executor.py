import concurrent.futures
import gc
import logging
import textwrap
import threading
import weakref
from pathlib import Path

import pytest

from encore.concurrent.futures.enhanced_thread_pool_executor import (
    BrokenThreadPool,
    EnhancedThreadPoolExecutor,
)
from encore.concurrent.futures.future import Future
from encore.testing.asserts import assert_python_ok

DEADLINE = 10.0
ROOT = str(Path(__file__).resolve().parents[2])


class Recorder:
    """Thread-safe record of which threads ran the hooks."""

    def __init__(self):
        self.lock = threading.Lock()
        self.inits = []
        self.uninits = []

    def init(self):
        with self.lock:
            self.inits.append(threading.current_thread().name)

    def uninit(self):
        with self.lock:
            self.uninits.append(threading.current_thread().name)


def occupy_workers(executor, n):
    """Make `n` workers exist at once: each job waits for all the others."""
    barrier = threading.Barrier(n)
    futures = [executor.submit(barrier.wait, DEADLINE) for _ in range(n)]
    for future in futures:
        future.result(DEADLINE)


def test_every_worker_runs_initializer_and_uninitializer():
    rec = Recorder()
    executor = EnhancedThreadPoolExecutor(
        3, initializer=rec.init, uninitializer=rec.uninit, name="hooks"
    )
    occupy_workers(executor, 3)
    assert sorted(rec.inits) == ["hooksWorker-0", "hooksWorker-1", "hooksWorker-2"]
    assert rec.uninits == []
    executor.shutdown(wait=True)
    assert sorted(rec.uninits) == sorted(rec.inits)


def test_worker_names_use_the_prefix_and_count_from_zero():
    with EnhancedThreadPoolExecutor(2, name="Fetcher") as executor:
        names = set()
        barrier = threading.Barrier(2)

        def job():
            barrier.wait(DEADLINE)
            return threading.current_thread().name

        names = {
            f.result(DEADLINE) for f in [executor.submit(job), executor.submit(job)]
        }
    assert names == {"FetcherWorker-0", "FetcherWorker-1"}
    assert executor.name == "Fetcher"


def test_idle_worker_is_reused_instead_of_starting_threads():
    with EnhancedThreadPoolExecutor(8, name="reuse") as executor:
        names = {
            executor.submit(threading.current_thread).result(DEADLINE).name
            for _ in range(20)
        }
    assert names == {"reuseWorker-0"}


def test_futures_keep_tracebacks():
    def fails():
        raise ZeroDivisionError("oops")

    with EnhancedThreadPoolExecutor(1) as executor:
        future = executor.submit(fails)
        assert isinstance(future, Future)
        assert "ZeroDivisionError: oops" in future.traceback(DEADLINE)
        assert "fails" in future.traceback()


def test_map_submits_eagerly():
    n = 4
    barrier = threading.Barrier(n + 1)

    def job(x):
        barrier.wait(DEADLINE)
        return x * x

    with EnhancedThreadPoolExecutor(n) as executor:
        results = executor.map(job, range(n))
        # Without consuming `results`: this only passes if all n jobs were
        # already submitted and are running.
        barrier.wait(DEADLINE)
        assert list(results) == [0, 1, 4, 9]


def test_shutdown_without_waiting_loses_no_queued_job():
    gate = threading.Event()
    executor = EnhancedThreadPoolExecutor(2, name="nowait")
    futures = [
        executor.submit(lambda i=i: gate.wait(DEADLINE) and i) for i in range(50)
    ]
    executor.shutdown(wait=False)  # returns although every job is blocked
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(print)
    assert not any(f.done() for f in futures)
    gate.set()
    assert [f.result(DEADLINE) for f in futures] == list(range(50))
    for thread in executor._threads:
        thread.join(DEADLINE)
        assert not thread.is_alive()


def test_shutdown_with_wait_returns_after_workers_exited():
    rec = Recorder()
    executor = EnhancedThreadPoolExecutor(2, uninitializer=rec.uninit)
    futures = [executor.submit(pow, 2, i) for i in range(100)]
    executor.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [2**i for i in range(100)]
    assert not any(t.is_alive() for t in executor._threads)
    assert len(rec.uninits) == len(executor._threads)


def test_shutdown_can_cancel_queued_jobs():
    started = threading.Event()
    gate = threading.Event()

    def blocker():
        started.set()
        return gate.wait(DEADLINE)

    executor = EnhancedThreadPoolExecutor(1)
    running = executor.submit(blocker)
    assert started.wait(DEADLINE)
    queued = [executor.submit(print) for _ in range(5)]
    shutter = threading.Thread(
        target=executor.shutdown, kwargs={"cancel_futures": True}
    )
    shutter.start()
    # The queued jobs are cancelled while the running one still blocks.
    _, not_done = concurrent.futures.wait(queued, DEADLINE)
    assert not not_done
    assert all(f.cancelled() for f in queued)
    assert not running.done()
    gate.set()
    shutter.join(DEADLINE)
    assert running.result(0) is True


def test_submissions_racing_shutdown_either_run_or_raise():
    # Every accepted job must run; every refused one must raise.
    executor = EnhancedThreadPoolExecutor(3)
    start = threading.Barrier(5)
    accepted, refused = [], []
    lock = threading.Lock()

    def submitter():
        start.wait(DEADLINE)
        for i in range(500):
            try:
                future = executor.submit(abs, -i)
            except RuntimeError:
                with lock:
                    refused.append(i)
                return
            with lock:
                accepted.append(future)

    threads = [threading.Thread(target=submitter) for _ in range(4)]
    for t in threads:
        t.start()
    start.wait(DEADLINE)
    executor.shutdown(wait=False)
    for t in threads:
        t.join(DEADLINE)
    results = [future.result(DEADLINE) for future in accepted]
    assert len(results) == len(accepted)
    # each submitter stops at its first refusal
    assert len(refused) <= 4


def test_workers_exit_when_executor_is_collected():
    rec = Recorder()
    executor = EnhancedThreadPoolExecutor(2, uninitializer=rec.uninit, name="collected")
    occupy_workers(executor, 2)
    threads = list(executor._threads)
    ref = weakref.ref(executor)
    del executor
    gc.collect()
    assert ref() is None
    for thread in threads:
        thread.join(DEADLINE)
        assert not thread.is_alive()
    assert sorted(rec.uninits) == ["collectedWorker-0", "collectedWorker-1"]


def test_jobs_queued_before_collection_still_run():
    gate = threading.Event()
    results = []
    executor = EnhancedThreadPoolExecutor(1)
    executor.submit(gate.wait, DEADLINE)
    for i in range(10):
        executor.submit(results.append, i)
    thread = executor._threads[0]
    del executor
    gc.collect()
    gate.set()
    thread.join(DEADLINE)
    assert not thread.is_alive()
    assert results == list(range(10))


def test_failing_initializer_breaks_the_pool(caplog):
    def bad_init():
        raise OSError("no database")

    executor = EnhancedThreadPoolExecutor(1, initializer=bad_init)
    with caplog.at_level(logging.ERROR):
        future = executor.submit(print)
        with pytest.raises(BrokenThreadPool):
            future.result(DEADLINE)
    assert "initializer failed" in caplog.text
    assert "OSError: no database" in caplog.text
    with pytest.raises(BrokenThreadPool):
        executor.submit(print)
    executor.shutdown(wait=True)


def test_failing_uninitializer_is_logged(caplog):
    def bad_uninit():
        raise RuntimeError("cannot close")

    with caplog.at_level(logging.ERROR):
        with EnhancedThreadPoolExecutor(1, uninitializer=bad_uninit) as executor:
            assert executor.submit(abs, -1).result(DEADLINE) == 1
    assert "uninitializer failed" in caplog.text
    assert "cannot close" in caplog.text


def test_shutdown_from_inside_a_job_does_not_wait_for_itself():
    executor = EnhancedThreadPoolExecutor(1)
    future = executor.submit(executor.shutdown, wait=True)
    assert future.result(DEADLINE) is None
    executor.shutdown(wait=True)


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_workers"):
        EnhancedThreadPoolExecutor(0)
    with pytest.raises(TypeError, match="initializer"):
        EnhancedThreadPoolExecutor(1, initializer="not callable")
    with pytest.raises(TypeError, match="uninitializer"):
        EnhancedThreadPoolExecutor(1, uninitializer=3)


EXIT_SCRIPT = textwrap.dedent(
    """
    import threading
    from encore.concurrent.futures.enhanced_thread_pool_executor import (
        EnhancedThreadPoolExecutor,
    )

    def after_main_thread_ends():
        # Only possible once the interpreter has started to exit.
        threading.main_thread().join()
        print("job finished after main", flush=True)

    def uninit():
        print("uninitializer ran", flush=True)

    executor = EnhancedThreadPoolExecutor(
        1, uninitializer=uninit, wait_at_exit={wait}
    )
    executor.submit({job})
    print("main done", flush=True)
    """
)


@pytest.mark.parametrize("keep_reference", [True, False])
def test_interpreter_waits_for_jobs_at_exit(keep_reference):
    script = EXIT_SCRIPT.format(wait=True, job="after_main_thread_ends")
    if not keep_reference:
        script += "del executor\n"
    _, out, err = assert_python_ok("-c", script, PYTHONPATH=ROOT)
    assert out.decode().splitlines() == [
        "main done",
        "job finished after main",
        "uninitializer ran",
    ], err.decode()


def test_interpreter_need_not_wait_for_jobs_at_exit():
    # The job blocks forever: the process only exits because it is not
    # waited for.
    script = EXIT_SCRIPT.format(wait=False, job="threading.Event().wait")
    _, out, err = assert_python_ok("-c", script, PYTHONPATH=ROOT)
    assert out.decode().splitlines() == ["main done"], err.decode()
