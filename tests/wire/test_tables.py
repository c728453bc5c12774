"""The wire package's tables are the whole truth: the daemon's agree with them.

The daemon's operation table (bus operations and the store service's)
must hold exactly the operation names of ``encore_client.wire.operations``,
and every error code must map to an exception.
"""

from encore_client.wire import errors, limits, operations, topics
from encored._handlers import BUS_OPERATIONS, merge_tables
from encored.stores.operations import StoreService


class _NoStores:
    stores: dict = {}
    watchers: dict = {}


def test_the_daemons_operation_table_is_the_wires():
    service = StoreService(_NoStores(), workers=1)
    try:
        table = merge_tables(BUS_OPERATIONS, service.operations())
    finally:
        service.close()
    assert set(BUS_OPERATIONS) == set(operations.BUS_OPS)
    assert set(service.operations()) == set(operations.STORE_OPS)
    assert set(table) == operations.OPERATIONS
    assert len(operations.OPERATIONS) == len(operations.BUS_OPS) + len(
        operations.STORE_OPS
    )


def test_every_error_code_becomes_an_exception_of_its_own_table_entry():
    for code in errors.ErrorCode:
        exc = errors.error_from_reply(int(code), "m")
        assert type(exc) is errors.ERROR_TYPES[code], code
        assert type(exc) is not errors.EncoreError, code
    assert set(errors.ERROR_TYPES) == set(errors.ErrorCode)
    unknown = errors.error_from_reply(499, "m")
    assert type(unknown) is errors.EncoreError and unknown.code == 499


def test_limits_agree_with_the_topics_they_bound():
    longest = topics.event_topic(topics.DAEMON_TAG, "a" * limits.MAX_NAME_LENGTH)
    assert len(longest) == limits.MAX_SUBSCRIPTION
    assert topics.valid_subscription(longest)
    assert not topics.valid_subscription(longest + b"a")
    assert limits.MAX_FRAMES == 1 + 2 * limits.MAX_PACKED_EVENTS
    assert limits.MIN_CHUNK <= limits.ENVELOPE_DATA < limits.INLINE_LIMIT
    assert limits.INLINE_LIMIT < limits.CHUNK_SIZE <= limits.MAX_CLIENT_CHUNK
    assert limits.MAX_CLIENT_CHUNK <= limits.MAX_CHUNK
