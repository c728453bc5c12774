"""A subscriber 100x slower than the publisher, for a while.

What must survive: the daemon's memory stays bounded (its per-subscriber
queue is capped by ``publish_hwm`` and its replay buffer by
``event_buffer``); the slow subscriber is told what it missed (every
event is delivered to it or counted in an ``EventsLostEvent``); a fast
subscriber on the same daemon receives every event, with a low latency.

The issue asks for a minute; the default here is 20 s to keep CI short
(``ENCORE_FAULTS_SLOW_SECONDS=60`` runs the full minute).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from encore.events.api import BaseEvent, EventManager
from encore_client import BusBridge

from .conftest import client_env

SECONDS = float(os.environ.get("ENCORE_FAULTS_SLOW_SECONDS", "20"))
RATE = 1000  # events a second from the publisher
SLOW_DELAY = 100 / RATE  # the slow listener: 100x slower

CONFIG = """
[daemon]
heartbeat_interval = 0.2
event_buffer = 2000
publish_hwm = 1000
"""

SUBSCRIBER = r"""
import os, sys, threading, time
from encore.events.api import BaseEvent, EventManager
from encore_client import BusBridge, EventsLostEvent

class Flood(BaseEvent):
    pass
Flood.__module__ = "faultflood"

mode, flag = sys.argv[1], sys.argv[2]
manager = EventManager()
seen, latencies, lost = set(), [], [0]

def on_flood(event):
    seen.add(event.i)
    latencies.append(time.time() - event.sent)
    if mode == "slow" and not os.path.exists(flag):
        time.sleep(float(sys.argv[3]))

manager.connect(Flood, on_flood)
manager.connect(EventsLostEvent, lambda e: lost.__setitem__(0, lost[0] + e.count))
options = {"max_queue": 20, "receive_hwm": 20} if mode == "slow" else {}
with BusBridge(manager, timeout=10, **options) as bridge:
    print("READY", flush=True)
    total = int(sys.stdin.readline())
    deadline = time.monotonic() + 60
    while len(seen) + lost[0] < total and time.monotonic() < deadline:
        time.sleep(0.05)
    latencies.sort()
    n = len(latencies)
    p = lambda q: latencies[min(n - 1, int(q * n))] if n else -1
    print(
        f"SUMMARY {len(seen)} {lost[0]} {p(0.5):.6f} {p(0.99):.6f} "
        f"{latencies[-1] if n else -1:.6f} {bridge.stats['replayed']}",
        flush=True,
    )
"""


class Flood(BaseEvent):
    pass


Flood.__module__ = "faultflood"


def start_subscriber(mode: str, flag: str, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", SUBSCRIBER, mode, flag, str(SLOW_DELAY)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc


def read_line(proc: subprocess.Popen, prefix: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"subscriber ended without {prefix}: {proc.stderr.read()}")


@pytest.mark.slow
def test_slow_subscriber_does_not_hurt_daemon_or_others(
    make_daemon, base_dir, record, rss, status
):
    daemon = make_daemon(CONFIG)
    runtime = base_dir / "rt"
    env = client_env(runtime)
    flag = str(base_dir / "hurry")
    slow = start_subscriber("slow", flag, env)
    fast = start_subscriber("fast", flag, env)
    procs = [slow, fast]
    manager = EventManager()
    publisher = BusBridge(manager, runtime, timeout=10)
    samples: list[int] = []
    try:
        assert read_line(slow, "READY") and read_line(fast, "READY")
        publisher.start()
        baseline = rss(daemon.pid)
        payload = "p" * 200
        sent = 0
        started = time.monotonic()
        next_sample = started
        while (now := time.monotonic()) - started < SECONDS:
            due = int((now - started) * RATE)
            while sent < due:
                manager.emit(Flood(i=sent, sent=time.time(), payload=payload))
                sent += 1
            if now >= next_sample:
                samples.append(rss(daemon.pid))
                next_sample = now + 0.5
            time.sleep(0.005)
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 30
        while publisher.stats["acknowledged"] < sent:
            assert time.monotonic() < deadline, publisher.stats
            time.sleep(0.01)
        samples.append(rss(daemon.pid))
        # The slow one may hurry now, to account for everything quickly.
        open(flag, "w").close()
        for proc in procs:
            proc.stdin.write(f"{sent}\n")
            proc.stdin.flush()
        slow_summary = read_line(slow, "SUMMARY").split()[1:]
        fast_summary = read_line(fast, "SUMMARY").split()[1:]
        diagnosis = status(runtime)
        text = status(runtime, as_json=False)
    finally:
        publisher.close(flush_timeout=1)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    slow_seen, slow_lost = int(slow_summary[0]), int(slow_summary[1])
    fast_seen, fast_lost = int(fast_summary[0]), int(fast_summary[1])
    fast_p50, fast_p99, fast_max = map(float, fast_summary[2:5])
    # The fast subscriber is unaffected: everything, promptly.
    assert fast_seen == sent and fast_lost == 0
    assert fast_p99 < 0.5, fast_p99
    # The slow one fell behind and was told so; nothing silently lost.
    assert slow_lost > 0
    assert slow_seen + slow_lost >= sent
    # Bounded daemon memory: no growth with the backlog.
    peak = max(samples)
    half = samples[len(samples) // 2]
    assert peak - baseline < 64 * 2**20, (baseline, samples)
    assert samples[-1] - half < 16 * 2**20, samples
    service = diagnosis["service"]
    assert service["replays"]["gone"] > 0  # visible from outside
    assert "fell further behind than the replay buffer" in text
    record(
        seconds=round(elapsed, 1),
        events=sent,
        rate_per_s=round(sent / elapsed),
        slow_delay_s=SLOW_DELAY,
        slow_delivered=slow_seen,
        slow_reported_lost=slow_lost,
        fast_delivered=fast_seen,
        fast_lost=fast_lost,
        fast_latency_ms={
            "p50": round(fast_p50 * 1000, 2),
            "p99": round(fast_p99 * 1000, 2),
            "max": round(fast_max * 1000, 2),
        },
        daemon_rss_mib={
            "baseline": round(baseline / 2**20, 1),
            "peak": round(peak / 2**20, 1),
            "end": round(samples[-1] / 2**20, 1),
        },
        status_replays=service["replays"],
        remembered_replies=service["remembered_replies"],
    )
