"""Password encoders as encore 0.8 users call them (issue 14).

``sha1_hasher`` returns the raw digest; ``make_encoder`` encoders return
bytes that a 0.8 user stores directly as a value's data; ``verify`` (and
`SimpleAuthStore.connect`) accept the records 0.8 stored, the text records
this library stored before, and the bytes it stores now.
"""

from __future__ import annotations

import hashlib
import itertools

import pytest

from encore.events.event_manager import EventManager
from encore.storage.abstract_store import AuthenticationError
from encore.storage.dict_memory_store import DictMemoryStore
from encore.storage.simple_auth_store import (
    SimpleAuthStore,
    add_user,
    make_encoder,
    sha1_hasher,
)
from encore.storage.string_value import StringValue

FAST = 1000  # PBKDF2 rounds where the default cost is not what is tested
SALT = b"site salt"


@pytest.fixture
def records():
    """A connected memory store holding user records."""
    store = DictMemoryStore(EventManager())
    store.connect()
    return store


def connect(records, encoder, username, password):
    """Log in through a SimpleAuthStore over ``records``; return it."""
    store = SimpleAuthStore(records, encoder, event_manager=EventManager())
    store.connect({"username": username, "password": password})
    return store


def sha1_of_08(salt: bytes, password: str) -> bytes:
    """What 0.8 stored: the raw SHA-1 digest of salt + UTF-8 password."""
    return hashlib.sha1(salt + password.encode("utf-8")).digest()


def test_sha1_hasher_returns_raw_digest_bytes():
    digest = sha1_hasher("abc")
    assert isinstance(digest, bytes) and len(digest) == 20
    assert digest == hashlib.sha1(b"abc").digest()


@pytest.mark.parametrize(
    "encoder",
    [make_encoder(SALT, sha1_hasher), make_encoder(SALT, iterations=FAST)],
    ids=["sha1", "pbkdf2"],
)
def test_encoder_result_stored_directly_as_data(records, encoder):
    record = encoder("pw")
    assert isinstance(record, bytes)
    # The two ways a 0.8 user stores it: a value, or a (data, metadata) pair.
    records.set(".user_ann", StringValue(record))
    records.set(".user_bob", (encoder("bob-pw"), {}))
    assert records.to_bytes(".user_ann") == record
    assert connect(records, encoder, "ann", "pw").username == "ann"
    assert connect(records, encoder, "bob", "bob-pw").username == "bob"
    with pytest.raises(AuthenticationError):
        connect(records, encoder, "ann", "bob-pw")


def test_sha1_encoder_is_08s_digest():
    assert make_encoder(SALT, sha1_hasher)("pw") == sha1_of_08(SALT, "pw")


def test_default_encoder_stays_slow_pbkdf2():
    encoder = make_encoder(SALT)
    record = encoder("pw")
    assert record.startswith(b"pbkdf2_sha256$600000$")
    assert encoder.verify("pw", record)


@pytest.mark.parametrize("hasher", [None, sha1_hasher], ids=["default", "sha1"])
def test_08_records_log_in(records, hasher):
    """0.8's default was SHA-1: its records work with either encoder."""
    encoder = make_encoder(SALT, hasher, iterations=FAST)
    records.set(".user_old", (sha1_of_08(SALT, "pw"), {}))
    assert connect(records, encoder, "old", "pw").username == "old"
    with pytest.raises(AuthenticationError):
        connect(records, encoder, "old", "PW")


def test_08_records_refused_when_legacy_turned_off(records):
    encoder = make_encoder(SALT, iterations=FAST, legacy_sha1=False)
    records.set(".user_old", (sha1_of_08(SALT, "pw"), {}))
    with pytest.raises(AuthenticationError):
        connect(records, encoder, "old", "pw")
    # New records still work.
    add_user(records, encoder, "new", "pw")
    assert connect(records, encoder, "new", "pw").username == "new"


def test_raw_digest_with_whitespace_bytes_at_its_ends():
    """A raw digest may begin or end with bytes that look like whitespace."""
    space = b" \t\n\r\x0b\x0c"
    found = {}
    for n in itertools.count():
        password = f"pw{n}"
        digest = sha1_of_08(SALT, password)
        if digest[-1] in space:
            found.setdefault("end", password)
        if digest[0] in space:
            found.setdefault("start", password)
        if len(found) == 2:
            break
    for password in found.values():
        digest = sha1_of_08(SALT, password)
        for hasher in (None, sha1_hasher):
            encoder = make_encoder(SALT, hasher, iterations=FAST)
            assert encoder.verify(password, digest)
            assert not encoder.verify(password + "x", digest)


def test_older_text_records_of_this_library(records):
    """Before issue 14 encoders returned str: those records still verify."""
    pbkdf2 = make_encoder(SALT, iterations=FAST)
    sha1 = make_encoder(SALT, sha1_hasher)
    old_pbkdf2 = pbkdf2("pw").decode("ascii")
    old_sha1 = hashlib.sha1(SALT + b"pw").hexdigest()
    assert pbkdf2.verify("pw", old_pbkdf2)
    assert sha1.verify("pw", old_sha1)
    assert sha1.verify("pw", old_sha1 + "\n")
    assert not sha1.verify("other", old_sha1)
    records.set(".user_t", (old_sha1.encode() + b"\n", {}))
    assert connect(records, sha1, "t", "pw").username == "t"


def test_plain_sha1_hasher_as_encoder_reads_old_and_new(records):
    """``SimpleAuthStore(store, sha1_hasher)`` (no salt), as the daemon's
    ``encoder: sha1`` option does, reads hex records and raw ones."""
    records.set(".user_hex", (hashlib.sha1(b"pw").hexdigest().encode(), {}))
    add_user(records, sha1_hasher, "raw", "pw")
    assert records.to_bytes(".user_raw") == hashlib.sha1(b"pw").digest()
    assert connect(records, sha1_hasher, "hex", "pw").username == "hex"
    assert connect(records, sha1_hasher, "raw", "pw").username == "raw"
    with pytest.raises(AuthenticationError):
        connect(records, sha1_hasher, "raw", "wrong")


def test_hasher_returning_neither_is_a_clear_error():
    encoder = make_encoder(SALT, lambda b: 42)
    with pytest.raises(TypeError, match="hasher result must be str or bytes"):
        encoder("pw")
