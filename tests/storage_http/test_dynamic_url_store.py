"""DynamicURLStore against a real REST server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import sys
import threading
import tracemalloc

import pytest
import requests

from encore.storage.abstract_store import (
    AuthenticationError,
    AuthorizationError,
    StoreError,
)
from encore.storage.dynamic_url_store import DynamicURLStore
from encore.storage.events import (
    StoreDeleteEvent,
    StoreProgressEndEvent,
    StoreProgressStartEvent,
    StoreProgressStepEvent,
    StoreSetEvent,
    StoreTransactionEndEvent,
    StoreUpdateEvent,
)
from encore.storage.http_test_servers import RestStoreServer

ODD_KEYS = ["plain", "a/b/c", "with space", "100%", "new\nline", "caf\u00e9", "?&#"]


def make_store(server, event_manager, **kwargs) -> DynamicURLStore:
    return DynamicURLStore(
        server.base_url, server.query_url, event_manager=event_manager, **kwargs
    )


@pytest.fixture
def store(rest_server, event_manager):
    store = make_store(rest_server, event_manager, timeout=10)
    store.connect()
    try:
        yield store
    finally:
        store.disconnect()


def test_set_get_round_trip(store, rest_server) -> None:
    store.set("key", (io.BytesIO(b"some bytes"), {"a": 1, "b": [1, "x"]}))
    assert rest_server.data_of("key") == b"some bytes"
    assert rest_server.metadata_of("key") == {"a": 1, "b": [1, "x"]}
    value = store.get("key")
    assert value.metadata == {"a": 1, "b": [1, "x"]}
    with value.data as stream:
        assert stream.read() == b"some bytes"
    assert value.size == 10
    assert value.created is not None and value.modified >= value.created
    assert store.to_bytes("key") == b"some bytes"
    assert store.exists("key")
    with store.get_data_range("key", 2, 6) as stream:
        assert stream.read() == b"me b"


@pytest.mark.parametrize("key", ODD_KEYS)
def test_any_key_round_trips(store, rest_server, key) -> None:
    store.set(key, (b"data of " + key.encode(), {"k": key}))
    assert rest_server.metadata_of(key) == {"k": key}
    assert store.to_bytes(key) == b"data of " + key.encode()
    assert store.query_keys(k=key) == [key]
    store.delete(key)
    assert not store.exists(key)


def test_set_data_and_set_metadata_create_keys(store) -> None:
    store.set_data("d", b"only data")
    assert store.get_metadata("d") == {}
    store.set_metadata("m", {"only": "metadata"})
    assert store.to_bytes("m") == b""
    store.set_data("m", io.BytesIO(b"now data"))
    assert store.get_metadata("m") == {"only": "metadata"}
    assert store.to_bytes("m") == b"now data"


def test_update_metadata_merges(store) -> None:
    store.set("k", (b"x", {"a": 1, "b": 2}))
    store.update_metadata("k", {"b": 3, "c": 4})
    assert store.get_metadata("k") == {"a": 1, "b": 3, "c": 4}
    assert store.get_metadata("k", select=["a", "zz"]) == {"a": 1}
    with pytest.raises(KeyError):
        store.update_metadata("missing", {"a": 1})


def test_missing_keys(store) -> None:
    assert not store.exists("nope")
    for call in (store.get, store.get_data, store.get_metadata, store.delete):
        with pytest.raises(KeyError):
            call("nope")
    with pytest.raises(KeyError):
        store.get_permissions("nope")


def test_query_and_glob(store) -> None:
    for i in range(6):
        store.set(f"item{i}", (b"", {"parity": i % 2, "i": i}))
    store.set("other", (b"", {"parity": 0, "kind": "x"}))
    assert sorted(store.query_keys(parity=1)) == ["item1", "item3", "item5"]
    assert dict(store.query(select=["i"], parity=0)) == {
        "item0": {"i": 0},
        "item2": {"i": 2},
        "item4": {"i": 4},
        "other": {},
    }
    assert len(store.query()) == 7
    assert store.query_keys(parity=0, kind="x") == ["other"]
    assert store.query_keys(parity=7) == []
    assert sorted(store.glob("item[0-2]")) == ["item0", "item1", "item2"]
    assert [m["i"] for m in store.multiget_metadata(["item3", "item1"])] == [3, 1]


def test_bad_metadata_is_refused_before_anything_is_sent(store, rest_server) -> None:
    before = len(rest_server.requests)
    with pytest.raises(ValueError, match="metadata"):
        store.set("k", (b"data", {"bad": object()}))
    with pytest.raises(ValueError):
        store.set_metadata("k", {"bad": float("nan")})
    assert len(rest_server.requests) == before
    assert not store.exists("k")


def test_events(store, recorder) -> None:
    store.set("k", (b"x", {"a": 1}))
    store.update_metadata("k", {"b": 2})
    store.set_data("k", b"y")
    store.delete("k")
    kinds = [
        (type(e).__name__, e.key, e.metadata)
        for e in recorder.events
        if isinstance(e, (StoreSetEvent, StoreUpdateEvent, StoreDeleteEvent))
    ]
    assert kinds == [
        ("StoreSetEvent", "k", {"a": 1}),
        ("StoreUpdateEvent", "k", {"a": 1, "b": 2}),
        ("StoreSetEvent", "k", {"a": 1, "b": 2}),
        ("StoreDeleteEvent", "k", None),
    ]
    assert all(e.source is store for e in recorder.events)


def test_transaction_holds_events_until_the_end(store, recorder) -> None:
    with store.transaction("two writes"):
        store.set("a", (b"1", {}))
        store.set("b", (b"2", {}))
        assert recorder.of(StoreSetEvent) == []
    names = [type(e).__name__ for e in recorder.events if not hasattr(e, "step")]
    end = names.index("StoreTransactionEndEvent")
    assert names[end + 1 :] == ["StoreSetEvent", "StoreSetEvent"]
    assert recorder.of(StoreTransactionEndEvent)[0].notes == "two writes"


def test_upload_progress_events(store, recorder) -> None:
    data = b"z" * (3 * 65536 + 7)
    store.set("big", (io.BytesIO(data), {"n": 1}), buffer_size=65536)
    starts = recorder.of(StoreProgressStartEvent, source=store)
    steps = recorder.of(StoreProgressStepEvent, source=store)
    ends = recorder.of(StoreProgressEndEvent, source=store)
    assert len(starts) == 1 and starts[0].key == "big"
    assert starts[0].steps == len(data)
    assert [s.step for s in steps] == [65536, 131072, 196608, len(data)]
    assert ends[0].exit_state == "normal"


# -- streaming -------------------------------------------------------------------


class PatternStream(io.RawIOBase):
    """A readable stream of ``size`` pseudo-random bytes, made on the fly."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.remaining = size
        self.block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.remaining
        n = min(n, self.remaining, len(self.block))
        self.remaining -= n
        return self.block[:n]


@pytest.mark.slow
@pytest.mark.parametrize("chunked_responses", [False, True])
def test_large_values_stream_both_ways(event_manager, chunked_responses) -> None:
    size = 64 * 1024 * 1024
    with RestStoreServer(chunked_responses=chunked_responses) as server:
        store = make_store(server, event_manager, timeout=30)
        store.connect()
        try:
            tracemalloc.start()
            try:
                store.set("huge", (PatternStream(size), {"size": size}))
                _, upload_peak = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
                digest = hashlib.sha256()
                total = 0
                with store.get_data("huge") as stream:
                    while chunk := stream.read(1 << 20):
                        digest.update(chunk)
                        total += len(chunk)
                _, download_peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        finally:
            store.disconnect()
        put = [r for r in server.requests if r.method == "PUT" and "data" in r.path]
        assert put[0].headers.get("Transfer-Encoding") == "chunked"
        assert put[0].body_size == size
    expected = hashlib.sha256()
    source = PatternStream(size)
    while chunk := source.read(1 << 20):
        expected.update(chunk)
    assert total == size and digest.hexdigest() == expected.hexdigest()
    # Peaks cover client and server threads together; the value is 64 MiB.
    assert upload_peak < 16 * 1024 * 1024
    assert download_peak < 16 * 1024 * 1024


# -- permissions and authentication ---------------------------------------------------


def test_permissions(store) -> None:
    store.set("k", (b"", {}))
    assert store.get_permissions("k") == {"owned": {"anonymous"}}
    store.update_permissions("k", {"read": {"bob", "carol"}})
    store.update_permissions("k", {"read": ["dave"]})
    assert store.get_permissions("k") == {
        "owned": {"anonymous"},
        "read": {"bob", "carol", "dave"},
    }
    store.set_permissions("k", {"owned": {"anonymous", "eve"}})
    assert store.get_permissions("k") == {"owned": {"anonymous", "eve"}}
    with pytest.raises(ValueError, match="owned"):
        store.set_permissions("k", {"read": {"x"}})
    with pytest.raises(ValueError):
        store.update_permissions("k", {"read": "not-a-set"})
    with pytest.raises(KeyError):
        store.set_permissions("missing", {"owned": {"x"}})


@pytest.fixture
def auth_server():
    with RestStoreServer(users={"alice": "a-pw", "bob": "b-pw"}) as server:
        yield server


def test_authenticated_users_and_owners(auth_server, event_manager) -> None:
    alice = make_store(auth_server, event_manager)
    alice.connect({"username": "alice", "password": "a-pw"})
    bob_session = requests.Session()
    bob_session.auth = ("bob", "b-pw")
    bob = make_store(auth_server, event_manager)
    bob.connect(("bob", bob_session))
    try:
        assert alice.user_tag == "alice" and bob.user_tag == "bob"
        alice.set("doc", (b"alice's", {}))
        assert alice.get_permissions("doc") == {"owned": {"alice"}}
        with pytest.raises(AuthorizationError, match="403"):
            bob.get_permissions("doc")
        with pytest.raises(AuthorizationError):
            bob.set_metadata("doc", {"stolen": True})
        assert alice.get_metadata("doc") == {}
        alice.update_permissions("doc", {"owned": {"bob"}})
        bob.set_metadata("doc", {"shared": True})
        assert alice.get_metadata("doc") == {"shared": True}
    finally:
        alice.disconnect()
        bob.disconnect()
    # The caller's session stays the caller's: open until they close it.
    assert bob_session.auth == ("bob", "b-pw")
    bob_session.close()


@pytest.mark.parametrize(
    "credentials", [None, {"username": "alice", "password": "wrong"}]
)
def test_bad_credentials(auth_server, event_manager, credentials) -> None:
    store = make_store(auth_server, event_manager)
    store.connect(credentials)
    try:
        with pytest.raises(AuthenticationError, match="401"):
            store.get_metadata("anything")
    finally:
        store.disconnect()


@pytest.mark.parametrize("credentials", [("tag", "not a session"), "x", {"u": 1}])
def test_malformed_credentials(rest_server, event_manager, credentials) -> None:
    store = make_store(rest_server, event_manager)
    with pytest.raises(ValueError, match="credentials"):
        store.connect(credentials)
    assert not store.is_connected()


# -- failures ------------------------------------------------------------------------


def test_not_connected(rest_server, event_manager) -> None:
    store = make_store(rest_server, event_manager)
    with pytest.raises(StoreError, match="not connected"):
        store.get_metadata("k")


def test_server_down(store, rest_server) -> None:
    store.set("k", (b"v", {}))
    rest_server.stop()
    with pytest.raises(StoreError, match="cannot reach the server"):
        store.get_metadata("k")
    with pytest.raises(StoreError, match="cannot reach the server"):
        store.set("k", (b"w", {}))
    rest_server.start()
    assert store.to_bytes("k") == b"v"


@pytest.mark.parametrize("status", [500, 503, 400])
def test_error_status(store, rest_server, status) -> None:
    rest_server.force_status = status
    with pytest.raises(StoreError, match=f"HTTP {status}") as info:
        store.get_metadata("k")
    assert "forced failure" in str(info.value)
    assert not isinstance(info.value, (AuthenticationError, AuthorizationError))
    with pytest.raises(StoreError, match=f"HTTP {status}"):
        store.set("k", (b"x", {}))


def test_slow_server_times_out(rest_server, event_manager) -> None:
    store = make_store(rest_server, event_manager, timeout=0.2)
    store.connect()
    try:
        rest_server.delay = 2.0
        with pytest.raises(StoreError, match="no answer within 0.2 s"):
            store.exists("k")
    finally:
        rest_server.delay = 0.0
        store.disconnect()


def test_custom_url_format_and_parts(event_manager) -> None:
    with RestStoreServer(base_path="/api/v2/keys") as server:
        store = DynamicURLStore(
            server.url + "/api/v2",
            server.query_url,
            url_format="{base}/keys/{key}/{part}",
            url_format_no_part="{base}/keys/{key}",
            parts={"data": "data", "metadata": "metadata", "permissions": "auth"},
            event_manager=event_manager,
        )
        store.connect()
        try:
            store.set("k", (b"v", {"m": 1}))
            assert server.data_of("k") == b"v"
            store.delete("k")
            assert server.entries == {}
        finally:
            store.disconnect()
        assert all(
            r.path.startswith(("/api/v2/keys/", "/query")) for r in server.requests
        )


def test_parts_must_name_every_part(rest_server) -> None:
    with pytest.raises(ValueError, match="parts lacks"):
        DynamicURLStore(rest_server.base_url, rest_server.query_url, parts={})


def test_missing_requests_gives_a_clear_error(rest_server, monkeypatch) -> None:
    # A None entry in sys.modules makes ``import requests`` raise ImportError,
    # exactly as when the package is not installed.
    monkeypatch.setitem(sys.modules, "requests", None)
    with pytest.raises(ImportError, match=r"pip install 'encore\[http\]'"):
        DynamicURLStore(rest_server.base_url, rest_server.query_url)


def test_module_imports_without_requests(monkeypatch) -> None:
    import importlib

    monkeypatch.setitem(sys.modules, "requests", None)
    module = importlib.import_module("encore.storage.dynamic_url_store")
    importlib.reload(module)
    assert hasattr(module, "DynamicURLStore")


def test_concurrent_clients(rest_server, event_manager) -> None:
    errors = []

    def worker(n: int) -> None:
        store = make_store(rest_server, event_manager)
        store.connect()
        try:
            for i in range(10):
                store.set(f"w{n}-{i}", (b"x" * i, {"n": n}))
                assert store.to_bytes(f"w{n}-{i}") == b"x" * i
        except Exception as exc:  # reported below, in the test thread
            errors.append(exc)
        finally:
            store.disconnect()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(rest_server.entries) == 40


def test_closing_a_stream_early_releases_the_connection(store, rest_server) -> None:
    store.set("big", (PatternStream(8 * 1024 * 1024), {}))
    for _ in range(3):
        with store.get_data("big") as stream:
            assert len(stream.read(1000)) == 1000
    store.set("small", (b"s", {}))
    assert store.to_bytes("small") == b"s"


def test_server_dying_mid_download_is_a_store_error(store, rest_server) -> None:
    size = 32 * 1024 * 1024
    store.set("big", (PatternStream(size), {}))
    total = 0
    with pytest.raises(StoreError, match="reading the response body failed"):
        with store.get_data("big") as stream:
            total += len(stream.read(1024 * 1024))
            rest_server.stop()
            while chunk := stream.read(1024 * 1024):
                total += len(chunk)
    assert total < size


def test_source_stream_failing_mid_upload_keeps_the_old_value(store, rest_server):
    store.set("k", (b"old", {"v": 1}))

    class Broken(PatternStream):
        def read(self, n=-1):
            if self.remaining < 4 * 1024 * 1024:
                raise OSError("disk went away")
            return super().read(n)

    with pytest.raises(OSError, match="disk went away"):
        store.set("k", (Broken(8 * 1024 * 1024), {"v": 2}))
    assert store.to_bytes("k") == b"old"
    assert store.get_metadata("k") == {"v": 1}
    assert rest_server.data_of("k") == b"old"
