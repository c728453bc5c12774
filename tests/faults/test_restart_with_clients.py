"""Daemon restart (SIGKILL, then start) with 20 client processes attached.

What must survive: every client reconnects by itself (its listener fires
for events published after the restart, and its RemoteStore works again);
no listener is lost; every event of the run reaches every client, or the
client is told it was lost (``EventsLostEvent``): no silent loss.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from encore.events.api import BaseEvent, EventManager
from encore_client import BusBridge, RemoteStore

from .conftest import client_env

CLIENTS = 20

CONFIG = """
[daemon]
heartbeat_interval = 0.1

[stores.mem]
type = "memory"
"""

# Each client: a bridge, a listener for ticks, a RemoteStore.  On a Call
# event it writes its own key through the store and says so.
CLIENT = r"""
import sys, threading
from encore.events.api import BaseEvent, EventManager
from encore_client import BusBridge, EventsLostEvent, RemoteStore

class Tick(BaseEvent):
    pass
Tick.__module__ = "faultticks"

class Call(BaseEvent):
    pass
Call.__module__ = "faultticks"

me = sys.argv[1]
store = RemoteStore("mem", timeout=10)
manager = EventManager()
out_lock = threading.Lock()

def say(text):
    with out_lock:
        print(text, flush=True)

manager.connect(Tick, lambda e: say(f"T {e.i}"))
manager.connect(EventsLostEvent, lambda e: say(f"LOST {e.count}"))

def on_call(event):
    store.set_data(f"client-{me}", str(event.n).encode())
    say(f"CALLED {event.n}")

manager.connect(Call, on_call)
with BusBridge(manager, timeout=10) as bridge:
    say("READY")
    sys.stdin.read()  # until the test closes our stdin
    say(f"STATS {bridge.stats['replayed']} {bridge.stats['restarts']}")
store.disconnect()
say("BYE")
"""


class Tick(BaseEvent):
    pass


class Call(BaseEvent):
    pass


Tick.__module__ = Call.__module__ = "faultticks"


class Client:
    """One client process; its stdout is collected by a reader thread."""

    def __init__(self, index: int, env: dict[str, str]) -> None:
        self.index = index
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", CLIENT, str(index)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def has(self, text: str) -> bool:
        return text in self.lines

    def finish(self) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(10)
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        self.proc.stderr.close()
        self.proc.stdout.close()
        return stderr


@pytest.mark.slow
def test_twenty_clients_follow_a_restart(make_daemon, base_dir, wait, record, status):
    daemon = make_daemon(CONFIG)
    runtime = base_dir / "rt"
    env = client_env(runtime)
    clients = [Client(i, env) for i in range(CLIENTS)]
    manager = EventManager()
    publisher = BusBridge(manager, runtime, timeout=10)
    try:
        wait(lambda: all(c.has("READY") for c in clients), 60, "clients ready")
        publisher.start()
        # Events stream in while the daemon is killed and started again.
        emitted = 0
        stop = threading.Event()

        def publish() -> None:
            nonlocal emitted
            while not stop.is_set():
                manager.emit(Tick(i=emitted))
                emitted += 1
                time.sleep(0.005)

        sender = threading.Thread(target=publish, daemon=True)
        sender.start()
        wait(lambda: emitted > 100, 10, "events before the kill")
        first_pid = daemon.pid
        daemon.kill()
        down = time.monotonic()
        time.sleep(0.3)  # events emitted meanwhile are held by the publisher
        daemon.start()
        restart_seconds = time.monotonic() - down
        wait(lambda: publisher.instance_id is not None, 10, "publisher reconnected")
        time.sleep(1.0)
        stop.set()
        sender.join(10)
        total = emitted
        wait(
            lambda: (
                publisher.stats["acknowledged"] + publisher.stats["dropped"] >= total
            ),
            30,
            "publisher's events acknowledged",
        )
        # Every client's listener and store proxy work after the restart.
        manager.emit(Call(n=1))
        wait(lambda: all(c.has("CALLED 1") for c in clients), 60, "store calls")
        check = RemoteStore("mem", runtime, timeout=10)
        assert all(check.to_bytes(f"client-{i}") == b"1" for i in range(CLIENTS))
        check.disconnect()
        info = status(runtime)
        assert info["pid"] == daemon.pid != first_pid
        assert info["service"]["previous_exit"]["clean"] is False
        # 20 clients with a bridge each, plus the publisher, subscribed.
        assert info["subscribers"] >= CLIENTS + 1
        subscribers = info["subscribers"]
        text = status(runtime, as_json=False)
        assert "NOT CLEAN: pid" in text and f"subscribers:      {subscribers}" in text
    finally:
        publisher.close(flush_timeout=1)
        errors = [c.finish() for c in clients]
    silent, delivered, reported, duplicates, replayed = [], [], [], 0, 0
    for client, stderr in zip(clients, errors):
        assert client.proc.returncode == 0, stderr
        ticks = [int(line[2:]) for line in client.lines if line.startswith("T ")]
        lost = sum(int(line[5:]) for line in client.lines if line.startswith("LOST "))
        got = set(ticks)
        duplicates += len(ticks) - len(got)
        stats = [line.split() for line in client.lines if line.startswith("STATS ")]
        assert stats and stats[0][2] == "1", client.lines[-3:]  # saw the restart
        replayed += int(stats[0][1])
        delivered.append(len(got))
        reported.append(lost)
        # Events never acknowledged to the publisher may be missing; all
        # others must be delivered or reported lost.
        unaccounted = total - publisher.stats["dropped"] - len(got) - lost
        silent.append(max(0, unaccounted))
    assert publisher.stats["dropped"] == 0, publisher.stats
    assert sum(silent) == 0, silent
    record(
        clients=CLIENTS,
        events=total,
        restart_seconds=round(restart_seconds, 3),
        delivered_min=min(delivered),
        delivered_max=max(delivered),
        reported_lost_max=max(reported),
        duplicates=duplicates,
        replayed_to_clients=replayed,
        silently_lost=sum(silent),
        subscribers_after=subscribers,
        publisher=dict(publisher.stats),
    )
