"""StaticURLStore against a real static HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

from encore.storage.abstract_store import (
    AuthenticationError,
    ReadOnlyStoreError,
    StoreError,
)
from encore.storage.events import (
    StoreDeleteEvent,
    StoreProgressEndEvent,
    StoreProgressStartEvent,
    StoreProgressStepEvent,
    StoreSetEvent,
)
from encore.storage.http_test_servers import StaticSiteServer
from encore.storage.static_url_store import StaticURLStore

KEYS = {
    "alpha": (b"first value\n", {"kind": "letter", "n": 1, "tags": ["a", "b"]}),
    "beta": (b"second", {"kind": "letter", "n": 2}),
    "one": (b"", {"kind": "number"}),
    "with space": (b"spaced", {"kind": "odd"}),
    "dir/nested": (b"nested", {"kind": "odd"}),
    "caf\u00e9": ("caf\u00e9".encode(), {"kind": "odd"}),
}


@pytest.fixture
def site(static_server):
    for key, (data, metadata) in KEYS.items():
        static_server.publish(key, data, metadata, index=False)
    static_server.write_index()
    return static_server


def make_store(site, event_manager, poll=None, timeout=5.0) -> StaticURLStore:
    return StaticURLStore(
        site.root_url,
        site.data_path,
        site.query_path,
        poll=poll,
        event_manager=event_manager,
        timeout=timeout,
    )


@pytest.fixture
def store(site, event_manager):
    store = make_store(site, event_manager)
    store.connect()
    try:
        yield store
    finally:
        store.disconnect()


# -- reading -------------------------------------------------------------------


def test_connect_loads_the_index(store) -> None:
    assert store.is_connected()
    assert sorted(store.query_keys()) == sorted(KEYS)
    assert store.info()["keys"] == len(KEYS)


@pytest.mark.parametrize("key", sorted(KEYS))
def test_get_streams_data_and_metadata(store, key) -> None:
    data, metadata = KEYS[key]
    value = store.get(key)
    with value.data as stream:
        assert stream.read() == data
    assert value.metadata == metadata
    assert value.size == len(data)
    assert value.modified is not None
    with store.get_data(key) as stream:
        assert stream.read() == data
    assert store.get_metadata(key) == metadata
    assert store.to_bytes(key) == data


def test_value_data_reopens_on_each_access(store) -> None:
    value = store.get("alpha")
    with value.data as first, value.data as second:
        assert first.read(5) == b"first"
        assert second.read() == b"first value\n"


def test_get_data_range(store) -> None:
    with store.get_data_range("alpha", 1, 4) as stream:
        assert stream.read() == b"irs"


def test_get_metadata_select_and_copies(store) -> None:
    assert store.get_metadata("alpha", select=["n", "absent"]) == {"n": 1}
    metadata = store.get_metadata("alpha")
    metadata["tags"].append("mutated")
    metadata["n"] = 99
    assert store.get_metadata("alpha") == KEYS["alpha"][1]
    value = store.get("alpha")
    value.metadata["tags"].append("x")
    assert store.get("alpha").metadata == KEYS["alpha"][1]


def test_missing_keys_raise_key_error(store) -> None:
    assert not store.exists("nope")
    with pytest.raises(KeyError):
        store.get("nope")
    with pytest.raises(KeyError):
        store.get_data("nope")
    with pytest.raises(KeyError):
        store.get_metadata("nope")
    with pytest.raises(KeyError):
        list(store.multiget(["alpha", "nope"]))


def test_query_glob_and_multiget(store) -> None:
    assert sorted(store.query_keys(kind="letter")) == ["alpha", "beta"]
    assert dict(store.query(select=["n"], kind="letter")) == {
        "alpha": {"n": 1},
        "beta": {"n": 2},
    }
    assert dict(store.query(kind="number")) == {"one": {"kind": "number"}}
    assert store.query_keys(kind="none") == []
    assert sorted(store.glob("*e*")) == ["beta", "dir/nested", "one", "with space"]
    assert store.glob("caf?") == ["caf\u00e9"]
    assert sorted(store.glob("?lpha")) == ["alpha"]
    values = list(store.multiget(["beta", "alpha"]))
    assert [v.metadata["n"] for v in values] == [2, 1]
    assert [d.read() for d in store.multiget_data(["beta"])] == [b"second"]
    assert list(store.multiget_metadata(["alpha"], select=["n"])) == [{"n": 1}]


def test_to_file_emits_progress(store, site, recorder, tmp_path) -> None:
    big = bytes(range(256)) * 4096 * 3  # 3 MiB: several buffers
    site.publish("big", big, {"size": len(big)})
    store.update_index()
    target = tmp_path / "big.out"
    store.to_file("big", str(target), buffer_size=1 << 20)
    assert target.read_bytes() == big
    starts = recorder.of(StoreProgressStartEvent, source=store)
    steps = recorder.of(StoreProgressStepEvent, source=store)
    ends = recorder.of(StoreProgressEndEvent, source=store)
    assert len(starts) == 1 and starts[0].key == "big"
    assert starts[0].steps == len(big)
    assert steps[-1].step == len(big)
    assert len(ends) == 1 and ends[0].exit_state == "normal"


# -- read-only -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("set", ("alpha", (b"x", {}))),
        ("set_data", ("alpha", b"x")),
        ("set_metadata", ("alpha", {})),
        ("update_metadata", ("alpha", {"n": 5})),
        ("delete", ("alpha",)),
        ("from_bytes", ("new", b"x")),
        ("multiset", (["a"], [(b"x", {})])),
    ],
)
def test_writes_are_refused(store, site, method, args) -> None:
    with pytest.raises(ReadOnlyStoreError, match="read-only"):
        getattr(store, method)(*args)
    assert isinstance(ReadOnlyStoreError("x"), StoreError)
    assert store.get_metadata("alpha") == KEYS["alpha"][1]
    assert not site.glob_requests("*") or all(
        r.method in ("GET", "HEAD") for r in site.requests
    )


# -- index updates and events ----------------------------------------------------


def test_update_index_emits_differences(store, site, recorder) -> None:
    assert recorder.of(StoreSetEvent) == []  # the first load is not a change
    site.publish("gamma", b"new", {"kind": "letter", "n": 3}, index=False)
    site._index["alpha"] = {"kind": "letter", "n": 10}
    del site._index["beta"]
    site.write_index()
    store.update_index()
    sets = {e.key: e.metadata for e in recorder.of(StoreSetEvent, source=store)}
    deletes = {e.key: e.metadata for e in recorder.of(StoreDeleteEvent, source=store)}
    assert sets == {
        "gamma": {"kind": "letter", "n": 3},
        "alpha": {"kind": "letter", "n": 10},
    }
    assert deletes == {"beta": {"kind": "letter", "n": 2}}
    assert store.get_metadata("alpha")["n"] == 10
    assert not store.exists("beta")
    with store.get_data("gamma") as stream:
        assert stream.read() == b"new"
    recorder.clear()
    store.update_index()  # nothing changed: nothing emitted
    assert recorder.of(StoreSetEvent) == recorder.of(StoreDeleteEvent) == []


def test_polling_thread_picks_up_changes_and_stops_on_disconnect(
    site, event_manager, recorder, wait_for
) -> None:
    store = make_store(site, event_manager, poll=0.05)
    store.connect()
    try:
        poller = store._poller
        assert poller is not None and poller.is_alive()
        site.publish("late", b"late data", {"kind": "late"})
        wait_for(lambda: store.exists("late"))
        wait_for(lambda: [e.key for e in recorder.of(StoreSetEvent)] == ["late"])
        site.remove("late")
        wait_for(lambda: not store.exists("late"))
        wait_for(lambda: [e.key for e in recorder.of(StoreDeleteEvent)] == ["late"])
    finally:
        store.disconnect()
    assert not poller.is_alive()
    assert not store.is_connected()
    before = len(site.requests)
    # No thread left polling: the server sees no further request.
    threading.Event().wait(0.2)
    assert len(site.requests) == before
    with pytest.raises(StoreError, match="not connected"):
        store.get_metadata("alpha")


def test_poller_survives_failures_and_keeps_last_good_index(
    site, event_manager, wait_for
) -> None:
    store = make_store(site, event_manager, poll=0.05)
    store.connect()
    try:
        site.write_index(b"{broken")
        wait_for(lambda: store.last_index_error is not None)
        assert "not valid JSON" in str(store.last_index_error)
        assert store.get_metadata("alpha") == KEYS["alpha"][1]
        assert store._poller.is_alive()
        site.publish("after", b"x", {"kind": "after"})  # a good index again
        wait_for(lambda: store.exists("after"))
        assert store.last_index_error is None
    finally:
        store.disconnect()


# -- failure modes ---------------------------------------------------------------


def test_server_down(store, site) -> None:
    site.stop()
    with pytest.raises(StoreError, match="could not fetch index") as info:
        store.update_index()
    assert "127.0.0.1" in str(info.value)
    assert store.get_metadata("alpha") == KEYS["alpha"][1]  # last good index
    assert sorted(store.query_keys()) == sorted(KEYS)
    with pytest.raises(StoreError, match="could not fetch data"):
        store.get_data("alpha")
    site.start()  # back on the same port
    site.publish("back", b"b", {})
    store.update_index()
    assert store.exists("back")


def test_connect_to_a_down_server_fails_clearly(site, event_manager) -> None:
    site.stop()
    store = make_store(site, event_manager)
    with pytest.raises(StoreError, match="could not fetch index"):
        store.connect()
    assert not store.is_connected()


def test_slow_server_times_out_and_keeps_index(site, event_manager) -> None:
    store = make_store(site, event_manager, timeout=0.2)
    store.connect()
    try:
        site.delay = 2.0
        with pytest.raises(StoreError, match="timed out|timeout"):
            store.update_index()
        assert store.get_metadata("beta") == KEYS["beta"][1]
    finally:
        site.delay = 0.0
        store.disconnect()


@pytest.mark.parametrize("status", [404, 500, 503])
def test_error_status_for_index(store, site, status) -> None:
    site.force_status = status
    with pytest.raises(StoreError, match=f"HTTP {status}"):
        store.update_index()
    site.force_status = None
    assert store.get_metadata("beta") == KEYS["beta"][1]
    assert isinstance(store.last_index_error, StoreError)
    store.update_index()
    assert store.last_index_error is None


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (json.dumps({"k": [1]}).encode(), "metadata of key 'k' must be"),
    ],
)
def test_broken_index_is_refused(store, site, recorder, raw, match) -> None:
    site.write_index(raw)
    with pytest.raises(StoreError, match=match):
        store.update_index()
    assert sorted(store.query_keys()) == sorted(KEYS)
    assert recorder.of(StoreDeleteEvent) == []


def test_data_missing_on_server_is_key_error(store, site) -> None:
    site.missing.add("data/alpha")
    value = store.get("alpha")  # the index still lists it
    with pytest.raises(KeyError):
        value.data.close()
    with pytest.raises(KeyError):
        store.get_data("alpha")


def test_data_server_error(store, site) -> None:
    site.force_status = 500
    with pytest.raises(StoreError, match="HTTP 500"):
        store.get_data("alpha")
    assert store.get("alpha").size is None  # attributes never raise


# -- authentication -----------------------------------------------------------------


def test_basic_auth(site, event_manager) -> None:
    site.credentials = ("alibaba", "Open Sesame")
    store = make_store(site, event_manager)
    store.connect(credentials={"username": "alibaba", "password": "Open Sesame"})
    try:
        with store.get_data("alpha") as stream:
            assert stream.read() == KEYS["alpha"][0]
        assert all(
            r.headers.get("Authorization", "").startswith("Basic ")
            for r in site.requests
        )
    finally:
        store.disconnect()


def test_basic_auth_with_handler_factory(site, event_manager) -> None:
    site.credentials = ("alibaba", "Open Sesame")
    store = make_store(site, event_manager)
    store.connect(
        credentials={"username": "alibaba", "password": "Open Sesame"},
        auth_handler_factory=urllib.request.HTTPBasicAuthHandler,
    )
    try:
        assert store.get_metadata("beta") == KEYS["beta"][1]
    finally:
        store.disconnect()


@pytest.mark.parametrize(
    "credentials", [None, {"username": "alibaba", "password": "wrong"}]
)
def test_bad_or_missing_credentials(site, event_manager, credentials) -> None:
    site.credentials = ("alibaba", "Open Sesame")
    store = make_store(site, event_manager)
    with pytest.raises(AuthenticationError, match="401"):
        store.connect(credentials=credentials)
    assert not store.is_connected()


def test_malformed_credentials(site, event_manager) -> None:
    store = make_store(site, event_manager)
    with pytest.raises(ValueError, match="username"):
        store.connect(credentials={"user": "x"})


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"poll": -1}, "poll"), ({"timeout": 0}, "timeout")]
)
def test_bad_constructor_arguments(site, event_manager, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        StaticURLStore(site.root_url, "data/", "index.json", **kwargs)


def test_documented_old_calling_convention(site, event_manager) -> None:
    # The documentation's usage example passes the event manager first.
    store = StaticURLStore(event_manager, site.root_url, "data/", "index.json")
    assert store.event_manager is event_manager
    assert (store.root_url, store.data_path, store.query_path, store.poll) == (
        site.root_url,
        "data/",
        "index.json",
        300,
    )
    store = StaticURLStore(event_manager, site.root_url, "data/", "index.json", 5)
    assert store.poll == 5
    with pytest.raises(TypeError, match="query_path"):
        StaticURLStore(site.root_url, "data/", None)


def test_server_dying_mid_download_is_a_store_error(store, site) -> None:
    size = 32 * 1024 * 1024
    site.publish("big", b"b" * size, {})
    store.update_index()
    total = 0
    with pytest.raises(StoreError, match="reading data of 'big' failed"):
        with store.get_data("big") as stream:
            total += len(stream.read(1024 * 1024))
            site.stop()
            while chunk := stream.read(1024 * 1024):
                total += len(chunk)
    assert total < size


def test_listeners_may_use_the_store(store, site, event_manager) -> None:
    seen = []

    def listener(event) -> None:
        seen.append(store.get_metadata(event.key))
        event.metadata["mutated"] = True  # must not reach the cached index
        if len(seen) == 1:
            store.update_index()  # re-entrant reload: no deadlock

    event_manager.connect(StoreSetEvent, listener)
    site.publish("new", b"n", {"tags": ["x"]})
    worker = threading.Thread(target=store.update_index)
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert seen == [{"tags": ["x"]}]
    assert store.get_metadata("new") == {"tags": ["x"]}


def test_proxy_handler_is_used(site, event_manager, monkeypatch) -> None:
    # urllib skips a proxy for hosts in no_proxy; this test wants it used.
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("no_proxy")
    with StaticSiteServer() as proxy:
        store = make_store(site, event_manager)
        handler = urllib.request.ProxyHandler({"http": proxy.url})
        # The "proxy" is a plain file server: it answers 404 to the
        # absolute URL a proxy receives, which shows where the request went.
        with pytest.raises(StoreError, match="HTTP 404"):
            store.connect(proxy_handler=handler)
        assert proxy.requests[0].path == site.root_url + "index.json"
        assert site.requests == []
