"""A request too large for an envelope fails at once, saying what is too large.

Before, the daemon answered such a request without its id; the client threw
the answer away, retried, and after its whole timeout said the daemon was
not running.
"""

import subprocess
import sys
import time

import pytest

from encore_client import RemoteStore, ZmqTransport
from encore_client.wire.errors import RequestTooLargeError

from .conftest import child_env

LONG_KEY = "k" * 70000


@pytest.fixture
def store(rpc_env):
    proxy = RemoteStore("mem", rpc_env.runtime_dir, timeout=10.0)
    try:
        yield proxy
    finally:
        proxy.disconnect()


@pytest.mark.parametrize(
    "call,says",
    [
        (lambda s: s.set_data(LONG_KEY, b"x"), "key is too long (70000 characters)"),
        (lambda s: s.get(LONG_KEY), "key is too long"),
        (lambda s: s.set_metadata("k", {"note": "x" * 70000}), "'metadata'"),
        (
            lambda s: s.multiget_metadata([f"key-{i:06}" for i in range(10000)]),
            "'keys' has 10000 entries",
        ),
    ],
    ids=["set long key", "get long key", "big metadata", "10000 keys"],
)
def test_oversized_calls_fail_at_once_and_the_store_goes_on(store, call, says):
    started = time.monotonic()
    with pytest.raises(RequestTooLargeError) as info:
        call(store)
    assert time.monotonic() - started < 1.0
    assert says in str(info.value)
    assert isinstance(info.value, ValueError)
    store.set_data("after", b"fine")
    assert store.get_data("after").read() == b"fine"


def test_the_daemon_answers_an_oversized_envelope_sent_anyway(rpc_env):
    # A client that skips its own check (another language, an older
    # version) still gets the error at once, not a timeout.
    with ZmqTransport(rpc_env.runtime_dir, timeout=5.0) as transport:
        transport._pack_request = lambda rid, op, args: _unchecked(
            transport, rid, op, args
        )
        started = time.monotonic()
        with pytest.raises(RequestTooLargeError, match="65536"):
            transport.request("store.get", {"store": "mem", "key": LONG_KEY})
        assert time.monotonic() - started < 1.0


def _unchecked(transport, rid, op, args):
    import msgpack

    from encore_client.wire.version import PROTOCOL_VERSION

    envelope = {"v": PROTOCOL_VERSION, "id": rid, "client": transport.client_id}
    return msgpack.packb({**envelope, "op": op, "args": args}, use_bin_type=True)


def test_encore_put_of_a_long_key_says_the_key_is_too_long(rpc_env, tmp_path):
    source = tmp_path / "file"
    source.write_bytes(b"data")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "encore_client.cli",
            "--runtime-dir",
            str(rpc_env.runtime_dir),
            "put",
            "mem",
            LONG_KEY,
            str(source),
        ],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "key is too long" in done.stderr
    assert "did not answer" not in done.stderr
