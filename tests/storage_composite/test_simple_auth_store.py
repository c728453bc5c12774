"""SimpleAuthStore: authentication, hidden records, permissions, events."""

from __future__ import annotations

import io

import pytest

from encore.events.event_manager import EventManager
from encore.storage.abstract_store import AuthenticationError, AuthorizationError
from encore.storage.dict_memory_store import DictMemoryStore
from encore.storage.events import (
    StoreProgressEndEvent,
    StoreProgressStartEvent,
    StoreSetEvent,
)
from encore.storage.simple_auth_store import (
    DEFAULT_ITERATIONS,
    PasswordEncoder,
    SimpleAuthStore,
    add_user,
    make_encoder,
    sha1_hasher,
)

FAST = 1000


class CountingEncoder(PasswordEncoder):
    """A real PBKDF2 encoder that counts the hashing it does."""

    def __init__(self) -> None:
        super().__init__(b"salt", None, FAST)
        self.hashings = 0

    def _encode(self, password, iterations):
        self.hashings += 1
        return super()._encode(password, iterations)


@pytest.fixture
def inner():
    store = DictMemoryStore(EventManager())
    store.connect()
    store.set("doc", (io.BytesIO(b"contents"), {"kind": "doc"}))
    store.set("secret/plan", (io.BytesIO(b"plan"), {"kind": "doc"}))
    store.set("visible/only", (io.BytesIO(b"meta only"), {"kind": "doc"}))
    return store


@pytest.fixture
def encoder():
    return CountingEncoder()


@pytest.fixture
def wrapper(inner, encoder, event_manager):
    add_user(inner, encoder, "ann", "ann-pw")
    add_user(inner, encoder, "bob", "bob-pw")
    store = SimpleAuthStore(inner, encoder, event_manager=event_manager)
    store.connect({"username": "ann", "password": "ann-pw"})
    return store


def test_connect_with_the_right_password(wrapper) -> None:
    assert wrapper.is_connected()
    assert wrapper.username == "ann"
    assert wrapper.to_bytes("doc") == b"contents"
    assert wrapper.check_permissions("doc") == {
        "connect",
        "exists",
        "get",
        "set",
        "delete",
    }


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "ann", "password": "wrong"},
        {"username": "nobody", "password": "ann-pw"},
        {"username": "", "password": "ann-pw"},
        {"username": "ann", "password": ""},
    ],
)
def test_bad_credentials_look_alike(wrapper, encoder, credentials) -> None:
    wrapper.disconnect()
    before = encoder.hashings
    with pytest.raises(AuthenticationError) as info:
        wrapper.connect(credentials)
    assert str(info.value) == "invalid username or password"
    # The same hashing work whether the user exists or not.
    assert encoder.hashings - before == 1
    assert not wrapper.is_connected() and wrapper.username is None
    with pytest.raises(AuthenticationError, match="not connected"):
        wrapper.get("doc")


def test_missing_and_malformed_credentials(wrapper) -> None:
    with pytest.raises(AuthenticationError, match="required"):
        wrapper.connect(None)
    for bad in ({"username": "ann"}, "ann:pw", {"username": 1, "password": "x"}):
        with pytest.raises(ValueError, match="username"):
            wrapper.connect(bad)


def test_a_failed_connect_logs_the_previous_user_out(wrapper) -> None:
    with pytest.raises(AuthenticationError):
        wrapper.connect({"username": "bob", "password": "nope"})
    assert wrapper.username is None
    with pytest.raises(AuthenticationError):
        wrapper.exists("doc")


def test_switching_users(wrapper) -> None:
    wrapper.connect({"username": "bob", "password": "bob-pw"})
    assert wrapper.username == "bob"


def test_records_are_invisible_through_the_wrapper(wrapper, inner) -> None:
    record = inner.to_bytes(".user_ann")
    assert not wrapper.exists(".user_ann")
    for read in (wrapper.get, wrapper.get_data, wrapper.get_metadata):
        with pytest.raises(KeyError):
            read(".user_ann")
    with pytest.raises(KeyError):
        wrapper.to_bytes(".user_bob")
    assert ".user_ann" not in wrapper.query_keys()
    assert all(not k.startswith(".user_") for k, _ in wrapper.query())
    assert wrapper.glob(".user_*") == []
    assert wrapper.glob("*") and ".user_bob" not in wrapper.glob("*")
    assert wrapper.check_permissions(".user_ann")  # the hook is not consulted
    for write in (
        lambda: wrapper.set(".user_ann", (b"forged", {})),
        lambda: wrapper.set_data(".user_ann", b"forged"),
        lambda: wrapper.set_metadata(".user_new", {}),
        lambda: wrapper.update_metadata(".user_ann", {"x": 1}),
        lambda: wrapper.delete(".user_ann"),
        lambda: wrapper.from_bytes(".user_eve", b"x"),
    ):
        with pytest.raises(AuthorizationError, match="reserved for user records"):
            write()
    assert inner.to_bytes(".user_ann") == record
    assert not inner.exists(".user_eve") and not inner.exists(".user_new")


def test_records_in_a_separate_store(inner, encoder, event_manager) -> None:
    users = DictMemoryStore(EventManager())
    users.connect()
    add_user(users, encoder, "ann", "pw", user_key_path="u:")
    inner.set("u:ann", (b"an ordinary key here", {}))
    store = SimpleAuthStore(
        inner,
        encoder,
        user_key_path="u:",
        user_key_store=users,
        event_manager=event_manager,
    )
    store.connect({"username": "ann", "password": "pw"})
    assert store.to_bytes("u:ann") == b"an ordinary key here"
    store.set(".user_x", (b"also ordinary", {}))
    assert inner.exists(".user_x")


def test_default_encoder_records_are_slow_kdf(inner, event_manager) -> None:
    encoder = make_encoder(b"site secret")
    add_user(inner, encoder, "ann", "pw")
    record = inner.to_bytes(".user_ann")
    assert record.startswith(f"pbkdf2_sha256${DEFAULT_ITERATIONS}$".encode())
    assert b"pw" not in record
    store = SimpleAuthStore(inner, encoder, event_manager=event_manager)
    store.connect({"username": "ann", "password": "pw"})
    assert store.is_connected()


def test_sha1_records_still_work_when_asked_for(inner, event_manager) -> None:
    encoder = make_encoder(b"old salt", sha1_hasher)
    old_record = sha1_hasher(b"old salt" + b"pw").hex().encode() + b"\n"
    inner.set(".user_old", (old_record, {}))
    store = SimpleAuthStore(inner, encoder, event_manager=event_manager)
    store.connect({"username": "old", "password": "pw"})
    with pytest.raises(AuthenticationError):
        store.connect({"username": "old", "password": "PW"})


def test_any_callable_encoder(inner, event_manager) -> None:
    inner.set(".user_x", (sha1_hasher("pw"), {}))
    store = SimpleAuthStore(inner, sha1_hasher, event_manager=event_manager)
    store.connect({"username": "x", "password": "pw"})
    assert store.username == "x"


def test_constructor_errors(inner) -> None:
    with pytest.raises(TypeError, match="not a store"):
        SimpleAuthStore({}, sha1_hasher)
    with pytest.raises(TypeError, match="callable"):
        SimpleAuthStore(inner, "not callable")
    with pytest.raises(ValueError, match="user_key_path"):
        SimpleAuthStore(inner, sha1_hasher, user_key_path="")
    with pytest.raises(ValueError, match="username"):
        add_user(inner, sha1_hasher, "", "pw")


def test_info_reveals_no_secret(wrapper) -> None:
    text = repr(wrapper.info())
    assert "salt" not in text and "ann-pw" not in text
    assert wrapper.info()["user"] == "ann"


# -- permissions --------------------------------------------------------------------


class PartialAuthStore(SimpleAuthStore):
    """``secret/`` keys are unknown to ann; ``visible/`` keys exist but are
    unreadable; bob may not connect; only ann may write or delete."""

    def check_permissions(self, key=None):
        user = self.username
        if user is None:
            return set()
        if user == "bob":
            return set()
        if key is None:
            return {"connect"}
        if key.startswith("secret/"):
            return {"connect"}
        if key.startswith("visible/"):
            return {"connect", "exists"}
        if key.startswith("readonly/"):
            return {"connect", "exists", "get"}
        return {"connect", "exists", "get", "set", "delete"}


@pytest.fixture
def partial(inner, encoder, event_manager):
    add_user(inner, encoder, "ann", "ann-pw")
    add_user(inner, encoder, "bob", "bob-pw")
    inner.set("readonly/x", (b"ro", {"kind": "doc"}))
    store = PartialAuthStore(inner, encoder, event_manager=event_manager)
    store.connect({"username": "ann", "password": "ann-pw"})
    return store


def test_no_exists_permission_looks_missing(partial) -> None:
    assert not partial.exists("secret/plan")
    for read in (partial.get, partial.get_data, partial.get_metadata):
        with pytest.raises(KeyError):
            read("secret/plan")
        with pytest.raises(KeyError):
            read("secret/absent")
    assert "secret/plan" not in partial.query_keys()
    assert partial.glob("secret/*") == []


def test_exists_without_get_is_authorization_error(partial) -> None:
    assert partial.exists("visible/only")
    with pytest.raises(AuthorizationError, match="may not get"):
        partial.get("visible/only")
    with pytest.raises(KeyError):
        partial.get("visible/absent")
    assert "visible/only" in partial.query_keys()
    # Matching on metadata would reveal it: needs 'get'.
    assert "visible/only" not in partial.query_keys(kind="doc")
    assert "visible/only" not in dict(partial.query())
    assert sorted(partial.query_keys(kind="doc")) == ["doc", "readonly/x"]


def test_writes_need_their_permission(partial, inner) -> None:
    with pytest.raises(AuthorizationError, match="may not set"):
        partial.set("readonly/x", (b"new", {}))
    with pytest.raises(AuthorizationError, match="may not set"):
        partial.update_metadata("readonly/x", {"a": 1})
    with pytest.raises(AuthorizationError, match="may not delete"):
        partial.delete("readonly/x")
    assert inner.to_bytes("readonly/x") == b"ro"
    assert inner.get_metadata("readonly/x") == {"kind": "doc"}
    partial.set("mine", (b"ok", {}))
    assert inner.to_bytes("mine") == b"ok"


def test_user_without_connect_permission(partial) -> None:
    with pytest.raises(AuthorizationError, match="may not connect"):
        partial.connect({"username": "bob", "password": "bob-pw"})
    assert not partial.is_connected()


# -- events and transactions ----------------------------------------------------------


def test_events_come_from_the_wrapper(wrapper, inner, recorder) -> None:
    inner_events = []
    inner.event_manager.connect(StoreSetEvent, inner_events.append)
    wrapper.set("new", (b"x", {"a": 1}))
    assert [(e.source, e.key, e.metadata) for e in recorder.of(StoreSetEvent)] == [
        (wrapper, "new", {"a": 1})
    ]
    assert [e.source for e in inner_events] == [inner]


def test_long_writes_report_progress(wrapper, recorder) -> None:
    data = b"p" * (3 * 1048576 + 5)
    wrapper.set("big", (io.BytesIO(data), {}))
    starts = recorder.of(StoreProgressStartEvent, source=wrapper)
    ends = recorder.of(StoreProgressEndEvent, source=wrapper)
    assert len(starts) == 1 and starts[0].steps == len(data)
    assert ends[-1].exit_state == "normal"
    assert wrapper.to_bytes("big") == data


def test_transaction_rolls_back_the_inner_store(wrapper, inner, recorder) -> None:
    with pytest.raises(RuntimeError):
        with wrapper.transaction("doomed"):
            wrapper.set("doc", (b"changed", {}))
            wrapper.delete("secret/plan")
            raise RuntimeError("boom")
    assert inner.to_bytes("doc") == b"contents"
    assert inner.exists("secret/plan")
    assert recorder.of(StoreSetEvent) == []
