"""Deferred replies in the daemon: a slow effectful call retried while it
runs is applied once and answered once, on the retry's socket.

The daemon runs in a thread of this process with one extra operation whose
handler the test controls; the clients are raw DEALER sockets, so the test
decides exactly when a retry is sent.
"""

import threading

import pytest
import zmq

from encore.events.api import EventManager
from encore_client.wire.envelope import build_request, parse_reply
from encored import (
    BUS_OPERATIONS,
    Daemon,
    Operation,
    Response,
    RuntimeDir,
    merge_tables,
    parse_config,
)
from encored._deferred import Deferred
from encored.testing import short_tempdir


class SlowOp:
    """``test.slow``: counts calls, answers when the test releases it."""

    def __init__(self):
        self.calls = 0
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, daemon, request):
        self.calls += 1
        deferred = Deferred()

        def work():
            self.started.set()
            self.release.wait(10)
            deferred.resolve(Response({"calls": self.calls}))

        threading.Thread(target=work).start()
        return deferred


@pytest.fixture
def slow_daemon():
    slow = SlowOp()
    with short_tempdir("encd") as base:
        directory = RuntimeDir(base)
        directory.acquire()
        table = merge_tables(BUS_OPERATIONS, {"test.slow": Operation(slow, once=True)})
        daemon = Daemon(parse_config(""), directory, EventManager(), table)
        ready = threading.Event()
        thread = threading.Thread(target=daemon.run, kwargs={"on_ready": ready.set})
        thread.start()
        context = zmq.Context()
        try:
            assert ready.wait(10)
            yield slow, base, context
        finally:
            slow.release.set()
            daemon.request_stop()
            thread.join(10)
            context.term()
            directory.release()


def _socket(context, base):
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"ipc://{base}/requests.ipc")
    return sock


def test_retry_while_running_is_applied_once(slow_daemon):
    slow, base, context = slow_daemon
    request = build_request("client-x", 9, "test.slow", {})
    first, retry, late = (_socket(context, base) for _ in range(3))
    try:
        first.send(request)
        assert slow.started.wait(10)
        retry.send(request)  # the same request id, from a fresh socket
        # Only after the retry has surely arrived: ping on the same socket
        # is answered in order behind it.
        retry.send(build_request("client-x", 10, "ping", {}))
        assert retry.poll(5000)
        rid, _ = parse_reply(retry.recv_multipart())
        assert rid == 10
        slow.release.set()
        assert retry.poll(5000), "the retry got no answer"
        rid, outcome = parse_reply(retry.recv_multipart())
        assert rid == 9 and outcome.result == {"calls": 1}
        assert not first.poll(200)  # answered once, on the newest socket
        late.send(request)  # after completion: from memory
        assert late.poll(5000)
        rid, outcome = parse_reply(late.recv_multipart())
        assert rid == 9 and outcome.result == {"calls": 1}
        assert slow.calls == 1
    finally:
        for sock in (first, retry, late):
            sock.close()
