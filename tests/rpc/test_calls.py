"""Store calls through the daemon: errors, retries, hostile keys, clients.

Uses the shared daemon of ``rpc_env`` unless a test needs its own.
"""

import io
import os
import threading
import time

import msgpack
import pytest
import zmq

from encore.storage.abstract_store import ReadOnlyStoreError
from encore_client import (
    DaemonUnavailableError,
    RemoteStore,
    UnknownOperationError,
    UnknownStoreError,
    ZmqTransport,
    list_stores,
)
from encore_client.wire.envelope import build_request, parse_reply


@pytest.fixture
def mem(rpc_env):
    store = RemoteStore("mem", rpc_env.runtime_dir, event_manager=rpc_env.event_manager)
    for key in store.query_keys():
        store.delete(key)
    yield store
    store.disconnect()


def test_list_stores(rpc_env):
    stores = {s["name"]: s for s in list_stores(rpc_env.runtime_dir)}
    assert stores["fs"]["type"] == "filesystem" and stores["fs"]["watched"]
    assert stores["joined"]["writable"]
    assert {"mem", "sq", "fs", "joined", "jmem", "jsq"} <= set(stores)


def test_unknown_store_is_a_clear_error(rpc_env):
    store = RemoteStore("no-such-store", rpc_env.runtime_dir)
    with pytest.raises(UnknownStoreError, match="no store named 'no-such-store'.*mem"):
        store.connect()
    with pytest.raises(UnknownStoreError):
        store.get("x")
    store.disconnect()


def test_unknown_operation_and_bad_arguments(rpc_env):
    with ZmqTransport(rpc_env.runtime_dir, timeout=5) as transport:
        with pytest.raises(UnknownOperationError, match="store.frobnicate"):
            transport.request("store.frobnicate", {"store": "mem"})
        with pytest.raises(ValueError, match="'store'"):
            transport.request("store.exists", {"store": 42, "key": "x"})
        with pytest.raises(TypeError, match="keys are strings"):
            transport.request("store.exists", {"store": "mem", "key": 42})
        with pytest.raises(ValueError):
            transport.request(
                "store.transaction", {"store": "mem", "ops": [{"op": "rm -rf"}]}
            )
        # The daemon still serves.
        assert (
            transport.request("store.exists", {"store": "mem", "key": "x"}).result
            is False
        )


def test_method_the_store_lacks(mem):
    mem.set("k", (io.BytesIO(b""), {}))
    with pytest.raises(NotImplementedError, match="no per-key permissions"):
        mem.get_permissions("k")


def test_errors_keep_their_types(mem):
    with pytest.raises(KeyError):
        mem.get("missing")
    with pytest.raises(KeyError):
        mem.delete("missing")
    with pytest.raises(ValueError):
        mem.set("k", (io.BytesIO(b""), {"bad": float("nan")}))
    with pytest.raises(TypeError):
        mem.set(3, (io.BytesIO(b""), {}))
    mem.set("x", (io.BytesIO(b"abcdef"), {}))
    with pytest.raises(ValueError):
        mem.get_data_range("x", 5, 2)


def test_read_only_store_error(own_daemon):
    base = own_daemon.base
    (base / "site" / "data").mkdir(parents=True)
    (base / "site" / "index.json").write_text('{"a": {"n": 1}}')
    (base / "site" / "data" / "a").write_bytes(b"static")
    own_daemon(
        f"""
[stores.static]
type = "static_url"
root_url = "file://{base}/site/"
data_path = "data/"
query_path = "index.json"
poll = 0
"""
    )
    store = RemoteStore("static", base / "rt")
    assert store.get_metadata("a") == {"n": 1}
    with pytest.raises(ReadOnlyStoreError):
        store.set("b", (io.BytesIO(b"x"), {}))
    with pytest.raises(ReadOnlyStoreError):
        store.delete("a")
    store.disconnect()


def test_hostile_keys_stay_inside(rpc_env):
    store = RemoteStore("hostile", rpc_env.runtime_dir)
    directory = rpc_env.base / "hostile"
    before_outside = set(os.listdir(rpc_env.base))
    keys = ["../../etc/passwd", "/etc/shadow", "..", "a/../../b", "\x00nul", "CON"]
    for i, key in enumerate(keys):
        store.set(key, (io.BytesIO(b"%d" % i), {"i": i}))
    for i, key in enumerate(keys):
        assert store.to_bytes(key) == b"%d" % i
    assert set(os.listdir(rpc_env.base)) == before_outside
    for name in os.listdir(directory):
        path = directory / name
        assert path.is_file() and path.resolve().parent == directory.resolve()
    assert sorted(store.query_keys()) == sorted(keys)
    for key in keys:
        store.delete(key)
    store.disconnect()


def _raw_request(runtime_dir, envelope, frames=()):
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(f"ipc://{runtime_dir}/requests.ipc")
        sock.send_multipart([envelope, *frames])
        assert sock.poll(5000), "no reply"
        return parse_reply(sock.recv_multipart())[1]
    finally:
        sock.close()


def test_retried_write_is_applied_once(mem, rpc_env):
    mem.set("once", (io.BytesIO(b"x"), {}))
    request = build_request(
        "retrier", 77, "store.delete", {"store": "mem", "key": "once"}
    )
    first = _raw_request(rpc_env.runtime_dir, request)
    # The same request id again (a retry on a fresh socket): the daemon
    # answers from memory instead of deleting again (which would fail).
    second = _raw_request(rpc_env.runtime_dir, request)
    assert not isinstance(first, Exception) and not isinstance(second, Exception)
    assert not mem.exists("once")
    mem.set("once", (io.BytesIO(b"again"), {}))
    third = _raw_request(rpc_env.runtime_dir, request)
    assert not isinstance(third, Exception)
    assert mem.to_bytes("once") == b"again"


def test_retried_transaction_is_applied_once(mem, rpc_env):
    args = {
        "store": "mem",
        "notes": "append",
        "ops": [{"op": "set", "key": "t", "metadata": {"n": 1}, "frame": 0}],
    }
    request = build_request("retrier", 78, "store.transaction", args)
    for _ in range(2):
        reply = _raw_request(rpc_env.runtime_dir, request, [b"payload"])
        assert not isinstance(reply, Exception)
    mem.update_metadata("t", {"n": 2})
    reply = _raw_request(rpc_env.runtime_dir, request, [b"payload"])
    assert mem.get_metadata("t") == {"n": 2}  # not reset by the retry


def test_garbage_in_store_calls_does_not_hurt(mem, rpc_env):
    bad = [
        build_request(
            "g", 1, "store.get", {"store": "mem", "key": "k", "chunk": "big"}
        ),
        build_request("g", 2, "store.read", {"stream": "nope", "offset": 0}),
        build_request("g", 3, "store.upload_chunk", {"upload": "nope", "seq": 0}),
        build_request("g", 4, "store.query", {"store": "mem", "criteria": [1, 2]}),
        build_request("g", 5, "store.set", {"store": "mem", "key": "k", "metadata": 5}),
        msgpack.packb({"v": 1, "id": 6, "op": "store.get", "args": {}, "client": "g"}),
    ]
    for envelope in bad:
        assert isinstance(_raw_request(rpc_env.runtime_dir, envelope), Exception)
    mem.set("k", (io.BytesIO(b"fine"), {}))
    assert mem.to_bytes("k") == b"fine"


def test_concurrent_clients_different_and_same_keys(rpc_env):
    errors = []
    payloads = {i: os.urandom(300_000 + i) for i in range(6)}

    def client(i):
        try:
            store = RemoteStore("sq", rpc_env.runtime_dir)
            for n in range(20):
                store.set(
                    f"c{i}-{n}", (io.BytesIO(b"%d-%d" % (i, n)), {"i": i, "n": n})
                )
                store.set("same", (io.BytesIO(payloads[i]), {"writer": i}))
            store.disconnect()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    store = RemoteStore("sq", rpc_env.runtime_dir)
    for i in range(6):
        for n in range(20):
            assert store.to_bytes(f"c{i}-{n}") == b"%d-%d" % (i, n)
            assert store.get_metadata(f"c{i}-{n}") == {"i": i, "n": n}
    value = store.get("same")
    writer = value.metadata["writer"]
    with value.data as stream:
        assert stream.read() == payloads[writer]  # one whole value, never a mix
    for key in store.query_keys():
        store.delete(key)
    store.disconnect()


def test_long_transfer_does_not_stall_small_calls(rpc_env, mem):
    mem.set("small", (io.BytesIO(b"s"), {"x": 1}))
    big = RemoteStore("fs", rpc_env.runtime_dir)
    done = threading.Event()
    uploading = threading.Event()

    class Slow(io.RawIOBase):
        """400 MB, delivered as fast as the daemon takes it."""

        def __init__(self):
            self.left = 400 * 1024 * 1024

        def readable(self):
            return True

        def readinto(self, buffer):
            uploading.set()
            n = min(len(buffer), self.left)
            buffer[:n] = b"\x01" * n
            self.left -= n
            return n

    def upload():
        try:
            big.set("huge", (Slow(), {}))
        finally:
            done.set()

    thread = threading.Thread(target=upload)
    thread.start()
    try:
        assert uploading.wait(10)
        worst = 0.0
        calls = 0
        while not done.is_set() and calls < 2000:
            start = time.perf_counter()
            assert mem.get_metadata("small") == {"x": 1}
            worst = max(worst, time.perf_counter() - start)
            calls += 1
    finally:
        thread.join(60)
    assert calls >= 20, "the upload finished before the small calls could overlap"
    assert worst < 0.5, f"a small call waited {worst:.3f} s behind the upload"
    big.delete("huge")
    big.disconnect()


def test_timeout_leaves_the_proxy_usable(own_daemon):
    runtime = own_daemon.base / "rt"
    store = RemoteStore("memory", runtime, timeout=0.6)
    start = time.monotonic()
    # No daemon has answered this proxy and none runs: said at once.
    with pytest.raises(DaemonUnavailableError, match="encored is not running"):
        store.exists("k")
    assert time.monotonic() - start < 3
    own_daemon(None, env={"XDG_DATA_HOME": str(own_daemon.base / "data")})
    assert store.exists("k") is False  # the same proxy, now answered
    store.set("k", (io.BytesIO(b"v"), {}))
    assert store.to_bytes("k") == b"v"
    store.disconnect()


def test_default_configuration_serves_default_and_memory(own_daemon):
    data = own_daemon.base / "data"
    own_daemon(None, env={"XDG_DATA_HOME": str(data)})
    runtime = own_daemon.base / "rt"
    stores = {s["name"]: s for s in list_stores(runtime)}
    assert stores["default"]["type"] == "filesystem" and stores["default"]["watched"]
    assert stores["memory"]["type"] == "memory"
    default = RemoteStore("default", runtime)
    default.set("hello", (io.BytesIO(b"world"), {"a": 1}))
    assert (data / "encore" / "default" / "hello.data").read_bytes() == b"world"
    default.disconnect()


def test_unread_values_do_not_pile_up(rpc_env):
    store = RemoteStore("fs", rpc_env.runtime_dir, chunk_size=64 * 1024)
    store.set("wide", (io.BytesIO(os.urandom(300_000)), {"m": 1}))
    for _ in range(100):
        assert store.get("wide").metadata == {"m": 1}  # data never read
    pid = rpc_env.daemon.pid
    assert len(os.listdir(f"/proc/{pid}/fd")) < 120
    # The newest values can still be read.
    value = store.get("wide")
    with value.data as stream:
        assert len(stream.read()) == 300_000
    store.delete("wide")
    store.disconnect()


def test_a_store_that_cannot_open_stops_the_start(tmp_path):
    from encored.testing import DaemonProcess, short_tempdir

    with short_tempdir() as base:
        daemon = DaemonProcess(
            base / "rt",
            f'[stores.docs]\ntype = "filesystem"\npath = "{tmp_path}/absent"\n',
        )
        try:
            # Found by the configuration check before any store is built:
            # a configuration problem (EX_CONFIG), as --check-config says.
            with pytest.raises(
                RuntimeError, match="stores.docs.path: .* does not exist"
            ):
                daemon.start(timeout=15)
            assert daemon.process.wait(10) == 78
        finally:
            daemon.cleanup()


def test_small_message_limit_gives_smaller_chunks(own_daemon):
    own_daemon('[daemon]\nmax_message_size = 65536\n[stores.m]\ntype = "memory"\n')
    store = RemoteStore("m", own_daemon.base / "rt")
    for size in (100_000, 1_000_003):
        data = os.urandom(size)
        store.set(f"v{size}", (io.BytesIO(data), {"n": size}))
        assert store.to_bytes(f"v{size}") == data
    assert store.chunk_size <= 65536
    # A transaction's values too big for its one message are staged first.
    values = {f"t{i}": os.urandom(40_000) for i in range(3)}
    with store.transaction("small limit"):
        for key, data in values.items():
            store.set(key, (io.BytesIO(data), {}))
    for key, data in values.items():
        assert store.to_bytes(key) == data
    store.disconnect()


def test_hung_daemon_times_out_and_the_proxy_recovers(own_daemon):
    import signal

    daemon = own_daemon('[stores.m]\ntype = "memory"\n')
    store = RemoteStore("m", own_daemon.base / "rt", timeout=1.0)
    store.set("k", (io.BytesIO(b"v"), {}))
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(DaemonUnavailableError, match="within 1 s"):
            store.get_metadata("k")
        assert time.monotonic() - start < 3
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    assert store.to_bytes("k") == b"v"
    store.set("k", (io.BytesIO(b"w"), {}))
    assert store.to_bytes("k") == b"w"
    store.disconnect()
