"""Password encoders for `encore.storage.simple_auth_store`.

Kept in their own module so that they can be tested and reused without the
store; `encore.storage.simple_auth_store` re-exports the public names.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

__all__ = [
    "DEFAULT_ITERATIONS",
    "PasswordEncoder",
    "make_encoder",
    "sha1_hasher",
    "verify_password",
]

#: PBKDF2-HMAC-SHA256 rounds of the default encoder (the OWASP 2023 figure).
DEFAULT_ITERATIONS = 600_000

_PBKDF2_TAG = "pbkdf2_sha256"


def _as_bytes(value: str | bytes, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


def sha1_hasher(s: str | bytes) -> bytes:
    """Return the raw SHA-1 digest of ``s`` (UTF-8 if a str), 20 bytes.

    Bytes, as in encore 0.8, so that ``encoder(password)`` can be stored
    directly as a value's data. (Versions of this library before issue 14
    returned the hexadecimal text; `PasswordEncoder.verify` and
    `verify_password` still accept records in that form.)

    Kept for compatibility with hashes made by older versions: SHA-1 is fast,
    so a stolen table of such hashes is cheap to attack. New code should use
    the default of `make_encoder`, a slow salted key derivation.

    Raises
    ------
    TypeError
        If ``s`` is neither str nor bytes.
    """
    return hashlib.sha1(_as_bytes(s, "s")).digest()


def _record_matches(candidate: bytes, stored: bytes) -> bool:
    """Whether ``stored`` is ``candidate`` in one of the accepted forms.

    The forms: the exact bytes (a raw digest may end in a byte that looks
    like whitespace, so it is compared unstripped first); both stripped (a
    record written by hand often ends in a newline); and the hexadecimal
    text of ``candidate`` (what this library stored when `sha1_hasher`
    returned hex). Every comparison is made, each in constant time, so the
    time taken does not tell which form matched.
    """
    exact = hmac.compare_digest(candidate, stored)
    stripped = hmac.compare_digest(candidate.strip(), stored.strip())
    as_hex = hmac.compare_digest(candidate.hex().encode("ascii"), stored.strip())
    return exact | stripped | as_hex


class PasswordEncoder:
    """A callable turning a password into the bytes stored for its user.

    Built by `make_encoder`. Calling it returns the encoded password as
    bytes (storable directly as a value's data, as encore 0.8 users do);
    `verify` checks a password against a stored record in constant time.

    With no hasher the encoding is ``b"pbkdf2_sha256$<iterations>$<hex>"``:
    PBKDF2-HMAC-SHA256 of the UTF-8 password with the encoder's salt. The
    iteration count is part of the record, so raising it later does not
    invalidate records made with the old count (`verify` reads it). With a
    hasher the encoding is ``hasher(salt + password)`` (a str result is
    encoded as UTF-8).
    """

    def __init__(
        self,
        salt: bytes,
        hasher: Callable[[bytes], str | bytes] | None,
        iterations: int,
        legacy_sha1: bool = True,
    ) -> None:
        self.salt = salt
        self.hasher = hasher
        self.iterations = iterations
        self.legacy_sha1 = legacy_sha1

    def __call__(self, password: str | bytes) -> bytes:
        """Encode ``password``; return the record as bytes.

        Raises
        ------
        TypeError
            If ``password`` is neither str nor bytes, or the hasher returns
            neither.
        """
        return self._encode(password, self.iterations)

    def _encode(self, password: str | bytes, iterations: int) -> bytes:
        secret = _as_bytes(password, "password")
        if self.hasher is not None:
            return _as_bytes(self.hasher(self.salt + secret), "hasher result")
        digest = hashlib.pbkdf2_hmac("sha256", secret, self.salt, iterations)
        return f"{_PBKDF2_TAG}${iterations}${digest.hex()}".encode("ascii")

    def verify(self, password: str | bytes, encoded: str | bytes) -> bool:
        """Whether ``password`` matches the stored record ``encoded``.

        Accepted records: what this encoder returns now (bytes); the same
        as text (what earlier versions of this library returned); and what
        encore 0.8 stored. With a hasher that is ``hasher(salt +
        password)``, raw or as hexadecimal text. With the default encoder
        it is also the raw SHA-1 digest of ``salt + password``, encore
        0.8's default, unless the encoder was made with
        ``legacy_sha1=False``; new records are always PBKDF2.

        Comparisons are constant-time, and the PBKDF2 work is done whatever
        the record looks like, so a malformed or legacy record cannot be
        told apart from a wrong password by timing.

        Raises
        ------
        TypeError
            If ``password`` is neither str nor bytes.
        """
        stored = _as_bytes(encoded, "encoded")
        if self.hasher is not None:
            return _record_matches(self._encode(password, self.iterations), stored)
        iterations = self.iterations
        parts = stored.strip().split(b"$")
        if (
            len(parts) == 3
            and parts[0] == _PBKDF2_TAG.encode()
            and (parts[1].isdigit() and 0 < int(parts[1]) <= 10 * DEFAULT_ITERATIONS)
        ):
            iterations = int(parts[1])
        candidate = self._encode(password, iterations)
        matched = hmac.compare_digest(candidate, stored.strip())
        if self.legacy_sha1:
            legacy = hashlib.sha1(self.salt + _as_bytes(password, "password")).digest()
            matched |= _record_matches(legacy, stored)
        return matched

    def __repr__(self) -> str:
        scheme = (
            f"hasher={getattr(self.hasher, '__name__', self.hasher)!r}"
            if self.hasher is not None
            else f"pbkdf2_sha256, iterations={self.iterations}"
        )
        # Never show the salt: the documentation asks to keep it secret.
        return f"<PasswordEncoder {scheme}>"


def make_encoder(
    salt: str | bytes,
    hasher: Callable[[bytes], str | bytes] | None = None,
    iterations: int = DEFAULT_ITERATIONS,
    legacy_sha1: bool = True,
) -> PasswordEncoder:
    """Create a salted password encoder.

    Parameters
    ----------
    salt : bytes or str
        Secret salt mixed into every password; the same salt must be used
        every time, or stored records stop matching.
    hasher : callable, optional
        ``hasher(salt + password_bytes)`` returns the record (bytes, or a
        str stored as UTF-8). The default (None) is PBKDF2-HMAC-SHA256 with
        ``iterations`` rounds, a slow key derivation; pass `sha1_hasher`
        only to write records the way older versions did.
    iterations : int
        PBKDF2 rounds for the default encoder (ignored with a hasher).
    legacy_sha1 : bool
        Whether the default encoder's ``verify`` also accepts the records
        encore 0.8's default wrote (SHA-1 of salt and password), so its
        users keep logging in. Turn it off once every record is PBKDF2.

    Returns
    -------
    encoder : PasswordEncoder
        ``encoder(password)`` returns bytes; ``encoder.verify(password,
        stored)`` compares in constant time.

    Raises
    ------
    ValueError
        If ``salt`` is empty or ``iterations`` is not positive.
    TypeError
        If ``salt`` is neither str nor bytes, or ``hasher`` is not callable.
    """
    salt_bytes = _as_bytes(salt, "salt")
    if not salt_bytes:
        raise ValueError("salt must not be empty")
    if hasher is not None and not callable(hasher):
        raise TypeError("hasher must be callable")
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, not {iterations!r}")
    return PasswordEncoder(salt_bytes, hasher, iterations, bool(legacy_sha1))


def verify_password(
    encoder: Callable[[str], str | bytes], password: str, stored: str | bytes
) -> bool:
    """Check ``password`` against a stored record in constant time.

    Uses ``encoder.verify`` when the encoder has one (as `PasswordEncoder`
    does); any other callable is called and its result compared with the
    record in the forms `PasswordEncoder.verify` accepts for a hasher
    (exact, whitespace-stripped, or its hexadecimal text, so a record
    written when `sha1_hasher` returned hex still matches).

    Raises
    ------
    TypeError
        If the encoder's result is neither str nor bytes.
    """
    verify = getattr(encoder, "verify", None)
    if callable(verify):
        return bool(verify(password, stored))
    candidate = _as_bytes(encoder(password), "encoder result")
    return _record_matches(candidate, _as_bytes(stored, "stored"))
