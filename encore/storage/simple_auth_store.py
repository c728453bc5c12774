"""A wrapper store that authenticates its user with a password.

`SimpleAuthStore` wraps a store with no notion of users. `connect` takes a
username and password and checks ``encoder(password)`` against the user's
record, the data stored at ``user_key_path + username`` (in the wrapped
store, or in ``user_key_store`` when given). Authenticated users then have
the permissions `SimpleAuthStore.check_permissions` grants, all of them by
default; subclasses refine that per key.

Passwords: `make_encoder` builds the encoder. By default it derives the
record (bytes, storable directly as a value's data) with
PBKDF2-HMAC-SHA256 (600,000 rounds) from the password and a secret salt,
and compares in constant time; it also accepts the SHA-1 records encore
0.8 wrote (see docs/compat-0.8.md). `sha1_hasher` (the raw digest) stays
available, passed explicitly, to write records the old way. `add_user`
writes a record.

What the wrapper shows and hides:

- User records kept in the wrapped store are never readable, listable or
  writable through the wrapper: they do not exist as far as it is
  concerned (writing one raises ``AuthorizationError``).
- A wrong password and an unknown user raise the same
  ``AuthenticationError`` with the same message, after the same hashing
  work, so neither the answer nor its timing tells which it was.
- A key the user may not know about (no ``'exists'`` permission) looks
  missing: ``exists`` is False, reads raise ``KeyError``. A key the user
  may see but not read raises ``AuthorizationError``, as does any write
  without the ``'set'`` or ``'delete'`` permission.
- Calls before a successful `connect` raise ``AuthenticationError``.

The wrapper emits its own events (``source`` is the wrapper), progress of
long writes included, and runs its transactions inside the wrapped store's.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from encore.events.abstract_event_manager import BaseEventManager
from encore.storage._password import (
    DEFAULT_ITERATIONS,
    PasswordEncoder,
    make_encoder,
    sha1_hasher,
    verify_password,
)
from encore.storage._wrapping import (
    PassThroughTransactionContext,
    set_data_through,
    set_through,
)
from encore.storage.abstract_store import (
    AbstractReadOnlyStore,
    AbstractStore,
    AuthenticationError,
    AuthorizationError,
    Value,
    compile_glob,
)
from encore.storage.events import StoreDeleteEvent, StoreSetEvent, StoreUpdateEvent
from encore.storage.utils import DEFAULT_BUFFER_SIZE, check_metadata

__all__ = [
    "ALL_PERMISSIONS",
    "DEFAULT_ITERATIONS",
    "PasswordEncoder",
    "SimpleAuthStore",
    "add_user",
    "make_encoder",
    "sha1_hasher",
]

#: Every permission `SimpleAuthStore.check_permissions` may grant.
ALL_PERMISSIONS = frozenset({"connect", "exists", "get", "set", "delete"})

_BAD_CREDENTIALS = "invalid username or password"
# Stands in for the record of an unknown user, so that rejecting one costs
# the same hashing work as rejecting a wrong password.
_NO_RECORD = b"pbkdf2_sha256$0$no-such-user"


def add_user(
    user_key_store: AbstractStore,
    encoder: Callable[[str], str | bytes],
    username: str,
    password: str,
    user_key_path: str = ".user_",
) -> None:
    """Write (or replace) the record of ``username`` in ``user_key_store``.

    An administrative operation on the store that keeps the records (the
    wrapped store, unless the `SimpleAuthStore` has a separate
    ``user_key_store``), never through the wrapper.

    Raises
    ------
    ValueError
        If ``username`` is empty or ``password`` is not a str.
    """
    if not isinstance(username, str) or not username:
        raise ValueError("username must be a non-empty str")
    if not isinstance(password, str):
        raise ValueError("password must be a str")
    record = encoder(password)
    if isinstance(record, str):
        record = record.encode("utf-8")
    user_key_store.set(user_key_path + username, (io.BytesIO(record), {}))


class SimpleAuthStore(AbstractStore):
    """A key-value store that wraps another and authenticates its user.

    Parameters
    ----------
    store : AbstractStore
        The wrapped store that holds the data.
    encoder : callable
        Turns a password into its record (see `make_encoder`); an encoder
        with a ``verify(password, record)`` method is checked with it.
    user_key_path : str
        Prefix of the keys that hold the user records.
    user_key_store : AbstractStore, optional
        The store holding the user records; the wrapped store by default.
    event_manager : BaseEventManager, optional
        Where the wrapper's events go; the process-wide manager by default.

    Raises
    ------
    TypeError
        If ``store`` or ``user_key_store`` is not a store, or ``encoder`` is
        not callable.
    ValueError
        If ``user_key_path`` is empty while the records share the wrapped
        store (every key would be a user record).
    """

    _transaction_context_class = PassThroughTransactionContext

    def __init__(
        self,
        store: AbstractStore,
        encoder: Callable[[str], str | bytes],
        user_key_path: str = ".user_",
        user_key_store: AbstractReadOnlyStore | None = None,
        event_manager: BaseEventManager | None = None,
    ) -> None:
        for inner in (store, user_key_store):
            if inner is not None and not isinstance(inner, AbstractReadOnlyStore):
                raise TypeError(f"not a store: {inner!r}")
        if not callable(encoder):
            raise TypeError("encoder must be callable")
        shared = user_key_store is None or user_key_store is store
        if shared and not user_key_path:
            raise ValueError(
                "user_key_path must not be empty when the user records live "
                "in the wrapped store"
            )
        super().__init__(event_manager=event_manager)
        self.store = store
        self.encoder = encoder
        self.user_key_path = user_key_path
        self.user_key_store = store if user_key_store is None else user_key_store
        self._records_hidden = shared
        self._username: str | None = None
        self._connected_here: list[AbstractReadOnlyStore] = []

    # -- authentication -------------------------------------------------------

    @property
    def username(self) -> str | None:
        """The authenticated user, or None before a successful `connect`."""
        return self._username

    def connect(self, credentials: dict[str, str] | None = None) -> None:
        """Authenticate ``credentials['username']`` with ``['password']``.

        Connects the wrapped store (and the user store) first if needed.

        Raises
        ------
        AuthenticationError
            If the credentials are missing, the user unknown or the password
            wrong (one message for all, see the module docstring).
        AuthorizationError
            If the authenticated user lacks the ``'connect'`` permission.
        ValueError
            If ``credentials`` is not a dict of str ``username``/``password``.
        """
        if credentials is None:
            raise AuthenticationError("credentials are required: username, password")
        try:
            username, password = credentials["username"], credentials["password"]
        except (KeyError, TypeError):
            raise ValueError(
                "credentials must be a dict with 'username' and 'password'"
            ) from None
        if not isinstance(username, str) or not isinstance(password, str):
            raise ValueError("username and password must be str")
        self.disconnect()
        connected: list[AbstractReadOnlyStore] = []
        try:
            for inner in (self.store, self.user_key_store):
                if inner not in connected and not inner.is_connected():
                    inner.connect()
                    connected.append(inner)
            record = self._record(username)
            valid = verify_password(
                self.encoder, password, _NO_RECORD if record is None else record
            )
            if record is None or not valid:
                raise AuthenticationError(_BAD_CREDENTIALS)
            self._username = username
            if "connect" not in self.check_permissions(None):
                self._username = None
                raise AuthorizationError(f"user {username!r} may not connect")
        except BaseException:
            self._username = None
            for inner in connected:
                inner.disconnect()
            raise
        self._connected_here = connected

    def _record(self, username: str) -> bytes | None:
        if not username:
            return None
        try:
            return self.user_key_store.to_bytes(self.user_key_path + username)
        except KeyError:
            return None

    def disconnect(self) -> None:
        """Forget the user; disconnect the stores `connect` connected."""
        self._username = None
        connected, self._connected_here = self._connected_here, []
        for inner in connected:
            inner.disconnect()

    def is_connected(self) -> bool:
        """Whether a user is authenticated and the wrapped store connected."""
        return self._username is not None and self.store.is_connected()

    def info(self) -> dict[str, Any]:
        """Describe the wrapper (never the records or the encoder's salt)."""
        return {
            "type": "simple_auth",
            "user": self._username,
            "user_key_path": self.user_key_path,
            "store": self.store.info() if hasattr(self.store, "info") else None,
        }

    def _transaction_stores(self) -> list[Any]:
        return [self.store]

    # -- permissions --------------------------------------------------------------

    def check_permissions(self, key: str | None = None) -> set[str]:
        """Return the permissions the user has for ``key`` (None: global).

        The default gives an authenticated user every permission on every
        key, and nobody anything before `connect`. Subclasses override this
        for finer control; user records stay hidden whatever it returns.

        Returns
        -------
        permissions : set of str
            A subset of ``{'connect', 'exists', 'get', 'set', 'delete'}``.
        """
        if self._username is None:
            return set()
        return set(ALL_PERMISSIONS)

    def _is_record(self, key: str) -> bool:
        if not isinstance(key, str):
            raise TypeError(f"keys are str, not {type(key).__name__}")
        return self._records_hidden and key.startswith(self.user_key_path)

    def _permissions(self, key: str) -> set[str]:
        if self._username is None:
            raise AuthenticationError(
                "not connected: call connect() with a username and password"
            )
        if self._is_record(key):
            return set()
        return self.check_permissions(key)

    def _check_read(self, key: str, need: str = "get") -> None:
        permissions = self._permissions(key)
        if "exists" not in permissions:
            # Indistinguishable from a missing key: that is all the user
            # may know.
            raise KeyError(key)
        if need not in permissions:
            if not self.store.exists(key):
                raise KeyError(key)
            raise AuthorizationError(f"user {self._username!r} may not {need} {key!r}")

    def _check_write(self, key: str, need: str) -> None:
        if self._username is None:
            self._permissions(key)
        if self._is_record(key):
            raise AuthorizationError(
                f"{key!r} is reserved for user records (prefix "
                f"{self.user_key_path!r}) and cannot be written through the store"
            )
        if need not in self.check_permissions(key):
            raise AuthorizationError(f"user {self._username!r} may not {need} {key!r}")

    def _visible(self, key: str, needs: Iterable[str]) -> bool:
        if self._is_record(key):
            return False
        return set(needs) <= self.check_permissions(key)

    # -- reads ----------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists for this user (False without ``'exists'``).

        Raises
        ------
        AuthenticationError
            If no user is connected.
        """
        if "exists" not in self._permissions(key):
            return False
        return self.store.exists(key)

    def get(self, key: str) -> Value:
        """Return the value of ``key``.

        Raises
        ------
        KeyError
            If the key is missing or unknown to the user.
        AuthorizationError
            If the user may see the key but not read it.
        """
        self._check_read(key)
        return self.store.get(key)

    def get_data(self, key: str) -> Any:
        """Return a stream of ``key``'s data (errors as `get`)."""
        self._check_read(key)
        return self.store.get_data(key)

    def get_metadata(self, key: str, select: Iterable[str] | None = None) -> dict:
        """Return ``key``'s metadata (errors as `get`)."""
        self._check_read(key)
        return self.store.get_metadata(key, select)

    def query(
        self, select: Iterable[str] | None = None, **kwargs: Any
    ) -> list[tuple[str, dict]]:
        """Return ``(key, metadata)`` for the keys the user may read.

        Raises
        ------
        AuthenticationError
            If no user is connected.
        """
        if self._username is None:
            self._permissions("")
        return [
            (key, metadata)
            for key, metadata in self.store.query(select, **kwargs)
            if self._visible(key, ("exists", "get"))
        ]

    def query_keys(self, **kwargs: Any) -> list[str]:
        """Return the keys matching ``kwargs`` that the user may see.

        Matching on metadata needs the ``'get'`` permission (the match would
        reveal the metadata); listing everything needs only ``'exists'``.
        """
        if self._username is None:
            self._permissions("")
        needs = ("exists", "get") if kwargs else ("exists",)
        return [
            key for key in self.store.query_keys(**kwargs) if self._visible(key, needs)
        ]

    def glob(self, pattern: str) -> list[str]:
        """Return the keys matching ``pattern`` that the user may see."""
        if self._username is None:
            self._permissions("")
        match = compile_glob(pattern)
        return [
            key
            for key in self.store.glob(pattern)
            if match(key) and self._visible(key, ("exists",))
        ]

    # -- writes -----------------------------------------------------------------------

    def set(self, key: str, value: Any, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        """Store ``value`` at ``key`` (needs ``'set'``).

        Raises
        ------
        AuthorizationError
            Without the ``'set'`` permission, or for a user record key.
        ValueError
            If the metadata is not JSON-representable (nothing is written).
        """
        self._check_write(key, "set")
        set_through(self, self.store, key, key, value, buffer_size)

    def set_data(
        self, key: str, data: Any, buffer_size: int = DEFAULT_BUFFER_SIZE
    ) -> None:
        """Replace ``key``'s data (needs ``'set'``; errors as `set`)."""
        self._check_write(key, "set")
        set_data_through(
            self, self.store, key, key, data, buffer_size, self.store.get_metadata
        )

    def set_metadata(self, key: str, metadata: dict) -> None:
        """Replace ``key``'s metadata (needs ``'set'``; errors as `set`)."""
        self._check_write(key, "set")
        metadata = check_metadata(metadata)
        self.store.set_metadata(key, metadata)
        self._emit([StoreSetEvent(source=self, key=key, metadata=dict(metadata))])

    def update_metadata(self, key: str, metadata: dict) -> None:
        """Merge ``metadata`` into ``key``'s metadata (needs ``'set'``).

        Raises
        ------
        KeyError
            If the key does not exist.
        AuthorizationError
            Without the ``'set'`` permission, or for a user record key.
        """
        self._check_write(key, "set")
        metadata = check_metadata(metadata)
        with self._lock:
            self.store.update_metadata(key, metadata)
            merged = self.store.get_metadata(key)
        self._emit([StoreUpdateEvent(source=self, key=key, metadata=merged)])

    def delete(self, key: str) -> None:
        """Delete ``key`` (needs ``'delete'``).

        Raises
        ------
        KeyError
            If the key does not exist.
        AuthorizationError
            Without the ``'delete'`` permission, or for a user record key.
        """
        self._check_write(key, "delete")
        with self._lock:
            metadata = self.store.get_metadata(key)
            self.store.delete(key)
        self._emit([StoreDeleteEvent(source=self, key=key, metadata=metadata)])
