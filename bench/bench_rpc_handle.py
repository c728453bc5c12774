"""The daemon's own cost of a small store call: ``Daemon.handle`` in-process.

No sockets are waited on and no client runs: a ``Daemon`` with the real
store operations over a memory store is fed ready-made request messages
(``ping``, ``store.get`` of a 100-byte value, ``store.set`` of one, which
publishes a ``StoreSetEvent`` on a PUB socket nobody subscribes to).

Two measures:

* time per call, best of several interleaved rounds, with ``ping`` (the
  envelope and reply alone) as the anchor of the same run;
* with ``--instructions``: user-space instructions per call counted by
  valgrind's callgrind (a run with the calls minus a run without them),
  and for a ``set`` also with the publishing listener disconnected (the
  share of its event).
  On a shared machine whose speed moves by 2x from one minute to the
  next, this count is the figure that can be compared between versions.
* with ``--client``: the other end, instructions per call of a client
  process under callgrind against a real ``encored`` (not counted): a
  bare DEALER sending a ready-made ``ping`` (the anchor: pyzmq and libzmq
  alone), ``ZmqTransport.request("ping")``, and ``RemoteStore`` ``get``
  (with reading the data) and ``set`` of a 100-byte value.

Run: ``python bench/bench_rpc_handle.py [--calls N] [--instructions |
--client]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from encore.events.abstract_event_manager import BaseEvent  # noqa: E402
from encore_client.wire.envelope import build_request  # noqa: E402
from encored._config import parse_config  # noqa: E402
from encored._publisher import PUBLISH_PRIORITY  # noqa: E402
from encored._runtime_dir import RuntimeDir  # noqa: E402
from encored._server import Daemon  # noqa: E402
from encored.stores.wiring import start_store_service  # noqa: E402

OPS = ("ping", "get", "set")
IDENTITY = b"\x00bench"


def requests(op: str, n: int) -> list[list[bytes]]:
    """``n`` request messages of kind ``op`` (sets get distinct ids)."""
    if op == "set":
        return [
            [
                IDENTITY,
                build_request(
                    "bench",
                    i,
                    "store.set",
                    {
                        "store": "mem",
                        "key": "k",
                        "mode": "set",
                        "buffer_size": 65536,
                        "metadata": {},
                        "data": b"v" * 100,
                    },
                ),
            ]  # fmt: skip
            for i in range(1, n + 1)
        ]
    if op == "get":
        args = {"store": "mem", "key": "k", "chunk": 4 << 20}
        return [[IDENTITY, build_request("bench", 0, "store.get", args)]] * n
    return [[IDENTITY, build_request("bench", 0, "ping", {})]] * n


class Harness:
    """A bound daemon (never running its loop) and its hosted memory store."""

    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="ench", dir="/tmp"))
        config = parse_config('[stores.mem]\ntype = "memory"\n')
        self.runtime_dir = RuntimeDir(self.work / "rt")
        self.runtime_dir.acquire()
        manager, table, self.stores = start_store_service(config)
        self.daemon = Daemon(config, self.runtime_dir, manager, table)
        self.daemon.loop.bind()  # handle() runs on this thread, as the loop's
        [set_first] = requests("set", 1)
        self.daemon.handle(set_first)

    def run(self, messages: list[list[bytes]]) -> None:
        handle = self.daemon.handle
        for message in messages:
            handle(message)
        self.daemon.router.forget_remembered()  # as the expiry would, bounded

    def close(self) -> None:
        self.daemon.close()
        self.stores.close()
        self.runtime_dir.release()
        shutil.rmtree(self.work, ignore_errors=True)


def timing(calls: int, rounds: int) -> None:
    harness = Harness()
    try:
        messages = {op: requests(op, calls) for op in OPS}
        best = dict.fromkeys(OPS, float("inf"))
        for _ in range(rounds):
            for op in OPS:
                start = time.perf_counter()
                harness.run(messages[op])
                best[op] = min(best[op], (time.perf_counter() - start) / calls)
    finally:
        harness.close()
    print(f"Daemon.handle, best of {rounds} interleaved rounds of {calls} calls")
    for op in OPS:
        ratio = best[op] / best["ping"]
        print(f"  {op:5s} {best[op] * 1e6:7.2f} us   {ratio:5.2f}x ping")


def _callgrind(*args: str) -> int:
    """User-space instructions of this script run with ``args`` (callgrind)."""
    if shutil.which("valgrind") is None:
        sys.exit("counting instructions needs valgrind (apt-get install valgrind)")
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, __file__, *args],
        capture_output=True, text=True, check=True,
        env=dict(os.environ, PYTHONHASHSEED="0"),
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", out.stderr)
    assert found is not None, out.stderr[-2000:]
    return int(found.group(1))


def _child(op: str, calls: int, built: int) -> None:
    # The same requests are built whether or not they are handled, so
    # that only handling differs between the two counted runs.
    harness = Harness()
    daemon = harness.daemon
    try:
        if op == "set_unpublished":
            # The publishing listener off: what a set costs without its
            # event being published.
            daemon.event_manager.disconnect(BaseEvent, daemon.publisher.on_event)
            harness.run(requests("set", built)[:calls])
            daemon.event_manager.connect(
                BaseEvent, daemon.publisher.on_event, priority=PUBLISH_PRIORITY
            )
        else:
            harness.run(requests(op, built)[:calls])
    finally:
        harness.close()


def instructions(calls: int) -> None:
    def count(op: str, n: int) -> int:
        return _callgrind("--child", op, str(n), str(calls))

    print(f"Daemon.handle, instructions per call (callgrind, {calls} calls)")
    per = {}
    for op in (*OPS, "set_unpublished"):
        per[op] = (count(op, calls) - count(op, 0)) / calls
        print(f"  {op:15s} {per[op]:9.0f}   {per[op] / per['ping']:5.2f}x ping")


CLIENT_OPS = ("dealer", "transport", "get", "set")


def _client_child(runtime_dir: str, op: str, calls: int) -> None:
    # Everything but the measured calls runs in both counted runs.
    import io

    import zmq

    from encore_client import RemoteStore, ZmqTransport

    context = zmq.Context.instance()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(f"ipc://{runtime_dir}/requests.ipc")
    ping = build_request("bench", 1, "ping", {})
    transport = ZmqTransport(runtime_dir, context=context)
    store = RemoteStore("mem", runtime_dir, timeout=60)
    dealer.send(ping)
    dealer.recv_multipart()
    transport.request("ping")
    store.set("k", (io.BytesIO(b"v" * 100), {}))
    with store.get("k").data as stream:
        stream.read()
    for _ in range(calls):
        if op == "dealer":
            dealer.send(ping)
            dealer.recv_multipart()
        elif op == "transport":
            transport.request("ping")
        elif op == "get":
            with store.get("k").data as stream:
                stream.read()
        else:
            store.set("k", (io.BytesIO(b"v" * 100), {}))
    store.disconnect()
    transport.close()
    dealer.close()


def client_instructions(calls: int) -> None:
    from encored.testing import DaemonProcess, short_tempdir

    with short_tempdir() as work:
        daemon = DaemonProcess(work / "rt", '[stores.mem]\ntype = "memory"\n')
        daemon.start()
        try:

            def count(op: str, n: int) -> int:
                return _callgrind("--client-child", str(work / "rt"), op, str(n))

            print(f"client, instructions per call (callgrind, {calls} calls)")
            per = {}
            for op in CLIENT_OPS:
                per[op] = (count(op, calls) - count(op, 0)) / calls
                ratio = per[op] / per["dealer"]
                print(f"  {op:10s} {per[op]:9.0f}   {ratio:5.2f}x bare DEALER ping")
        finally:
            daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--client", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--client-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]), int(args.child[2]))
    elif args.client_child:
        directory, op, calls = args.client_child
        _client_child(directory, op, int(calls))
    elif args.instructions:
        instructions(min(args.calls, 1000))
    elif args.client:
        client_instructions(min(args.calls, 500))
    else:
        timing(args.calls, args.rounds)


if __name__ == "__main__":
    main()
