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


def sha1_hasher(s: str | bytes) -> str:
    """Return the hexadecimal SHA-1 digest of ``s`` (UTF-8 if a str).

    Kept for compatibility with hashes made by older versions: SHA-1 is fast,
    so a stolen table of such hashes is cheap to attack. New code should use
    the default of `make_encoder`, a slow salted key derivation.

    Raises
    ------
    TypeError
        If ``s`` is neither str nor bytes.
    """
    return hashlib.sha1(_as_bytes(s, "s")).hexdigest()


class PasswordEncoder:
    """A callable turning a password into the text stored for its user.

    Built by `make_encoder`. Calling it returns the encoded password (a str);
    `verify` checks a password against a stored encoding in constant time.

    With no hasher the encoding is ``pbkdf2_sha256$<iterations>$<hex>``:
    PBKDF2-HMAC-SHA256 of the UTF-8 password with the encoder's salt. The
    iteration count is part of the text, so raising it later does not
    invalidate stored hashes made with the old count (`verify` reads it).
    With a hasher the encoding is ``hasher(salt + password)``.
    """

    def __init__(
        self,
        salt: bytes,
        hasher: Callable[[bytes], str | bytes] | None,
        iterations: int,
    ) -> None:
        self.salt = salt
        self.hasher = hasher
        self.iterations = iterations

    def __call__(self, password: str | bytes) -> str:
        """Encode ``password``.

        Raises
        ------
        TypeError
            If ``password`` is neither str nor bytes.
        """
        return self._encode(password, self.iterations)

    def _encode(self, password: str | bytes, iterations: int) -> str:
        secret = _as_bytes(password, "password")
        if self.hasher is not None:
            result = self.hasher(self.salt + secret)
            return result.decode("ascii") if isinstance(result, bytes) else result
        digest = hashlib.pbkdf2_hmac("sha256", secret, self.salt, iterations)
        return f"{_PBKDF2_TAG}${iterations}${digest.hex()}"

    def verify(self, password: str | bytes, encoded: str | bytes) -> bool:
        """Whether ``password`` encodes to ``encoded``, compared in constant time.

        An ``encoded`` that is not a well-formed encoding simply does not
        match (after the same amount of hashing work), so a corrupt user
        record cannot be told apart from a wrong password by timing.

        Raises
        ------
        TypeError
            If ``password`` is neither str nor bytes.
        """
        stored = _as_bytes(encoded, "encoded").strip()
        iterations = self.iterations
        if self.hasher is None:
            parts = stored.split(b"$")
            if (
                len(parts) == 3
                and parts[0] == _PBKDF2_TAG.encode()
                and (
                    parts[1].isdigit() and 0 < int(parts[1]) <= 10 * DEFAULT_ITERATIONS
                )
            ):
                iterations = int(parts[1])
        candidate = self._encode(password, iterations).encode("utf-8")
        return hmac.compare_digest(candidate, stored)

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
) -> PasswordEncoder:
    """Create a salted password encoder.

    Parameters
    ----------
    salt : bytes or str
        Secret salt mixed into every password; the same salt must be used
        every time, or stored encodings stop matching.
    hasher : callable, optional
        ``hasher(salt + password_bytes)`` returns the encoding. The default
        (None) is PBKDF2-HMAC-SHA256 with ``iterations`` rounds, a slow key
        derivation; pass `sha1_hasher` only to read hashes made by older
        versions.
    iterations : int
        PBKDF2 rounds for the default encoder (ignored with a hasher).

    Returns
    -------
    encoder : PasswordEncoder
        ``encoder(password)`` returns a str; ``encoder.verify(password,
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
    return PasswordEncoder(salt_bytes, hasher, iterations)


def verify_password(
    encoder: Callable[[str], str | bytes], password: str, stored: str | bytes
) -> bool:
    """Check ``password`` against a stored encoding in constant time.

    Uses ``encoder.verify`` when the encoder has one (as `PasswordEncoder`
    does); any other callable is called and its result compared with
    `hmac.compare_digest`, surrounding whitespace of the stored text ignored
    (a user record written by hand often ends in a newline).

    Raises
    ------
    TypeError
        If the encoder's result is neither str nor bytes.
    """
    verify = getattr(encoder, "verify", None)
    if callable(verify):
        return bool(verify(password, stored))
    candidate = _as_bytes(encoder(password), "encoder result").strip()
    return hmac.compare_digest(candidate, _as_bytes(stored, "stored").strip())
