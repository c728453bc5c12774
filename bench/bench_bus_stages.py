"""CPU cost per event of each stage of the event bus, with the I/O stubbed.

Wall-clock figures from ``bench_bus.py`` move with the machine's load; the
CPU each stage spends per event does much less, so this is what to compare
between two versions of the code.  Stages of protocol 4, each run in this
process on the frames the real code produces:

* sender: ``EventManager.emit`` with the bridge's listener (encode the
  header and attributes, number, push; the PUSH socket stubbed);
* daemon, off the hot path: ``Publisher.on_capture`` reading each forwarded
  message into the replay buffer (the forwarding itself is libzmq's);
* receiver: ``BusBridge._on_sub`` for each message (order per epoch,
  rebuild, emit to one listener), all on the dispatch thread;
* anchor: ``msgpack.packb`` + ``msgpack.unpackb`` of the same payload (the
  Python work of the bare pyzmq loop in ``bench_bus.py``).

Usage::

    python bench/bench_bus_stages.py [--events 20000] [--repeat 7] [--profile]

Prints the best of ``--repeat`` runs per stage, in microseconds per event.
To compare two versions, run each version's copy of this script in its
own tree (it follows the code's protocol).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402
import zmq  # noqa: E402

from encore.events.api import BaseEvent, EventManager  # noqa: E402
from encore_client._bus_bridge import BRIDGE_PRIORITY, BusBridge  # noqa: E402
from encored._config import parse_config  # noqa: E402
from encored._epoch_log import EpochLog  # noqa: E402
from encored._server import Daemon  # noqa: E402

CLIENT = "0123456789abcdef"


class BenchEvent(BaseEvent):
    """The event every stage carries (the payload of ``bench_bus.py``)."""


BenchEvent.__module__ = "bench_bus"


def payload(i: int) -> dict:
    """The attributes of event ``i`` (as in ``bench_bus.py``)."""
    return {
        "i": i,
        "t": time.monotonic_ns(),
        "key": "docs/report.txt",
        "size": 12345,
        "text": "x" * 64,
    }


class _Runtime:
    """Just enough of a RuntimeDir for a Daemon that never binds."""

    class endpoints:  # noqa: N801 - mimics the attribute
        events = requests = events_in = runtime_dir = "/nonexistent"


class _Sink:
    """A socket that keeps the messages sent to it."""

    def __init__(self) -> None:
        self.messages: list[list[bytes]] = []
        self._open: list[bytes] = []

    def send(self, data: bytes, flags: int = 0) -> None:
        self._open.append(data)
        if not flags & zmq.SNDMORE:
            self.messages.append(self._open)
            self._open = []


class _Source:
    """A socket that yields given messages, then ``zmq.Again``."""

    def __init__(self, messages: list[list[bytes]]) -> None:
        self._messages = iter(messages)

    def recv_multipart(self, flags: int = 0) -> list[bytes]:
        try:
            return next(self._messages)
        except StopIteration:
            raise zmq.Again() from None


def _bridge(manager: EventManager, client: str | None = None) -> BusBridge:
    bridge = BusBridge(manager, "/nonexistent")
    if client is not None:
        bridge.client_id = client
        bridge._origin = client.encode()
    return bridge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    n_events = args.events

    def run(name: str, stage) -> None:
        stage(64)
        best = min(timeit.repeat(lambda: stage(n_events), number=1, repeat=args.repeat))
        print(f"| {name} | {best / n_events * 1e6:.2f} |", flush=True)
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            stage(n_events)
            profile.disable()
            stats = pstats.Stats(profile, stream=sys.stderr)
            stats.sort_stats("tottime").print_stats(8)

    print("| stage | µs/event |")
    print("| --- | ---: |")

    # Sender: emit, the bridge's listener, numbering, the push (stubbed).
    manager = EventManager()
    sender = _bridge(manager, CLIENT)
    manager.connect(BaseEvent, sender._on_local_event, priority=BRIDGE_PRIORITY)
    sink = sender._push = _Sink()
    sender._push_poller = object()
    sender._away = False

    def send_stage(count: int) -> None:
        emit = manager.emit
        del sink.messages[:]
        sender._ring.clear()
        for i in range(count):
            emit(BenchEvent(**payload(i)))

    run("sender: emit, encode, number, push", send_stage)
    messages = list(sink.messages)

    # Daemon: its copy of each forwarded message, into the replay buffer.
    daemon = Daemon(parse_config("[daemon]\nevent_buffer = 100000\n"), _Runtime())

    def daemon_stage(count: int) -> None:
        publisher = daemon.publisher
        publisher.log = EpochLog(100000)
        capture = _Source(messages[:count])
        for _ in range(0, count, 1024):
            publisher.on_capture(capture)

    run("daemon (off the hot path): capture, replay buffer", daemon_stage)

    # Receiver: order, rebuild, emit to one listener (one thread).
    receiving = EventManager()
    received = []
    receiving.connect(BenchEvent, received.append)

    def receive_stage(count: int) -> None:
        receiver = _bridge(receiving)
        for message in messages[:count]:
            receiver._on_sub(message)
        assert len(received) == count, len(received)
        received.clear()

    run("receiver: order, rebuild, emit", receive_stage)

    def anchor(count: int) -> None:
        for i in range(count):
            msgpack.unpackb(msgpack.packb(payload(i)))

    run("anchor: msgpack round trip", anchor)


if __name__ == "__main__":
    main()
