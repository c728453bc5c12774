"""Every error code of the wire, with the exception a client raises for it.

One table for the whole protocol: the daemon answers with a code of
:class:`ErrorCode`, and :func:`error_from_reply` turns it back into the
exception the caller would have seen from a local store.  Nothing is
registered at import time, so the table is the same in every process.
"""

from __future__ import annotations

__all__ = [
    "ErrorCode",
    "EncoreError",
    "ProtocolError",
    "RequestTooLargeError",
    "UnknownOperationError",
    "ServerError",
    "DaemonUnavailableError",
    "UnknownStoreError",
    "TransferError",
    "ERROR_TYPES",
    "error_from_reply",
]

import enum

from encore.storage.abstract_store import (
    AuthenticationError,
    AuthorizationError,
    ReadOnlyStoreError,
    StoreError,
)


class ErrorCode(enum.IntEnum):
    """Numeric error codes carried in an error reply.

    400-422 say the request was wrong, 5xx that the daemon failed, and
    401, 403 and 460-475 come from store calls, one per store exception.
    """

    BAD_MESSAGE = 400
    AUTHENTICATION = 401
    AUTHORIZATION = 403
    UNKNOWN_OPERATION = 404
    TOO_LARGE = 413
    BAD_ARGUMENT = 422
    KEY_NOT_FOUND = 460
    NO_SUCH_STORE = 461
    STORE_ERROR = 470
    READ_ONLY = 471
    WRONG_TYPE = 472
    OS_ERROR = 473
    NOT_IMPLEMENTED = 474
    TRANSFER = 475
    INTERNAL = 500
    UNAVAILABLE = 503
    UNSUPPORTED_VERSION = 505


class EncoreError(Exception):
    """Base class of the errors a daemon reply can turn into.

    ``code`` is the numeric :class:`ErrorCode` (or a plain ``int`` for codes
    this client does not know) and ``message`` the daemon's text.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ProtocolError(EncoreError, ValueError):
    """A message did not follow the protocol (either direction)."""


class RequestTooLargeError(ProtocolError):
    """The request was larger than the daemon accepts."""


class UnknownOperationError(ProtocolError):
    """The daemon does not implement the requested operation."""


class ServerError(EncoreError, RuntimeError):
    """The daemon failed while handling a valid request (see its log)."""


class DaemonUnavailableError(EncoreError, TimeoutError):
    """No daemon answered within the timeout.

    Raised by clients after their retries are exhausted: either no
    ``encored`` runs on the runtime directory, or it is too busy to answer.
    """


class UnknownStoreError(EncoreError, StoreError):
    """The daemon hosts no store of that name."""


class TransferError(EncoreError, StoreError):
    """A chunked transfer is unknown to the daemon (expired, or the daemon
    restarted) or was abandoned."""


class _ArgumentError(EncoreError, ValueError):
    """The daemon rejected an argument of the request."""


class _KeyNotFound(EncoreError, KeyError):
    """The requested key does not exist (a ``KeyError``)."""

    def __str__(self) -> str:  # KeyError's repr-quoting makes messages ugly
        return self.message


#: The exception each code becomes.  Types outside :class:`EncoreError` are
#: the store's own (``OSError``, ``TypeError``...), built from the message
#: alone, so that code written against a local store catches them unchanged.
ERROR_TYPES: dict[int, type[Exception]] = {
    ErrorCode.BAD_MESSAGE: ProtocolError,
    ErrorCode.AUTHENTICATION: AuthenticationError,
    ErrorCode.AUTHORIZATION: AuthorizationError,
    ErrorCode.UNKNOWN_OPERATION: UnknownOperationError,
    ErrorCode.TOO_LARGE: RequestTooLargeError,
    ErrorCode.BAD_ARGUMENT: _ArgumentError,
    ErrorCode.KEY_NOT_FOUND: _KeyNotFound,
    ErrorCode.NO_SUCH_STORE: UnknownStoreError,
    ErrorCode.STORE_ERROR: StoreError,
    ErrorCode.READ_ONLY: ReadOnlyStoreError,
    ErrorCode.WRONG_TYPE: TypeError,
    ErrorCode.OS_ERROR: OSError,
    ErrorCode.NOT_IMPLEMENTED: NotImplementedError,
    ErrorCode.TRANSFER: TransferError,
    ErrorCode.INTERNAL: ServerError,
    ErrorCode.UNAVAILABLE: ServerError,
    ErrorCode.UNSUPPORTED_VERSION: ProtocolError,
}


def error_from_reply(code: object, message: object) -> Exception:
    """Build the exception a client raises for an error reply.

    Unknown codes become :class:`EncoreError`; a malformed code or message is
    itself reported as a :class:`ProtocolError`.
    """
    if (
        not isinstance(code, int)
        or isinstance(code, bool)
        or not isinstance(message, str)
    ):
        return ProtocolError(f"malformed error reply: code={code!r}")
    exc_type = ERROR_TYPES.get(code)
    if exc_type is None:
        return EncoreError(message, code)
    if issubclass(exc_type, EncoreError):
        return exc_type(message, code)
    return exc_type(message)
