"""Store calls through encored, against bare pyzmq and Redis, in one run.

Measures, all over ``ipc://`` or loopback on this machine:

* small ``set`` and ``get`` round trips per second through
  ``RemoteStore`` (a memory store hosted by a real ``encored``; a get
  includes reading the value's data);
* anchor: a bare pyzmq REQ/REP loop (a server process answering each
  request with the same small payload) - the most a round trip can cost;
* anchor: Redis ``SET``/``GET`` through redis-py (a ``redis-server``
  started by this script on a free loopback port, persistence off);
* streaming a large value (1 GiB by default) into and out of a hosted
  filesystem store, in MB/s, with the daemon's peak resident memory;
* anchor: a bare pyzmq PUSH/PULL stream of the same number of bytes in
  chunks of the same size;
* anchor for the upload: this process writing the same bytes to a new file
  on the store's file system in 1 MiB writes (the store's buffer size),
  then ``fdatasync`` - what the disk allows a durable write.

Run: ``python bench/bench_rpc.py [--small N] [--stream-mib M] [--repeat R]``
(``R`` interleaved rounds, each measuring every figure and its anchors;
the median of the rounds is reported, with the spread of the ratios).
"""

from __future__ import annotations

import argparse
import io
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

import zmq  # noqa: E402

from encore_client import RemoteStore, ZmqTransport  # noqa: E402
from encore_client.wire.envelope import build_request  # noqa: E402
from encored.testing import DaemonProcess  # noqa: E402

PAYLOAD = b"v" * 100
CHUNK = 4 * 1024 * 1024
BUFFER = 1024 * 1024

REP_SERVER = r"""
import sys, zmq
ctx = zmq.Context()
sock = ctx.socket(zmq.REP)
sock.bind(sys.argv[1])
reply = b"v" * 100
print("ready", flush=True)
while True:
    msg = sock.recv()
    if msg == b"stop":
        sock.send(b"")
        break
    sock.send(reply)
"""

PUSH_SERVER = r"""
import sys, zmq
ctx = zmq.Context()
sock = ctx.socket(zmq.PUSH)
sock.setsockopt(zmq.SNDHWM, 4)
sock.bind(sys.argv[1])
total, chunk = int(sys.argv[2]), int(sys.argv[3])
block = bytes(range(256)) * (chunk // 256)
print("ready", flush=True)
sys.stdin.readline()
sent = 0
while sent < total:
    n = min(chunk, total - sent)
    sock.send(block[:n] if n < chunk else block, copy=False)
    sent += n
sock.send(b"")
sock.close(linger=-1)
ctx.term()
"""


def _child(code: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError("anchor process did not start")
    return proc


def bare_reqrep(endpoint: str, n: int) -> float:
    """Round trips per second of a bare REQ/REP loop."""
    server = _child(REP_SERVER, endpoint)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.connect(endpoint)
    try:
        for _ in range(200):
            sock.send(b"get k")
            sock.recv()
        start = time.perf_counter()
        for _ in range(n):
            sock.send(b"get k")
            sock.recv()
        rate = n / (time.perf_counter() - start)
        sock.send(b"stop")
        sock.recv()
    finally:
        sock.close(linger=0)
        ctx.term()
        server.wait(10)
    return rate


def bare_stream(endpoint: str, total: int) -> float:
    """MB/s of a bare PUSH/PULL stream of ``total`` bytes in CHUNK chunks."""
    server = _child(PUSH_SERVER, endpoint, str(total), str(CHUNK))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, 4)
    sock.connect(endpoint)
    try:
        assert server.stdin is not None
        start = time.perf_counter()
        server.stdin.write(b"go\n")
        server.stdin.flush()
        got = 0
        while True:
            frame = sock.recv(copy=False)
            if not len(frame):
                break
            got += len(frame)
        elapsed = time.perf_counter() - start
    finally:
        sock.close(linger=0)
        ctx.term()
        server.wait(30)
    assert got == total
    return total / elapsed / 1e6


def bare_file(directory: Path, total: int) -> float:
    """MB/s of writing ``total`` bytes to a new file, then ``fdatasync``.

    In 1 MiB writes, as the filesystem store copies with its default
    buffer; the file is removed afterwards.
    """
    block = bytes(range(256)) * (BUFFER // 256)
    path = directory / "bare-write.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        start = time.perf_counter()
        written = 0
        while written < total:
            view = memoryview(block)[: min(BUFFER, total - written)]
            while view:
                view = view[os.write(fd, view) :]
            written += min(BUFFER, total - written)
        os.fdatasync(fd)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        os.unlink(path)
    return total / elapsed / 1e6


def daemon_ping(runtime_dir: Path, n: int) -> float:
    """Round trips per second of the bus's ``ping`` through ZmqTransport.

    The floor under every store call: the daemon's request loop and the
    client transport, without any store work.
    """
    with ZmqTransport(runtime_dir, context=zmq.Context.instance()) as transport:
        for _ in range(200):
            transport.request("ping")
        start = time.perf_counter()
        for _ in range(n):
            transport.request("ping")
        return n / (time.perf_counter() - start)


def daemon_ping_raw(runtime_dir: Path, n: int) -> float:
    """Round trips per second of ``ping`` from a bare DEALER socket.

    Splits the floor: this is the daemon's share, the difference to
    :func:`daemon_ping` the client transport's.
    """
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"ipc://{runtime_dir}/requests.ipc")
    request = build_request("bench", 1, "ping", {})
    try:
        for _ in range(200):
            sock.send(request)
            sock.recv_multipart()
        start = time.perf_counter()
        for _ in range(n):
            sock.send(request)
            sock.recv_multipart()
        return n / (time.perf_counter() - start)
    finally:
        sock.close()


def remote_small(store: RemoteStore, n: int) -> tuple[float, float]:
    """(set/s, get/s) of small values through a RemoteStore."""
    store.set("k", (io.BytesIO(PAYLOAD), {}))
    for _ in range(200):
        store.set("k", (io.BytesIO(PAYLOAD), {}))
        with store.get("k").data as s:
            s.read()
    start = time.perf_counter()
    for _ in range(n):
        store.set("k", (io.BytesIO(PAYLOAD), {}))
    sets = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(n):
        with store.get("k").data as s:
            s.read()
    gets = n / (time.perf_counter() - start)
    return sets, gets


def redis_small(n: int) -> tuple[float, float] | None:
    """(SET/s, GET/s) through redis-py against a private redis-server."""
    exe = shutil.which("redis-server")
    if exe is None:
        print("redis-server not installed (apt-get install redis-server): skipped")
        return None
    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="encredis", dir="/tmp")
    server = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        for _ in range(200):
            client.set("k", PAYLOAD)
            client.get("k")
        start = time.perf_counter()
        for _ in range(n):
            client.set("k", PAYLOAD)
        sets = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(n):
            client.get("k")
        gets = n / (time.perf_counter() - start)
        client.close()
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    return sets, gets


class _Generated(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size
        self.block = bytes(range(256)) * (CHUNK // 256)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        if n <= 0:
            return b""
        self.left -= n
        if n == len(self.block):
            return self.block
        return self.block[:n] if n < len(self.block) else bytes(n)

    def readinto(self, buffer) -> int:  # pragma: no cover - read() is used
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def remote_stream(store: RemoteStore, total: int) -> tuple[float, float]:
    """(upload MB/s, download MB/s) of one value of ``total`` bytes."""
    start = time.perf_counter()
    store.set("big", (_Generated(total), {}))
    up = total / (time.perf_counter() - start) / 1e6
    start = time.perf_counter()
    got = 0
    with store.get("big").data as stream:
        while chunk := stream.read(CHUNK):
            got += len(chunk)
    down = total / (time.perf_counter() - start) / 1e6
    assert got == total
    return up, down


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _print_row(
    name: str, figure: float, values: list[float], anchor: list[float], unit: str
) -> None:
    ratios = [v / a for v, a in zip(values, anchor, strict=True)]
    print(
        f"  {name:26s} {figure:10.0f} {unit} "
        f"{statistics.median(ratios):5.2f}x bare [{min(ratios):.2f}-{max(ratios):.2f}]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=5000, help="calls per figure")
    parser.add_argument("--stream-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    total = args.stream_mib * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="encb", dir="/tmp"))
    config = f"""
[stores.mem]
type = "memory"
[stores.fs]
type = "filesystem"
path = "{work}/fs"
create = true
"""
    daemon = DaemonProcess(work / "rt", config)
    rows: dict[str, list[float]] = {}
    try:
        daemon.start()
        mem = RemoteStore("mem", work / "rt", timeout=60)
        fs = RemoteStore("fs", work / "rt", timeout=120)
        for _ in range(args.repeat):
            rows.setdefault("bare req/rep", []).append(
                bare_reqrep(f"ipc://{work}/rep.ipc", args.small)
            )
            rows.setdefault("encored ping, raw DEALER", []).append(
                daemon_ping_raw(work / "rt", args.small)
            )
            rows.setdefault("encored ping", []).append(
                daemon_ping(work / "rt", args.small)
            )
            sets, gets = remote_small(mem, args.small)
            rows.setdefault("RemoteStore set", []).append(sets)
            rows.setdefault("RemoteStore get", []).append(gets)
            red = redis_small(args.small)
            if red is not None:
                rows.setdefault("redis SET", []).append(red[0])
                rows.setdefault("redis GET", []).append(red[1])
            rows.setdefault("bare stream", []).append(
                bare_stream(f"ipc://{work}/push.ipc", total)
            )
            rows.setdefault("bare write+fdatasync", []).append(
                bare_file(work / "fs", total)
            )
            up, down = remote_stream(fs, total)
            rows.setdefault("RemoteStore upload", []).append(up)
            rows.setdefault("RemoteStore download", []).append(down)
            fs.delete("big")
        peak = peak_rss_mib(daemon.pid)
        mem.disconnect()
        fs.disconnect()
    finally:
        daemon.stop()
        daemon.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    # Every round measures all figures one after the other (interleaved),
    # so a load spike hits anchors and subjects alike; the median of the
    # rounds is the figure, each round's own ratio shows the spread.
    median = {name: statistics.median(values) for name, values in rows.items()}
    print(
        f"small calls: {args.small} per figure, median of {args.repeat} "
        "interleaved rounds (ratio: median of per-round ratios [min-max])"
    )
    small = ("bare req/rep", "encored ping, raw DEALER", "encored ping",
             "RemoteStore get", "RemoteStore set",
             "redis GET", "redis SET")  # fmt: skip
    for name in small:
        if name in median:
            _print_row(name, median[name], rows[name], rows["bare req/rep"], "/s  ")
    print(f"stream: {args.stream_mib} MiB in {CHUNK >> 20} MiB chunks")
    for name in ("bare stream", "RemoteStore upload", "RemoteStore download"):
        _print_row(name, median[name], rows[name], rows["bare stream"], "MB/s")
    # The durable write is the upload's floor: its own anchor.
    disk = rows["bare write+fdatasync"]
    _print_row("bare write+fdatasync", median["bare write+fdatasync"], disk,
               rows["bare stream"], "MB/s")  # fmt: skip
    ratios = [u / d for u, d in zip(rows["RemoteStore upload"], disk, strict=True)]
    print(
        f"  {'upload vs write+fdatasync':26s} {'':10s}      "
        f"{statistics.median(ratios):5.2f}x      [{min(ratios):.2f}-{max(ratios):.2f}]"
    )
    print(f"  {'daemon peak RSS':26s} {peak:10.1f} MiB")


if __name__ == "__main__":
    main()
