"""tcp:// only with CURVE, on 127.0.0.1, with two different client key pairs."""

import io
import signal
import socket
import sys
import time

import pytest
import zmq

from encore.events.api import BaseEvent, EventManager
from encore_client import (
    BusBridge,
    DaemonUnavailableError,
    RemoteStore,
    ZmqTransport,
)
from encore_client._keys import (
    generate_keys,
    load_remote,
    read_key_pair,
    read_public_key,
    remote_endpoints,
)
from encore_client.cli import main as encore
from encored import ConfigError, parse_config
from encored._listen_config import read_authorized_keys

from .conftest import wait_until


class Hello(BaseEvent):
    pass


CONFIG = """
[daemon]
heartbeat_interval = 0.1

[stores.mem]
type = "memory"

[listen]
requests = "tcp://127.0.0.1:0"
events = "tcp://127.0.0.1:0"
events_in = "tcp://127.0.0.1:0"

[curve]
server_secret_key = "{keys}/server.key_secret"
authorized_keys = "{keys}/authorized_keys"
"""


@pytest.fixture
def keys(tmp_path):
    """A server pair and two client pairs; only ``good`` is authorised."""
    directory = tmp_path / "keys"
    for name in ("server", "good", "bad"):
        assert encore(["keys", "generate", name, "--dir", str(directory)]) == 0
    good = read_public_key(directory / "good.key").decode()
    (directory / "authorized_keys").write_text(
        f"# clients allowed in\n{good} good laptop\n"
    )
    return directory


@pytest.fixture
def tcp_daemon(make_daemon, keys):
    daemon = make_daemon(CONFIG.format(keys=keys))
    with ZmqTransport(daemon.runtime_dir, timeout=5) as local:
        listen = local.request("status").result["service"]["listen"]
    assert listen["requests"].startswith("tcp://127.0.0.1:")
    return daemon, listen


def remote(listen, keys, client, timeout=None):
    return remote_endpoints(
        listen["requests"],
        listen["events"],
        keys / "server.key",
        keys / f"{client}.key_secret",
        listen["events_in"],
    )


def test_authorised_client_gets_calls_and_events_over_tcp(tcp_daemon, keys):
    daemon, listen = tcp_daemon
    far = remote(listen, keys, "good")
    store = RemoteStore("mem", far, timeout=5)
    store.set("k", (io.BytesIO(b"over tcp"), {"via": "curve"}))
    # The local (ipc) side sees the same store, without any key.
    local = RemoteStore("mem", daemon.runtime_dir, timeout=5)
    assert local.to_bytes("k") == b"over tcp"
    local.set("big", (io.BytesIO(b"x" * 600_000), {}))  # chunked over tcp
    assert store.to_bytes("big") == b"x" * 600_000
    # Events both ways between a tcp bridge and an ipc bridge.
    em_far, em_local = EventManager(), EventManager()
    far_got, local_got = [], []
    em_far.connect(Hello, far_got.append)
    em_local.connect(Hello, local_got.append)
    with (
        BusBridge(em_far, far, timeout=10),
        BusBridge(em_local, daemon.runtime_dir, timeout=10),
    ):
        em_local.emit(Hello(side="local"))
        em_far.emit(Hello(side="far"))
        # Each manager has its own event, and the other's through the bus.
        wait_until(lambda: len(far_got) == len(local_got) == 2, 10, "events across tcp")
    assert sorted(e.side for e in far_got) == ["far", "local"]
    assert sorted(e.side for e in local_got) == ["far", "local"]
    store.disconnect()
    local.disconnect()


def _sub(context, endpoint, keys_dir=None, client=None, server_key=None):
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    if client is not None:
        public, secret = read_key_pair(keys_dir / f"{client}.key_secret")
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    sock.connect(endpoint)
    return sock


def test_unauthorised_clients_get_nothing_not_even_events(tcp_daemon, keys):
    daemon, listen = tcp_daemon
    # A valid key pair that is not in the list: no reply at all.
    with pytest.raises(DaemonUnavailableError):
        with ZmqTransport(remote(listen, keys, "bad"), timeout=1.5) as transport:
            transport.request("ping")
    # A client that guesses the wrong server key: nothing either.
    wrong = remote_endpoints(
        listen["requests"], listen["events"], keys / "bad.key", keys / "good.key_secret"
    )
    with pytest.raises(DaemonUnavailableError):
        with ZmqTransport(wrong, timeout=1.5) as transport:
            transport.request("ping")
    # Subscribers: the authorised one hears heartbeats and events; the
    # unauthorised, the keyless and the plain ones hear nothing.
    server_key = read_public_key(keys / "server.key")
    context = zmq.Context()
    try:
        good = _sub(context, listen["events"], keys, "good", server_key)
        others = [
            _sub(context, listen["events"], keys, "bad", server_key),
            _sub(context, listen["events"]),  # no CURVE at all
        ]
        wait_until(lambda: good.poll(100), 10, "the good subscriber's first message")
        with ZmqTransport(daemon.runtime_dir, timeout=5) as local:
            for _ in range(5):
                local.request("probe", {"token": "secret-news"})
        deadline = time.monotonic() + 1.5
        heard = []
        while time.monotonic() < deadline:
            if good.poll(50):
                heard.append(good.recv_multipart())
        assert any(b"secret-news" in frame for m in heard for frame in m)
        for sock in others:
            assert not sock.poll(500)
    finally:
        context.destroy(linger=0)  # term would hang on a socket left open
    # Raw junk on the tcp port does not hurt either.
    host, port = listen["requests"][len("tcp://") :].rsplit(":", 1)
    for _ in range(20):
        with socket.create_connection((host, int(port)), timeout=2) as s:
            s.sendall(b"\xff" * 10 + b"GET / HTTP/1.0\r\n\r\n" * 20)
    with ZmqTransport(remote(listen, keys, "good"), timeout=5) as transport:
        assert transport.request("ping").result["instance"]
    with ZmqTransport(daemon.runtime_dir, timeout=5) as local:
        seen = local.request("status").result["service"]["listen"]
    assert seen["refused"] >= 2 and seen["accepted"] >= 1
    assert "refused a CURVE client with an unknown key" in daemon.stderr()


def test_sighup_reads_the_authorised_keys_again(tcp_daemon, keys):
    daemon, listen = tcp_daemon
    bad = read_public_key(keys / "bad.key").decode()
    with open(keys / "authorized_keys", "a") as f:
        f.write(f"{bad} bad, now allowed\n")
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_notification("RELOADING=1")
    daemon.wait_notification("READY=1")
    with ZmqTransport(remote(listen, keys, "bad"), timeout=5) as transport:
        assert transport.request("ping").result["instance"]


def test_cli_remote_file(tcp_daemon, keys, tmp_path, capsys):
    daemon, listen = tcp_daemon
    remote_file = tmp_path / "keys" / "remote.toml"
    remote_file.write_text(
        f'requests = "{listen["requests"]}"\nevents = "{listen["events"]}"\n'
        'server_key = "server.key"\nclient_key = "good.key_secret"\n'
    )
    assert load_remote(remote_file).curve.public == read_public_key(keys / "good.key")
    assert encore(["--remote", str(remote_file), "status"]) == 0
    out = capsys.readouterr().out
    assert f"pid:              {daemon.pid}" in out
    assert "tcp (CURVE):" in out and "1 authorised client keys" in out


# -- configuration ----------------------------------------------------------------


def test_tcp_without_curve_is_refused():
    with pytest.raises(ConfigError, match="offered only with CURVE"):
        parse_config('[listen]\nrequests = "tcp://127.0.0.1:7700"\n', "x.toml")
    with pytest.raises(ConfigError, match="is not tcp://HOST:PORT"):
        parse_config('[listen]\nrequests = "ipc:///tmp/x"\n', "x.toml")


def test_key_files_are_checked(keys):
    base = (
        '[listen]\nevents = "tcp://127.0.0.1:0"\n[curve]\n'
        f'authorized_keys = "{keys}/authorized_keys"\n'
    )
    with pytest.raises(ConfigError, match="holds no secret key"):
        parse_config(base + f'server_secret_key = "{keys}/server.key"\n')
    (keys / "server.key_secret").chmod(0o644)
    with pytest.raises(ConfigError, match="may be read by other users"):
        parse_config(base + f'server_secret_key = "{keys}/server.key_secret"\n')
    (keys / "server.key_secret").chmod(0o600)
    (keys / "authorized_keys").write_text("not-a-key\n")
    with pytest.raises(ConfigError, match=r"authorized_keys:1: not a 40-character"):
        parse_config(base + f'server_secret_key = "{keys}/server.key_secret"\n')


def test_authorized_keys_directory_and_keys_with_hashes(keys, tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("a", "b"):
        generate_keys(certs, name)
    assert len(read_authorized_keys(certs)) == 2
    # Z85 keys may start with '#': still a key, not a comment.
    listed = tmp_path / "list"
    listed.write_text("#" + "a" * 39 + " hashy\n# a comment\n")
    assert read_authorized_keys(listed) == {b"#" + b"a" * 39}


def test_secret_file_mode_and_no_overwrite(tmp_path):
    public, secret = generate_keys(tmp_path, "me")
    assert secret.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        generate_keys(tmp_path, "me")
    with pytest.raises(ValueError, match="key name"):
        generate_keys(tmp_path, "../escape")
    assert sys.modules["zmq"].has("curve")
