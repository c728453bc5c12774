"""Password encoders of `encore.storage.simple_auth_store`."""

from __future__ import annotations

import hashlib
import time
import timeit

import pytest

from encore.storage._password import (
    DEFAULT_ITERATIONS,
    make_encoder,
    sha1_hasher,
    verify_password,
)

FAST = 1000  # PBKDF2 rounds for tests that do not measure the default cost


def test_sha1_hasher_is_raw_sha1_of_utf8() -> None:
    assert sha1_hasher("abc") == hashlib.sha1(b"abc").digest()
    assert sha1_hasher(b"abc") == sha1_hasher("abc")
    assert sha1_hasher("é") == hashlib.sha1("é".encode()).digest()


def test_sha1_hasher_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="str or bytes"):
        sha1_hasher(12)  # type: ignore[arg-type]


def test_default_encoder_is_pbkdf2_with_the_salt() -> None:
    encoder = make_encoder(b"pepper", iterations=FAST)
    expected = hashlib.pbkdf2_hmac("sha256", b"secret", b"pepper", FAST).hex()
    assert encoder("secret") == f"pbkdf2_sha256${FAST}${expected}".encode()
    # Deterministic for a given salt: the documented scheme compares
    # encoder(password) with the stored value.
    assert encoder("secret") == encoder("secret")


def test_default_encoder_is_slow_by_default() -> None:
    encoder = make_encoder(b"pepper")
    assert encoder.iterations == DEFAULT_ITERATIONS >= 600_000
    start = time.perf_counter()
    encoded = encoder("secret")
    elapsed = time.perf_counter() - start
    # Best of many: a context switch must not inflate the fast baseline.
    fast_elapsed = min(
        timeit.repeat(lambda: sha1_hasher(b"pepper" + b"secret"), number=1, repeat=50)
    )
    assert encoded.startswith(f"pbkdf2_sha256${DEFAULT_ITERATIONS}$".encode())
    # A KDF that costs nothing would make a stolen table cheap to attack.
    assert elapsed > 1000 * fast_elapsed


def test_salt_changes_the_encoding() -> None:
    one = make_encoder(b"salt-one", iterations=FAST)
    two = make_encoder(b"salt-two", iterations=FAST)
    assert one("secret") != two("secret")
    assert make_encoder("salt-one", iterations=FAST)("secret") == one("secret")


def test_explicit_sha1_hasher_keeps_the_old_scheme() -> None:
    encoder = make_encoder(b"salt", hasher=sha1_hasher)
    assert encoder("secret") == hashlib.sha1(b"saltsecret").digest()
    assert encoder.verify("secret", hashlib.sha1(b"saltsecret").digest())
    # The hex text this library stored before sha1_hasher returned bytes.
    assert encoder.verify("secret", hashlib.sha1(b"saltsecret").hexdigest())
    assert not encoder.verify("Secret", hashlib.sha1(b"saltsecret").hexdigest())


def test_hasher_returning_str_is_encoded() -> None:
    encoder = make_encoder(b"s", hasher=lambda b: hashlib.md5(b).hexdigest())
    assert encoder("p") == hashlib.md5(b"sp").hexdigest().encode()
    assert encoder.verify("p", hashlib.md5(b"sp").hexdigest())


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((b"",), ValueError, "salt must not be empty"),
        ((None,), TypeError, "salt must be str or bytes"),
        ((b"s", "not callable"), TypeError, "hasher must be callable"),
    ],
)
def test_make_encoder_rejects_bad_arguments(args, error, match) -> None:
    with pytest.raises(error, match=match):
        make_encoder(*args)


@pytest.mark.parametrize("iterations", [0, -5, 1.5])
def test_make_encoder_rejects_bad_iterations(iterations) -> None:
    with pytest.raises(ValueError, match="iterations"):
        make_encoder(b"s", iterations=iterations)


def test_encoder_rejects_non_text_password() -> None:
    with pytest.raises(TypeError, match="password must be str or bytes"):
        make_encoder(b"s", iterations=FAST)(None)  # type: ignore[arg-type]


def test_verify_accepts_right_and_refuses_wrong() -> None:
    encoder = make_encoder(b"s", iterations=FAST)
    stored = encoder("right")
    assert encoder.verify("right", stored)
    assert isinstance(stored, bytes)
    assert encoder.verify("right", stored + b"\n")
    assert encoder.verify("right", stored.decode())  # the older str form
    assert not encoder.verify("wrong", stored)
    assert not encoder.verify("", stored)


def test_verify_reads_the_iteration_count_from_the_stored_text() -> None:
    old = make_encoder(b"s", iterations=FAST)("pw")
    newer = make_encoder(b"s", iterations=2 * FAST)
    assert newer("pw") != old
    assert newer.verify("pw", old)
    assert not newer.verify("other", old)


@pytest.mark.parametrize(
    "stored",
    [b"", b"garbage", b"pbkdf2_sha256$abc$00", b"pbkdf2_sha256$99999999999$00", b"$$"],
)
def test_verify_treats_malformed_records_as_no_match(stored) -> None:
    assert not make_encoder(b"s", iterations=FAST).verify("pw", stored)


def test_verify_uses_constant_time_comparison(monkeypatch) -> None:
    # Observe that the comparison goes through hmac.compare_digest (a real
    # call, recorded, not replaced) rather than ``==``.
    import encore.storage._password as module

    calls = []
    real = module.hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(module.hmac, "compare_digest", recording)
    encoder = make_encoder(b"s", iterations=FAST)
    assert encoder.verify("pw", encoder("pw"))
    verify_calls = len(calls)
    assert verify_calls >= 1
    assert verify_password(lambda p: sha1_hasher(p), "pw", sha1_hasher("pw"))
    assert len(calls) > verify_calls


def test_verify_password_with_a_plain_callable() -> None:
    stored = sha1_hasher("pw") + b"\n"
    assert verify_password(sha1_hasher, "pw", stored)
    assert verify_password(sha1_hasher, "pw", hashlib.sha1(b"pw").hexdigest())
    assert not verify_password(sha1_hasher, "nope", stored)


def test_repr_hides_the_salt() -> None:
    encoder = make_encoder(b"very-secret-salt", iterations=FAST)
    assert "very-secret-salt" not in repr(encoder)
    assert "pbkdf2" in repr(encoder)
