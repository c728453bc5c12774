"""Cost of the work schedulers and of a live ProgressDisplay.

Run:  python bench/bench_concurrent_terminal.py [--repeat 5]

Schedulers: N no-op jobs submitted, then waited for.  Anchors in the same
run: the same jobs submitted straight to the same one-worker
EnhancedThreadPoolExecutor, and to the standard library's
ThreadPoolExecutor(1).  A Serializer runs every job (one executor task
drains them all); an Asynchronizer, submitted to in a tight loop, runs only
a few of them, so its row is the cost of a submission.

ProgressDisplay: N ProgressStepEvents of one operation emitted on an
EventManager.  Anchors: the same emits with no listener, and with one
listener that does nothing.  The display draws ANSI frames, throttled to
20 frames per second, to a stream that only counts them; frames and
characters written are reported.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encore.concurrent.futures.api import (  # noqa: E402
    Asynchronizer,
    EnhancedThreadPoolExecutor,
    Serializer,
)
from encore.events.api import (  # noqa: E402
    EventManager,
    ProgressEndEvent,
    ProgressStartEvent,
    ProgressStepEvent,
)
from encore.terminal.progress_display import ProgressDisplay  # noqa: E402


def noop():
    return None


def direct(executor, n):
    start = time.perf_counter()
    futures = [executor.submit(noop) for _ in range(n)]
    concurrent.futures.wait(futures)
    return time.perf_counter() - start


def scheduled(executor, cls, n):
    scheduler = cls(executor)
    start = time.perf_counter()
    for _ in range(n):
        scheduler.submit(noop)
    scheduler.wait()
    return time.perf_counter() - start


class CountingSink:
    """A text stream that counts what is written and keeps nothing."""

    def __init__(self):
        self.written = 0

    def write(self, text):
        self.written += len(text)

    def flush(self):
        pass


def emits(n, listen):
    em = EventManager()
    display = None
    sink = CountingSink()
    if listen == "noop":
        em.connect(ProgressStepEvent, lambda event: None)
    elif listen == "display":
        display = ProgressDisplay(em, sink, ansi=True)
    em.emit(ProgressStartEvent(operation_id="op", message="bench", steps=n))
    events = [
        ProgressStepEvent(operation_id="op", message="bench", step=i) for i in range(n)
    ]
    start = time.perf_counter()
    for event in events:
        em.emit(event)
    elapsed = time.perf_counter() - start
    em.emit(ProgressEndEvent(operation_id="op", message="bench", exit_state="normal"))
    frames = 0
    if display is not None:
        display.close()
        frames = display.frames
    return elapsed, frames, sink.written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--events", type=int, default=200000)
    args = parser.parse_args()
    n = args.jobs

    rows = {}

    def best(name, func):
        rows.setdefault(name, []).append(func())

    pool = EnhancedThreadPoolExecutor(1)
    stdlib = concurrent.futures.ThreadPoolExecutor(1)
    for _ in range(args.repeat):
        best("stdlib ThreadPoolExecutor(1), direct", lambda: direct(stdlib, n))
        best("EnhancedThreadPoolExecutor(1), direct", lambda: direct(pool, n))
        best("Serializer on it", lambda: scheduled(pool, Serializer, n))
        best("Asynchronizer on it", lambda: scheduled(pool, Asynchronizer, n))
    pool.shutdown()
    stdlib.shutdown()
    print(f"Schedulers: {n} no-op jobs, best of {args.repeat}")
    print("| what | µs per job |")
    print("|---|---|")
    for name, times in rows.items():
        print(f"| {name} | {min(times) / n * 1e6:.2f} |")

    m = args.events
    results = {}
    for _ in range(args.repeat):
        for listen in ("none", "noop", "display"):
            results.setdefault(listen, []).append(emits(m, listen))
    print(f"\nProgressDisplay: {m} step events, best of {args.repeat}")
    print("| listeners | µs per emit | frames drawn | characters written |")
    print("|---|---|---|---|")
    for listen, runs in results.items():
        elapsed, frames, written = min(runs)
        print(f"| {listen} | {elapsed / m * 1e6:.2f} | {frames} | {written} |")


if __name__ == "__main__":
    main()
