"""Authorizing and composite stores served by the daemon.

A simple_auth store gives each connected client its own session (its own
user); a mounted store keeps its write rules through the daemon.
"""

import io

import pytest

from encore.storage._password import make_encoder
from encore.storage.abstract_store import AuthenticationError, AuthorizationError
from encore.storage.simple_auth_store import add_user
from encore_client import RemoteStore

CONFIG = """
[stores.records]
type = "memory"

[stores.auth]
type = "simple_auth"
store = "records"

[stores.backing]
type = "memory"

[stores.scratch]
type = "memory"

[stores.mounted]
type = "mounted"
mount_point = "tmp/"
mount_store = "scratch"
backing_store = "backing"
"""


@pytest.fixture
def runtime(own_daemon):
    own_daemon(CONFIG)
    return own_daemon.base / "rt"


def test_simple_auth_sessions(runtime):
    records = RemoteStore("records", runtime)
    # The daemon derives the encoder's salt from the store's name.
    add_user(records, make_encoder(salt="encored:auth"), "alice", "secret")
    alice = RemoteStore("auth", runtime, timeout=30)
    with pytest.raises(AuthenticationError):
        alice.connect({"username": "alice", "password": "wrong"})
    alice.connect({"username": "alice", "password": "secret"})
    alice.set("doc", (io.BytesIO(b"mine"), {"by": "alice"}))
    assert alice.to_bytes("doc") == b"mine"
    assert alice.check_permissions("doc") >= {"get", "set"}
    assert records.to_bytes("doc") == b"mine"  # written through to the store
    # The user records are not readable, nor writable, through the wrapper.
    assert not alice.exists(".user_alice")
    with pytest.raises(AuthorizationError, match="reserved for user records"):
        alice.set(".user_mallory", (io.BytesIO(b"x"), {}))
    # Without logging in, the shared instance lets nothing through.
    anonymous = RemoteStore("auth", runtime)
    with pytest.raises(AuthenticationError, match="not connected"):
        anonymous.get("doc")
    alice.disconnect()
    # A session dies with disconnect: the old id is refused.
    stale = RemoteStore("auth", runtime)
    stale._session = "s-forged"
    with pytest.raises(AuthenticationError, match="connect again"):
        stale.get("doc")
    for store in (records, anonymous, stale):
        store.disconnect()


def test_mounted_store_rules_hold_through_the_daemon(runtime):
    backing = RemoteStore("backing", runtime)
    backing.set("base", (io.BytesIO(b"b"), {}))
    mounted = RemoteStore("mounted", runtime)
    mounted.set("tmp/x", (io.BytesIO(b"scratch"), {}))
    assert mounted.to_bytes("tmp/x") == b"scratch"
    assert mounted.to_bytes("base") == b"b"
    with pytest.raises(Exception) as info:
        mounted.set("outside", (io.BytesIO(b"no"), {}))
    assert not isinstance(info.value, AssertionError)
    assert not backing.exists("outside")
    for store in (backing, mounted):
        store.disconnect()


def test_dynamic_url_store_hosted(own_daemon):
    from encore.storage.http_test_servers import RestStoreServer

    server = RestStoreServer().start()
    try:
        own_daemon(
            f"""
[stores.rest]
type = "dynamic_url"
base_url = "{server.base_url}"
query_url = "{server.query_url}"
"""
        )
        store = RemoteStore("rest", own_daemon.base / "rt")
        store.set("doc", (io.BytesIO(b"over http"), {"kind": "rest"}))
        assert store.to_bytes("doc") == b"over http"
        assert store.query_keys(kind="rest") == ["doc"]
        store.delete("doc")
        with pytest.raises(KeyError):
            store.get("doc")
        store.disconnect()
    finally:
        server.close()


def test_dynamic_url_store_logins_and_permissions(own_daemon):
    from encore.storage.http_test_servers import RestStoreServer

    server = RestStoreServer(users={"ann": "pw", "bob": "pw2"}).start()
    try:
        own_daemon(
            f"""
[stores.rest]
type = "dynamic_url"
base_url = "{server.base_url}"
query_url = "{server.query_url}"
"""
        )
        runtime = own_daemon.base / "rt"
        ann = RemoteStore("rest", runtime)
        ann.connect({"username": "ann", "password": "pw"})
        ann.set("doc", (io.BytesIO(b"ann's"), {}))
        permissions = ann.get_permissions("doc")
        assert "ann" in permissions["owned"]
        bob = RemoteStore("rest", runtime)
        bob.connect({"username": "bob", "password": "pw2"})
        with pytest.raises(AuthorizationError):
            bob.set_permissions("doc", {"owned": {"bob"}})
        ann.update_permissions("doc", {"owned": {"bob"}})
        assert ann.get_permissions("doc")["owned"] >= {"ann", "bob"}
        anonymous = RemoteStore("rest", runtime)
        with pytest.raises(AuthenticationError):
            anonymous.get("doc")
        for store in (ann, bob, anonymous):
            store.disconnect()
    finally:
        server.close()
