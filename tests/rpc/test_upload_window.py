"""Upload flow control and zero-copy chunks, with the daemon in this process.

The daemon runs in a thread with the real store operations over a memory
store whose ``set`` waits at a gate before it reads its stream, so the
test decides when the store call takes chunks; the client is a raw DEALER
socket, so the test sees exactly which chunk is acknowledged when.
"""

import threading

import pytest
import zmq

from encore.events.api import EventManager
from encore.storage.dict_memory_store import DictMemoryStore
from encore_client.wire.envelope import build_request, parse_reply
from encored import Daemon, Operation, Response, RuntimeDir, parse_config
from encored._router import ZERO_COPY_FRAME
from encored.stores.transfers import UPLOAD_WINDOW
from encored.stores.wiring import start_store_service
from encored.testing import short_tempdir

CHUNK = ZERO_COPY_FRAME + 4096  # received as a zero-copy view


class GatedStore(DictMemoryStore):
    """A memory store whose ``set`` waits for ``gate`` before reading."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.gate = threading.Event()

    def set(self, key, value, buffer_size=1 << 20):
        assert self.gate.wait(10)
        super().set(key, value, buffer_size)


@pytest.fixture
def gated(in_process_host):
    with short_tempdir("encw") as base:
        directory = RuntimeDir(base / "rt")
        directory.acquire()
        config = parse_config('[stores.gated]\ntype = "memory"\n')
        manager, table, stores = start_store_service(config, EventManager())
        store = GatedStore(event_manager=manager)
        stores.host.stores["gated"] = store
        daemon = Daemon(config, directory, manager, table)
        ready = threading.Event()
        thread = threading.Thread(target=daemon.run, kwargs={"on_ready": ready.set})
        thread.start()
        context = zmq.Context()
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            assert ready.wait(10)
            sock.connect(f"ipc://{base}/rt/requests.ipc")
            yield store, sock, daemon
        finally:
            store.gate.set()
            sock.close()
            daemon.request_stop()
            thread.join(10)
            stores.close()
            context.term()
            directory.release()


def _send(sock, rid, op, args, *frames):
    sock.send_multipart([build_request("w", rid, op, args), *frames])


def _reply(sock, timeout_ms=5000):
    assert sock.poll(timeout_ms), "no reply"
    return parse_reply(sock.recv_multipart())


def test_chunks_within_the_window_are_acknowledged_on_arrival(gated):
    store, sock, _ = gated
    args = {"store": "gated", "key": "k", "mode": "set", "metadata": {"m": 1}}
    _send(sock, 1, "store.upload_begin", args)
    _, begun = _reply(sock)
    upload = begun.result["upload"]
    chunks = [bytes([65 + i]) * CHUNK for i in range(UPLOAD_WINDOW + 2)]

    def send_chunk(seq):
        args = {"upload": upload, "seq": seq}
        _send(sock, 10 + seq, "store.upload_chunk", args, chunks[seq])

    # The store call has taken nothing yet: the window is acknowledged.
    for seq in range(UPLOAD_WINDOW):
        send_chunk(seq)
        rid, outcome = _reply(sock)
        assert rid == 10 + seq and outcome.result == {"ok": True}
    # Beyond it the acknowledgement waits for the store call.
    send_chunk(UPLOAD_WINDOW)
    assert not sock.poll(300)
    store.gate.set()
    rid, outcome = _reply(sock)
    assert rid == 10 + UPLOAD_WINDOW and outcome.result == {"ok": True}
    send_chunk(UPLOAD_WINDOW + 1)
    rid, _ = _reply(sock)
    assert rid == 11 + UPLOAD_WINDOW
    _send(sock, 99, "store.upload_end", {"upload": upload, "count": len(chunks)})
    rid, outcome = _reply(sock)
    assert rid == 99 and not isinstance(outcome, Exception)
    assert store.to_bytes("k") == b"".join(chunks)
    assert store.get_metadata("k") == {"m": 1}


def test_a_failed_store_call_fails_the_next_chunk_and_the_end(gated):
    store, sock, _ = gated
    metadata = {"bad": float("nan")}  # refused by the store call, not before
    _send(
        sock,
        1,
        "store.upload_begin",
        {"store": "gated", "key": "k", "metadata": metadata},
    )
    _, outcome = _reply(sock)
    upload = outcome.result["upload"]
    store.gate.set()
    # The store call refuses the metadata before it reads anything; the
    # chunk sent after that gets the store's error, and so does the end.
    seq = 0
    while True:
        args = {"upload": upload, "seq": seq}
        _send(sock, 10 + seq, "store.upload_chunk", args, b"x" * CHUNK)
        _, outcome = _reply(sock)
        if isinstance(outcome, Exception):
            break
        seq += 1
        assert seq < 50, "the failed upload kept taking chunks"
    assert isinstance(outcome, ValueError)
    _send(sock, 99, "store.upload_end", {"upload": upload, "count": seq + 1})
    _, outcome = _reply(sock)
    assert isinstance(outcome, Exception)
    assert not store.exists("k")


def test_large_payload_frames_are_bytes_except_for_store_calls(gated):
    _, sock, daemon = gated
    seen = {}

    def record(name):
        def handler(daemon, request):
            seen[name] = [type(f) for f in request.frames]
            seen[name + " data"] = b"".join(bytes(f) for f in request.frames)
            return Response(None)

        return handler

    # Looked up per request, so they can join the running table.
    daemon.operations["test.frames"] = Operation(record("bus"))
    daemon.operations["store.test_frames"] = Operation(record("store"))
    payload = [b"a" * CHUNK, b"small"]
    for rid, op in ((1, "test.frames"), (2, "store.test_frames")):
        _send(sock, rid, op, {}, *payload)
        rid_back, outcome = _reply(sock)
        assert rid_back == rid and not isinstance(outcome, Exception), outcome
    assert seen["bus"] == [bytes, bytes]
    assert seen["store"] == [memoryview, bytes]
    assert seen["bus data"] == seen["store data"] == b"".join(payload)
