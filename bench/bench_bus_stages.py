"""CPU cost per event of each stage of the event bus, with the I/O stubbed.

Wall-clock figures from ``bench_bus.py`` move with the machine's load; the
CPU each stage spends per event does much less, so this is what to compare
between two versions of the code.  Stages, each run in this process on the
frames the real code produces:

* sender: ``EventManager.emit`` with the bridge's listener (encode the
  header and attributes, queue), and the I/O thread's batching into emit
  requests (the send itself stubbed);
* daemon: ``Daemon.handle`` of an emit request of 64 events (the PUB
  socket stubbed);
* receiver I/O thread: ``BusBridge._on_sub`` for each published event
  (sequence tracking, hand-over);
* receiver dispatch thread: rebuilding each event and emitting it to one
  listener;
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
import threading
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402

from encore.events.api import BaseEvent, EventManager  # noqa: E402
from encore_client import _codec  # noqa: E402
from encore_client._bus_bridge import BRIDGE_PRIORITY, BusBridge  # noqa: E402
from encore_client.wire.envelope import build_request  # noqa: E402
from encored._config import parse_config  # noqa: E402
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
        events = requests = runtime_dir = "/nonexistent"


class _Pub:
    """A PUB socket that keeps what is sent."""

    def __init__(self) -> None:
        self.messages: list[list[bytes]] = []
        self._open: list[bytes] = []

    def send(self, data: bytes, flags: int = 0) -> None:
        self._open.append(data)
        if not flags:
            self.messages.append(self._open)
            self._open = []


def _bridge(manager: EventManager, client: str | None = None) -> BusBridge:
    bridge = BusBridge(manager, "/nonexistent")
    if client is not None:
        bridge.client_id = client
        bridge._origin = client.encode()
    bridge._wake = lambda: None
    return bridge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    n_events = args.events - args.events % 64

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

    # Sender: emit, the bridge's listener, batching (send stubbed).
    manager = EventManager()
    sender = _bridge(manager, CLIENT)
    manager.connect(BaseEvent, sender._on_local_event, priority=BRIDGE_PRIORITY)
    batches: list[list[bytes]] = []
    sender._send = lambda kind, op, args, frames=(), **extra: batches.append(frames)

    def send_stage(count: int) -> None:
        emit = manager.emit
        for i in range(count):
            emit(BenchEvent(**payload(i)))
            if len(sender._outbox) >= 64:
                sender._wake_pending = False
                sender._send_outbox()
        sender._send_outbox()

    run("sender: emit, encode, batch", send_stage)
    batch = next(b for b in batches if len(_codec.unpack_events(b[0])) == 128)

    # Daemon: one emit request of 64 events (PUB stubbed).
    daemon = Daemon(parse_config("[daemon]\nevent_buffer = 100000\n"), _Runtime())
    pub = daemon._pub = _Pub()
    daemon._io_thread = threading.get_ident()
    ids = iter(range(1, 1 << 62))

    def daemon_stage(count: int) -> None:
        for _ in range(count // 64):
            request = build_request(CLIENT, next(ids), "emit", {})
            daemon.handle([b"identity", request, *batch])
            daemon._flush_published()  # what the loop does after handle
            if len(pub.messages) > 100000:
                del pub.messages[:]

    run("daemon: emit request, publish", daemon_stage)
    # The last n_events events, as published messages.
    messages: list[list[bytes]] = []
    pairs: list[tuple[bytes, bytes]] = []
    for message in reversed(pub.messages):
        if len(pairs) >= n_events:
            break
        messages.insert(0, message)
        parts = _codec.unpack_events(message[1])
        pairs[:0] = zip(parts[::2], parts[1::2])

    # Receiver I/O thread: sequence tracking and hand-over.
    def io_stage(count: int) -> None:
        bridge = _bridge(EventManager())
        bridge._ready.set()
        bridge._set_instance(daemon.instance_id)
        bridge._next_seq = _codec.parse_prefix(pairs[0][0])[0]
        per_message = len(pairs) // len(messages)
        for message in messages[: max(1, count // per_message)]:
            bridge._on_sub(message)
        bridge._hand_over()

    run("receiver I/O thread: track, hand over", io_stage)

    # Receiver dispatch thread: rebuild, emit to one listener.
    receiving = EventManager()
    receiver = _bridge(receiving)
    received = []
    receiving.connect(BenchEvent, received.append)
    items = [(header, attributes, False) for header, attributes in pairs]

    def dispatch_stage(count: int) -> None:
        emit, build = receiving.emit, receiver._build
        for item in items[:count]:
            emit(build(*item))
        received.clear()

    run("receiver dispatch thread: rebuild, emit", dispatch_stage)

    def anchor(count: int) -> None:
        for i in range(count):
            msgpack.unpackb(msgpack.packb(payload(i)))

    run("anchor: msgpack round trip", anchor)


if __name__ == "__main__":
    main()
