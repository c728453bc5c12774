"""The value classes under encore 0.8's module paths and constructors.

Issue 14: ``encore.storage.string_value.StringValue``,
``encore.storage.file_value.FileValue`` and
``encore.storage.url_value.URLValue`` as a 0.8 user makes them, stored into
real stores and read back; URLs served by a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import os
import urllib.request

import pytest

from encore.storage.abstract_store import StoreError, Value
from encore.storage.dict_memory_store import DictMemoryStore
from encore.storage.file_value import FileValue
from encore.storage.http_test_servers import StaticSiteServer
from encore.storage.string_value import StringValue
from encore.storage.url_value import URLValue
from encore.storage.values import BytesValue


@pytest.fixture
def server():
    """A static HTTP server on 127.0.0.1 over a fresh directory."""
    with StaticSiteServer() as site:
        yield site


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Loopback requests never go through a proxy from the environment."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _serve(site: StaticSiteServer, name: str, data: bytes) -> str:
    with open(os.path.join(site.directory, name), "wb") as handle:
        handle.write(data)
    return site.root_url.rstrip("/") + "/" + name


# -- StringValue --------------------------------------------------------------


def test_string_value_defaults_as_in_08():
    value = StringValue()
    assert isinstance(value, Value)
    assert value.data.read() == b""
    assert value.metadata == {}
    assert value.size == 0
    assert value.created is None and value.modified is None


def test_string_value_positional_arguments_in_08_order():
    value = StringValue(b"hello", {"a": 1}, 10.0, 20.0)
    assert value.data.read() == b"hello"
    assert value.metadata == {"a": 1}
    assert (value.size, value.created, value.modified) == (5, 10.0, 20.0)
    # Each access to data is a fresh stream from the start.
    assert value.data.read() == b"hello"
    assert value.range(1, 3).read() == b"el"


def test_string_value_is_our_bytes_value_and_stores():
    assert StringValue is BytesValue
    store = DictMemoryStore()
    store.connect()
    store.set("k", StringValue(b"payload", {"colour": "red"}))
    assert store.get_data("k").read() == b"payload"
    assert store.get_metadata("k") == {"colour": "red"}


# -- FileValue ----------------------------------------------------------------


def test_file_value_from_path(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    value = FileValue(str(path))
    assert value.metadata == {}
    assert value.size == 10
    assert value.data.read() == b"0123456789"
    assert value.range(2, 5).read() == b"234"
    assert value.modified == pytest.approx(os.stat(path).st_mtime)
    assert value.created is not None
    assert value.path == str(path)


def test_file_value_metadata_and_pathlike_and_store(tmp_path):
    path = tmp_path / "g.txt"
    path.write_bytes(b"abc")
    value = FileValue(path, {"kind": "text"})
    store = DictMemoryStore()
    store.connect()
    store.set("g", value)
    assert store.get_data("g").read() == b"abc"
    assert store.get_metadata("g") == {"kind": "text"}


def test_file_value_keeps_bytes_current_when_made(tmp_path):
    path = tmp_path / "h"
    path.write_bytes(b"old")
    value = FileValue(str(path))
    replacement = tmp_path / "h.new"
    replacement.write_bytes(b"brand new")
    os.replace(replacement, path)
    assert value.data.read() == b"old"


def test_file_value_missing_path_fails_clearly(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as info:
        FileValue(str(missing))
    assert str(missing) in str(info.value)


def test_file_value_directory_refused(tmp_path):
    with pytest.raises(IsADirectoryError):
        FileValue(str(tmp_path))


# -- URLValue -----------------------------------------------------------------


def test_url_value_reads_url_each_access(server):
    url = _serve(server, "blob.bin", b"first")
    value = URLValue(url)
    assert value.metadata == {}
    assert value.data.read() == b"first"
    _serve(server, "blob.bin", b"second!")
    with value.data as stream:
        assert stream.read() == b"second!"


def test_url_value_size_and_modified_from_head(server):
    url = _serve(server, "s.bin", b"x" * 1234)
    value = URLValue(url, {"m": 1})
    assert value.metadata == {"m": 1}
    assert value.size == 1234
    assert value.modified is not None
    mtime = os.stat(os.path.join(server.directory, "s.bin")).st_mtime
    assert abs(value.modified - mtime) < 2


def test_url_value_stores_into_a_store(server):
    url = _serve(server, "c.bin", b"copied")
    store = DictMemoryStore()
    store.connect()
    store.set("c", URLValue(url, {"from": "web"}))
    assert store.get_data("c").read() == b"copied"
    assert store.get_metadata("c") == {"from": "web"}


def test_url_value_uses_given_opener(server):
    server.credentials = ("ann", "secret")
    url = _serve(server, "p.bin", b"private")
    with pytest.raises(StoreError, match="401"):
        URLValue(url).data.read()
    token = base64.b64encode(b"ann:secret").decode("ascii")
    opener = urllib.request.build_opener()
    opener.addheaders = [("Authorization", f"Basic {token}")]
    assert URLValue(url, opener=opener).data.read() == b"private"


def test_url_value_missing_is_keyerror_and_attributes_stay_none(server):
    url = server.root_url.rstrip("/") + "/absent.bin"
    value = URLValue(url)
    with pytest.raises(KeyError):
        value.data.close()
    assert value.size is None and value.modified is None


def test_url_value_unreachable_is_store_error():
    # A port just closed: nothing listens there.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreError, match="could not fetch"):
        URLValue(f"http://127.0.0.1:{port}/x").data.close()


def test_url_value_refuses_non_string_url():
    with pytest.raises(TypeError, match="url must be a str"):
        URLValue(b"http://127.0.0.1/")  # type: ignore[arg-type]


def test_values_into_filesystem_and_sqlite_stores(tmp_path):
    """The 0.8 values go into the disk stores as any value does."""
    from encore.events.event_manager import EventManager
    from encore.storage.filesystem_store import FileSystemStore, init_shared_store
    from encore.storage.sqlite_store import SqliteStore

    source = tmp_path / "big.bin"
    source.write_bytes(bytes(range(256)) * 1000)
    init_shared_store(str(tmp_path / "fs"))
    stores = [
        FileSystemStore(str(tmp_path / "fs"), event_manager=EventManager()),
        SqliteStore(str(tmp_path / "s.db"), event_manager=EventManager()),
    ]
    for store in stores:
        store.connect()
        try:
            store.set("file", FileValue(source, {"from": "file"}))
            store.set("string", StringValue(b"abc", {"from": "string"}))
            assert store.to_bytes("file") == source.read_bytes()
            assert store.get_metadata("file") == {"from": "file"}
            assert store.to_bytes("string") == b"abc"
        finally:
            store.disconnect()
