"""10,000 random and malformed messages on every socket of the daemon.

What must survive: the daemon answers or drops each message and stays
up; its memory stays bounded; afterwards it serves normal clients (store
calls and the event bus) as before; ``encore status`` counts what it
refused.  The messages come from a seeded generator (``ENCORE_FUZZ_SEED``,
default 8), so a failure can be replayed exactly.
"""

from __future__ import annotations

import io
import os
import random
import socket
import time

import msgpack
import pytest
import zmq

from encore.events.api import BaseEvent, EventManager
from encore_client import BusBridge, RemoteStore, ZmqTransport
from encore_client._keys import CurveKeys, generate_keys, read_key_pair
from encore_client.wire.operations import STORE_OPS
from encore_client.wire.version import PROTOCOL_VERSION

SEED = int(os.environ.get("ENCORE_FUZZ_SEED", "8"))
MESSAGES = int(os.environ.get("ENCORE_FUZZ_MESSAGES", "10000"))

CONFIG = """
[daemon]
heartbeat_interval = 0.2
max_message_size = 65536

[stores.mem]
type = "memory"

[stores.fs]
type = "filesystem"
path = "{base}/fs"
create = true
"""

OPS = ["hello", "ping", "status", "emit", "probe", "replay", *STORE_OPS]
ARG_NAMES = [
    "store", "key", "keys", "select", "criteria", "pattern", "metadata", "mode",
    "chunk", "stream", "offset", "size", "start", "end", "upload", "seq", "count",
    "session", "credentials", "token", "first", "last", "limit", "ops", "abort",
    "notes", "action", "permissions", "buffer_size", "data",
]  # fmt: skip


def random_value(rng: random.Random, depth: int = 0):
    """A random msgpack-able value: scalars, strings, bytes, lists, maps."""
    kind = rng.randrange(10 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**64 - 1, rng.randrange(-9, 99)])
    if kind == 3:
        return rng.random() * rng.choice([1, 1e308, -1e-308])
    if kind == 4:
        return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(20)))
    if kind == 5:
        return rng.choice(["mem", "fs", "nope", "../../etc", "k", "", "\0", "a" * 300])
    if kind == 6:
        return rng.randbytes(rng.randrange(64))
    if kind == 7:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    keys = ARG_NAMES if rng.random() < 0.7 else ["x", "", "v", "id"]
    return {
        rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(6))
    }


class Fuzzer:
    """Builds one malformed (or nearly well-formed) request after another."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ids = 0

    def envelope(self) -> dict:
        rng = self.rng
        self.ids += 1  # unique ids: retries of one request are answered once
        envelope = {
            "v": PROTOCOL_VERSION,
            "id": self.ids,
            "client": "fuzz",
            "op": rng.choice(OPS) if rng.random() < 0.9 else random_value(rng),
            "args": random_value(rng, 1) if rng.random() < 0.3 else {},
        }
        if isinstance(envelope["args"], dict):
            for _ in range(rng.randrange(5)):
                envelope["args"][rng.choice(ARG_NAMES)] = random_value(rng, 1)
            if rng.random() < 0.6:
                envelope["args"]["store"] = rng.choice(["mem", "fs", "none"])
        for field in ("v", "id", "client", "op", "args"):
            if rng.random() < 0.05:
                del envelope[field]
            elif rng.random() < 0.05:
                envelope[field] = random_value(rng)
        return envelope

    def message(self) -> list[bytes]:
        rng = self.rng
        kind = rng.randrange(6)
        if kind == 0:  # noise
            return [rng.randbytes(rng.randrange(200)) for _ in range(rng.randint(1, 4))]
        if kind == 1:  # a msgpack value that is no envelope
            return [msgpack.packb(random_value(rng), use_bin_type=True)]
        packed = msgpack.packb(self.envelope(), use_bin_type=True)
        if kind == 2:  # truncated
            packed = packed[: rng.randrange(len(packed) + 1)]
        elif kind == 3:  # bit flips
            data = bytearray(packed)
            for _ in range(rng.randint(1, 4)):
                if data:
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            packed = bytes(data)
        frames = [packed]
        for _ in range(rng.choice([0, 0, 0, 1, 2, 3])):
            frames.append(
                msgpack.packb(random_value(rng), use_bin_type=True)
                if rng.random() < 0.5
                else rng.randbytes(rng.choice([0, 10, 1000, 70000]))
            )
        return frames


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def fuzz_requests(
    path: str, count: int, seed: int, curve: CurveKeys | None = None
) -> dict[str, int]:
    """Pipeline ``count`` fuzzed requests on one DEALER; count the replies."""
    fuzzer = Fuzzer(seed)
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    secure(sock, curve)
    sock.connect(path)
    answered = errors = sent = 0
    try:
        while sent < count:
            batch = min(200, count - sent)
            for _ in range(batch):
                sock.send_multipart(fuzzer.message())
            sent += batch
            deadline = time.monotonic() + 20
            while answered < sent and time.monotonic() < deadline:
                if not sock.poll(200):
                    continue
                reply = sock.recv_multipart()
                answered += 1
                envelope = msgpack.unpackb(reply[0], raw=False)
                errors += envelope.get("ok") is False
    finally:
        sock.close()
        context.term()
    return {"sent": sent, "answered": answered, "error_replies": errors}


def fuzz_subscriptions(
    path: str, count: int, seed: int, curve: CurveKeys | None = None
) -> int:
    """Send ``count`` random (un)subscription and junk frames to the PUB."""
    rng = random.Random(seed)
    context = zmq.Context()
    sock = context.socket(zmq.XSUB)
    sock.setsockopt(zmq.LINGER, 0)
    secure(sock, curve)
    sock.connect(path)
    try:
        for _ in range(count):
            head = rng.choice([b"\x01", b"\x00", b"", rng.randbytes(1)])
            sock.send(head + rng.randbytes(rng.randrange(100)))
        # Whatever it sends back (events, heartbeats) is just read away.
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline and sock.poll(100):
            sock.recv_multipart()
    finally:
        sock.close()
        context.term()
    return count


def secure(sock: zmq.Socket, curve: CurveKeys | None) -> None:
    """Make ``sock`` a CURVE client with ``curve`` (if given)."""
    if curve is not None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)


def _plain_connect(endpoint: str) -> socket.socket:
    if endpoint.startswith("tcp://"):
        host, port = endpoint[len("tcp://") :].rsplit(":", 1)
        return socket.create_connection((host, int(port)), timeout=2)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(endpoint[len("ipc://") :])
    return s


def raw_garbage(endpoint: str, connections: int, seed: int) -> int:
    """Connect plainly to an endpoint and write junk (broken ZMTP)."""
    rng = random.Random(seed)
    greeting = b"\xff" + b"\0" * 8 + b"\x7f\x03\x00NULL" + b"\0" * 16
    for _ in range(connections):
        with _plain_connect(endpoint) as s:
            junk = rng.randbytes(rng.randrange(1, 4096))
            try:
                s.sendall(greeting[: rng.randrange(len(greeting))] + junk)
            except OSError:
                pass  # the daemon hung up on us: fine
    return connections


class Ping(BaseEvent):
    pass


TCP = """
[listen]
requests = "tcp://127.0.0.1:0"
events = "tcp://127.0.0.1:0"

[curve]
server_secret_key = "{base}/keys/server.key_secret"
authorized_keys = "{base}/keys/authorized"
"""


def tcp_setup(base_dir) -> tuple[str, CurveKeys]:
    """A server and a client key pair; the client authorised."""
    keys = base_dir / "keys"
    generate_keys(keys, "server")
    generate_keys(keys, "client")
    server_public, _ = read_key_pair(keys / "server.key_secret")
    public, secret = read_key_pair(keys / "client.key_secret")
    (keys / "authorized").write_text(public.decode() + " fuzzer\n")
    return TCP.format(base=base_dir), CurveKeys(server_public, public, secret)


@pytest.mark.slow
@pytest.mark.parametrize("via", ["ipc", "tcp-curve"])
def test_random_and_malformed_messages_on_every_socket(
    make_daemon, base_dir, record, status, wait, via
):
    config = CONFIG.format(base=base_dir)
    curve = None
    if via == "tcp-curve":
        extra, curve = tcp_setup(base_dir)
        config += extra
    daemon = make_daemon(config, env={"ENCORED_TRANSFER_TIMEOUT": "2"})
    runtime = base_dir / "rt"
    requests = f"ipc://{runtime}/requests.ipc"
    events = f"ipc://{runtime}/events.ipc"
    if curve is not None:
        listen = status(runtime)["service"]["listen"]
        requests, events = listen["requests"], listen["events"]
    store = RemoteStore("fs", runtime, timeout=10)
    store.set("precious", (io.BytesIO(b"before the storm"), {"v": 1}))
    before = rss(daemon.pid)
    started = time.monotonic()
    router = fuzz_requests(requests, MESSAGES, SEED, curve)
    router_seconds = time.monotonic() - started
    after_router = rss(daemon.pid)
    subs = fuzz_subscriptions(events, MESSAGES, SEED + 1, curve)
    raw = raw_garbage(requests, 100, SEED + 2)
    raw += raw_garbage(events, 100, SEED + 3)
    # Messages beyond the transport cap: the connection is dropped, unread.
    context = zmq.Context()
    try:
        for _ in range(5):
            big = context.socket(zmq.DEALER)
            big.setsockopt(zmq.LINGER, 0)
            secure(big, curve)
            big.connect(requests)
            big.send_multipart([b"x" * 300_000])
            assert not big.poll(300)
            big.close()
    finally:
        context.destroy(linger=0)  # term would hang on a socket left open
    # Still up, still serving: a store call, the bus, and a ping.
    assert daemon.process.poll() is None
    assert store.to_bytes("precious") == b"before the storm"
    store.set("after", (io.BytesIO(b"ok"), {}))
    manager = EventManager()
    got = []
    manager.connect(Ping, got.append)
    with (
        BusBridge(manager, runtime, timeout=10),
        BusBridge(EventManager(), runtime, timeout=10) as other,
    ):
        other.event_manager.emit(Ping(n=1))
        wait(lambda: got, 10, "an event after the fuzzing")
    with ZmqTransport(runtime, timeout=5) as transport:
        transport.request("ping")
    end = rss(daemon.pid)
    service = status(runtime)["service"]
    text = status(runtime, as_json=False)
    store.disconnect()
    assert "BAD_MESSAGE x" in text, text
    # Every request answered (nothing a client sends stops the loop).
    assert router["answered"] == router["sent"] == MESSAGES, router
    assert end - before < 64 * 2**20, (before, after_router, end)
    # A handler that raised would be an INTERNAL error: a daemon bug.
    assert "INTERNAL" not in service["errors"], service["errors"]
    refused = sum(e["count"] for e in service["errors"].values())
    assert refused >= router["error_replies"]
    log_bytes = len(daemon.stderr())
    record(
        via=via,
        seed=SEED,
        router_messages=router["sent"],
        router_answered=router["answered"],
        router_error_replies=router["error_replies"],
        router_seconds=round(router_seconds, 2),
        subscription_messages=subs,
        raw_connections=raw,
        oversized_dropped=5,
        rss_mib={
            "before": round(before / 2**20, 1),
            "after_requests": round(after_router / 2**20, 1),
            "end": round(end / 2**20, 1),
        },
        status_errors={k: v["count"] for k, v in service["errors"].items()},
        daemon_log_bytes=log_bytes,
    )
