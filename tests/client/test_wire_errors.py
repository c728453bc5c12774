"""The one error table of the wire (``encore_client.wire.errors``)."""

import pytest

from encore.storage.abstract_store import ReadOnlyStoreError, StoreError
from encore_client.wire.errors import (
    EncoreError,
    ErrorCode,
    ProtocolError,
    UnknownStoreError,
    error_from_reply,
)


def test_every_code_has_its_own_exception_type():
    for code in ErrorCode:
        exc = error_from_reply(int(code), "text")
        assert type(exc) is not EncoreError, code
        assert str(exc) == "text"


def test_store_codes_become_the_store_exceptions():
    assert isinstance(error_from_reply(461, "no store"), UnknownStoreError)
    assert isinstance(error_from_reply(461, "no store"), StoreError)
    assert type(error_from_reply(471, "read only")) is ReadOnlyStoreError
    assert type(error_from_reply(473, "disk full")) is OSError
    missing = error_from_reply(460, "no key 'a'")
    assert isinstance(missing, KeyError) and missing.code == 460


def test_unknown_codes_keep_their_number():
    exc = error_from_reply(499, "from a newer daemon")
    assert type(exc) is EncoreError and exc.code == 499


@pytest.mark.parametrize("code", [None, "460", 4.6e2, True])
def test_malformed_codes_are_protocol_errors(code):
    assert isinstance(error_from_reply(code, "x"), ProtocolError)
