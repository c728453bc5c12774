"""Event bus between two processes: encored vs bare pyzmq, Redis and D-Bus.

Measures, in one run and on the same msgpack payload:

* throughput: events per second from one process to a listener in another,
  sent as fast as the sender can (and how many arrived);
* latency: publish-to-listener p50/p99 at a steady 1,000 events/s.

Four transports:

* ``encored``: ``EventManager.emit`` in process A, a ``BusBridge`` on each
  side, a listener connected with ``EventManager.connect`` in process B,
  through a real ``encored`` (the full path: A -> daemon -> B);
* ``pyzmq``: a bare PUB socket in A and SUB socket in B on ``ipc://``,
  sending the same msgpack payload (the anchor);
* ``redis``: ``PUBLISH`` through redis-py to Debian's ``redis-server`` on
  127.0.0.1 (started and stopped here), pipelined in batches of 100 for
  throughput, one command per event for latency;
* ``dbus``: a private ``dbus-daemon --session`` (Debian's, started and
  stopped here) and ``dbus-fast`` on both sides: the payload as the ``ay``
  body of a signal, received through a match rule on its interface (the
  bus every desktop already runs).

On a 2-core machine where each process lands dominates round trips, so
everything is run twice: pinned (every process under ``taskset -c 0``) and
unpinned.  Usage::

    python bench/bench_bus.py [--events 50000] [--rate 1000] [--seconds 3]
                              [--repeat 3]

Each figure is the median of ``--repeat`` runs; the runs of the three
transports are interleaved so that load from elsewhere hits all alike.

Needs ``redis-server`` and ``dbus-daemon`` on PATH (``apt-get install
redis-server dbus-daemon``) and the ``bench`` extra (``redis``,
``dbus-fast``).  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAYLOAD_TEXT = "x" * 64


def payload(i: int, t: int) -> dict:
    """The attributes every transport carries for event ``i`` sent at ``t``."""
    return {
        "i": i,
        "t": t,
        "key": "docs/report.txt",
        "size": 12345,
        "text": PAYLOAD_TEXT,
    }


def now_ns() -> int:
    # CLOCK_MONOTONIC is system-wide on Linux: comparable across processes.
    return time.monotonic_ns()


def pace(rate: float):
    """Yield send times at ``rate`` per second, sleeping until each.

    Never spins: a busy loop holding the GIL would delay the bridge's own
    threads by the interpreter's switch interval (5 ms) and measure that.
    """
    interval = 1e9 / rate
    start = now_ns()
    n = 0
    while True:
        remaining = start + int(n * interval) - now_ns()
        if remaining > 0:
            time.sleep(remaining / 1e9)
        yield n
        n += 1


def summarize(samples_ns: list[int]) -> dict:
    if not samples_ns:
        return {"p50_us": None, "p99_us": None}
    ordered = sorted(samples_ns)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] / 1000

    return {"p50_us": pct(0.50), "p99_us": pct(0.99)}


def report(result: dict) -> None:
    print(json.dumps(result), flush=True)


def wait_go() -> None:
    print("READY", flush=True)
    assert sys.stdin.readline().strip() == "GO"


# -- children: encored --------------------------------------------------------------


def bus_events():
    from encore.events.api import BaseEvent

    class BenchEvent(BaseEvent):
        pass

    class EndEvent(BaseEvent):
        pass

    BenchEvent.__module__ = EndEvent.__module__ = "bench_bus"
    return BenchEvent, EndEvent


def role_bus_recv(args) -> None:
    import threading

    from encore.events.api import EventManager
    from encore_client import BusBridge, EventsLostEvent

    BenchEvent, EndEvent = bus_events()
    manager = EventManager()
    lat: list[int] = []
    state = {"count": 0, "lost": 0, "first_t": None, "last_recv": None}
    done = threading.Event()

    def on_event(event):
        t = now_ns()
        state["count"] += 1
        if state["first_t"] is None:
            state["first_t"] = event.t
        state["last_recv"] = t
        lat.append(t - event.t)

    manager.connect(BenchEvent, on_event)

    def on_lost(event):
        state["lost"] += event.count

    manager.connect(EventsLostEvent, on_lost)
    manager.connect(EndEvent, lambda e: done.set())
    with BusBridge(manager, args.runtime_dir, timeout=30):
        print("READY", flush=True)
        done.wait(300)
    report(result_from(state, lat))


def result_from(state, lat) -> dict:
    elapsed = (state["last_recv"] - state["first_t"]) / 1e9 if state["count"] else 0
    out = {
        "count": state["count"],
        "lost": state.get("lost", 0),
        "per_s": state["count"] / elapsed if elapsed else 0,
    }
    out.update(summarize(lat))
    return out


def role_bus_send(args) -> None:
    from encore.events.api import EventManager
    from encore_client import BusBridge

    BenchEvent, EndEvent = bus_events()
    manager = EventManager()
    with BusBridge(manager, args.runtime_dir, timeout=60):
        wait_go()
        if args.rate:
            for n in pace(args.rate):
                if n >= args.events:
                    break
                manager.emit(BenchEvent(**payload(n, now_ns())))
        else:
            for n in range(args.events):
                manager.emit(BenchEvent(**payload(n, now_ns())))
        manager.emit(EndEvent())


# -- children: bare pyzmq -----------------------------------------------------------


def role_zmq_recv(args) -> None:
    import msgpack
    import zmq

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(args.endpoint)
    while sub.recv_multipart()[0] != b"probe":
        pass
    print("READY", flush=True)
    lat: list[int] = []
    state = {"count": 0, "first_t": None, "last_recv": None}
    while True:
        topic, body = sub.recv_multipart()
        if topic == b"probe":
            continue
        if topic == b"end":
            break
        data = msgpack.unpackb(body)
        t = now_ns()
        state["count"] += 1
        if state["first_t"] is None:
            state["first_t"] = data["t"]
        state["last_recv"] = t
        lat.append(t - data["t"])
    sub.close(linger=0)
    ctx.term()
    report(result_from(state, lat))


def role_zmq_send(args) -> None:
    import select

    import msgpack
    import zmq

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)  # unlimited: the anchor loses nothing either
    pub.bind(args.endpoint)
    print("READY", flush=True)
    # Probe until the orchestrator says the subscriber sees us (slow joiner).
    while not select.select([sys.stdin], [], [], 0.005)[0]:
        pub.send_multipart([b"probe", b""])
    assert sys.stdin.readline().strip() == "GO"
    topic = b"ev.bench_bus.BenchEvent"
    if args.rate:
        for n in pace(args.rate):
            if n >= args.events:
                break
            pub.send_multipart([topic, msgpack.packb(payload(n, now_ns()))])
    else:
        for n in range(args.events):
            pub.send_multipart([topic, msgpack.packb(payload(n, now_ns()))])
    pub.send_multipart([b"end", b""])
    pub.close(linger=5000)
    ctx.term()


# -- children: redis ----------------------------------------------------------------


def role_redis_recv(args) -> None:
    import msgpack
    import redis

    client = redis.Redis(host="127.0.0.1", port=args.port)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("bench")
    while pubsub.get_message(timeout=1.0) is None and not pubsub.subscribed:
        pass
    print("READY", flush=True)
    lat: list[int] = []
    state = {"count": 0, "first_t": None, "last_recv": None}
    for message in pubsub.listen():
        if message["type"] != "message":
            continue
        body = message["data"]
        if body == b"end":
            break
        data = msgpack.unpackb(body)
        t = now_ns()
        state["count"] += 1
        if state["first_t"] is None:
            state["first_t"] = data["t"]
        state["last_recv"] = t
        lat.append(t - data["t"])
    pubsub.close()
    client.close()
    report(result_from(state, lat))


def role_redis_send(args) -> None:
    import msgpack
    import redis

    client = redis.Redis(host="127.0.0.1", port=args.port)
    wait_go()
    if args.rate:
        for n in pace(args.rate):
            if n >= args.events:
                break
            client.publish("bench", msgpack.packb(payload(n, now_ns())))
    else:
        batch = client.pipeline(transaction=False)
        for n in range(args.events):
            batch.publish("bench", msgpack.packb(payload(n, now_ns())))
            if n % 100 == 99:
                batch.execute()
        batch.execute()
    client.publish("bench", b"end")
    client.close()


# -- children: D-Bus -----------------------------------------------------------------

DBUS_PATH = "/org/encore/Bench"
DBUS_INTERFACE = "org.encore.Bench"


def role_dbus_recv(args) -> None:
    import asyncio

    import msgpack
    from dbus_fast import Message, MessageType
    from dbus_fast.aio import MessageBus

    lat: list[int] = []
    state = {"count": 0, "first_t": None, "last_recv": None}

    async def main() -> None:
        bus = await MessageBus(bus_address=args.dbus).connect()
        done = asyncio.Event()

        def on_message(message) -> None:
            if message.message_type != MessageType.SIGNAL:
                return
            if message.member == "End":
                done.set()
                return
            data = msgpack.unpackb(message.body[0])
            t = now_ns()
            state["count"] += 1
            if state["first_t"] is None:
                state["first_t"] = data["t"]
            state["last_recv"] = t
            lat.append(t - data["t"])

        bus.add_message_handler(on_message)
        # The bus applies the rule before it answers: then we are live.
        await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[f"type='signal',interface='{DBUS_INTERFACE}'"],
            )
        )
        print("READY", flush=True)
        await asyncio.wait_for(done.wait(), 300)
        bus.disconnect()

    asyncio.run(main())
    report(result_from(state, lat))


def role_dbus_send(args) -> None:
    import asyncio

    import msgpack
    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

    def signal(member: str, body: bytes) -> Message:
        return Message.new_signal(DBUS_PATH, DBUS_INTERFACE, member, "ay", [body])

    def get_id() -> Message:  # a fresh message: each call needs its own serial
        return Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="GetId",
        )

    async def main() -> None:
        bus = await MessageBus(bus_address=args.dbus).connect()
        wait_go()
        if args.rate:
            interval = 1e9 / args.rate
            start = now_ns()
            for n in range(args.events):
                remaining = start + int(n * interval) - now_ns()
                if remaining > 0:
                    await asyncio.sleep(remaining / 1e9)
                await bus.send(signal("Event", msgpack.packb(payload(n, now_ns()))))
        else:
            # In batches of 100 closed by a call to the bus, as Redis runs
            # pipelines of 100: dbus-fast fails a send with EAGAIN once the
            # socket buffer is full instead of waiting for room, and the
            # call's reply says the bus has read everything before it.
            for n in range(args.events):
                bus.send(signal("Event", msgpack.packb(payload(n, now_ns()))))
                if n % 100 == 99:
                    await bus.call(get_id())
        await bus.send(signal("End", b""))
        bus.disconnect()

    asyncio.run(main())


ROLES = {
    "dbus-recv": role_dbus_recv,
    "dbus-send": role_dbus_send,
    "bus-recv": role_bus_recv,
    "bus-send": role_bus_send,
    "zmq-recv": role_zmq_recv,
    "zmq-send": role_zmq_send,
    "redis-recv": role_redis_recv,
    "redis-send": role_redis_send,
}


# -- orchestration ------------------------------------------------------------------


class Child:
    def __init__(self, role: str, extra: list[str], pinned: bool) -> None:
        cmd = [sys.executable, __file__, "--role", role, *extra]
        if pinned:
            cmd = ["taskset", "-c", "0", *cmd]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def expect(self, text: str) -> None:
        line = self.proc.stdout.readline().strip()
        if line != text:
            raise RuntimeError(f"child said {line!r}, expected {text!r}")

    def go(self) -> None:
        self.proc.stdin.write("GO\n")
        self.proc.stdin.flush()

    def result(self, timeout: float = 600) -> dict:
        out, _ = self.proc.communicate(timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])

    def finish(self) -> None:
        self.proc.communicate(timeout=600)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def run_pair(recv_role, send_role, extra, pinned, zmq_style=False) -> dict:
    if zmq_style:
        sender = Child(send_role, extra, pinned)
        receiver = None
        try:
            sender.expect("READY")
            receiver = Child(recv_role, extra, pinned)
            receiver.expect("READY")
            sender.go()
            sender.finish()
            return receiver.result()
        finally:
            for child in (sender, receiver):
                if child is not None:
                    child.kill()
    receiver = Child(recv_role, extra, pinned)
    sender = None
    try:
        receiver.expect("READY")
        sender = Child(send_role, extra, pinned)
        sender.expect("READY")
        sender.go()
        sender.finish()
        return receiver.result()
    finally:
        for child in (receiver, sender):
            if child is not None:
                child.kill()


@contextlib.contextmanager
def encored(pinned: bool):
    from encored.testing import DaemonProcess

    with tempfile.TemporaryDirectory(prefix="encb", dir="/tmp") as d:
        daemon = DaemonProcess(Path(d), "[daemon]\nevent_buffer = 100000\n")
        if pinned:
            # The same as `taskset -c 0`: the daemon inherits our affinity
            # while it starts.
            mask = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {0})
            try:
                daemon.start()
            finally:
                os.sched_setaffinity(0, mask)
        else:
            daemon.start()
        try:
            yield d
        finally:
            daemon.stop()
            daemon.cleanup()


@contextlib.contextmanager
def redis_server(pinned: bool):
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server not found: apt-get install redis-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="encr", dir="/tmp")
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--dir", workdir]  # fmt: skip
    if pinned:
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def dbus_daemon(pinned: bool):
    """A private session bus on a unix socket in a temporary directory."""
    exe = shutil.which("dbus-daemon")
    if exe is None:
        raise SystemExit("dbus-daemon not found: apt-get install dbus-daemon")
    workdir = tempfile.mkdtemp(prefix="encd", dir="/tmp")
    cmd = [exe, "--session", "--nofork", "--print-address",
           f"--address=unix:path={workdir}/bus"]  # fmt: skip
    if pinned:
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        address = proc.stdout.readline().strip()
        if not address:
            raise RuntimeError("dbus-daemon did not start")
        yield address
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def measure(pinned: bool, args) -> dict:
    """Run every transport ``args.repeat`` times, interleaved, and return
    the median of each figure (load from elsewhere hits all alike)."""
    runs: dict[tuple[str, str], list[dict]] = {}
    throughput = ["--events", str(args.events)]
    latency = ["--events", str(int(args.rate * args.seconds)), "--rate", str(args.rate)]
    kinds = (("throughput", throughput), ("latency", latency))
    with contextlib.ExitStack() as stack:
        bus_dir = stack.enter_context(encored(pinned))
        zmq_dir = stack.enter_context(
            tempfile.TemporaryDirectory(prefix="encz", dir="/tmp")
        )
        port = stack.enter_context(redis_server(pinned))
        dbus = stack.enter_context(dbus_daemon(pinned))
        for _ in range(args.repeat):
            for name, extra in kinds:
                runs.setdefault(("encored", name), []).append(
                    run_pair(
                        "bus-recv",
                        "bus-send",
                        [*extra, "--runtime-dir", bus_dir],
                        pinned,
                    )
                )
                runs.setdefault(("pyzmq", name), []).append(
                    run_pair(
                        "zmq-recv",
                        "zmq-send",
                        [*extra, "--endpoint", f"ipc://{zmq_dir}/bench.ipc"],
                        pinned,
                        True,
                    )
                )
                runs.setdefault(("redis", name), []).append(
                    run_pair(
                        "redis-recv",
                        "redis-send",
                        [*extra, "--port", str(port)],
                        pinned,
                    )
                )
                runs.setdefault(("dbus", name), []).append(
                    run_pair("dbus-recv", "dbus-send", [*extra, "--dbus", dbus], pinned)
                )
    results = {}
    for key, values in runs.items():
        merged = {}
        for field in ("per_s", "p50_us", "p99_us"):
            merged[field] = statistics.median(v[field] for v in values)
        merged["count"] = min(v["count"] for v in values)
        merged["lost"] = max(v.get("lost", 0) for v in values)
        results[key] = merged
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=sorted(ROLES))
    parser.add_argument("--events", type=int, default=50000)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runtime-dir")
    parser.add_argument("--endpoint")
    parser.add_argument("--port", type=int)
    parser.add_argument("--dbus", help="address of the D-Bus (children)")
    parser.add_argument("--modes", default="pinned,unpinned")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.role:
        ROLES[args.role](args)
        return
    latency_rate = args.rate or 1000
    args.rate = latency_rate
    print(
        f"# {args.events} events for throughput; {latency_rate:g} events/s for "
        f"{args.seconds:g} s for latency; payload {len(json.dumps(payload(0, 0)))} "
        f"bytes as JSON; median of {args.repeat} interleaved runs"
    )
    print()
    print("| mode | transport | events/s | arrived | p50 µs @1k/s | p99 µs @1k/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for mode in args.modes.split(","):
        results = measure(mode == "pinned", args)
        for transport in ("encored", "pyzmq", "redis", "dbus"):
            thr = results[(transport, "throughput")]
            lat = results[(transport, "latency")]
            arrived = f"{thr['count']}/{args.events}"
            if thr.get("lost"):
                arrived += f" ({thr['lost']} lost)"
            print(
                f"| {mode} | {transport} | {thr['per_s']:,.0f} | {arrived} | "
                f"{lat['p50_us']:.0f} | {lat['p99_us']:.0f} |",
                flush=True,
            )
        bus = results[("encored", "throughput")]["per_s"]
        bare = results[("pyzmq", "throughput")]["per_s"]
        red = results[("redis", "throughput")]["per_s"]
        dbus = results[("dbus", "throughput")]["per_s"]
        p99 = results[("encored", "latency")]["p99_us"]
        bare99 = results[("pyzmq", "latency")]["p99_us"]
        print(
            f"| {mode} | ratios | encored/pyzmq {bus / bare:.2f}, "
            f"encored/redis {bus / red:.2f}, encored/dbus {bus / dbus:.2f} | | | "
            f"p99 encored/pyzmq {p99 / bare99:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
