"""The replay buffer."""

import pytest

from encored import EventLog


def fill(log, count):
    for seq in range(log.last_seq + 1, log.last_seq + count + 1):
        log.append(seq, b"h%d" % seq, b"a%d" % seq)


def test_empty_log():
    log = EventLog(3)
    assert (log.first_seq, log.last_seq) == (1, 0)
    assert log.fetch(1) == (1, [])


def test_fetch_within_capacity():
    log = EventLog(10)
    fill(log, 5)
    first, events = log.fetch(2, 4)
    assert first == 2
    assert events == [(2, b"h2", b"a2"), (3, b"h3", b"a3"), (4, b"h4", b"a4")]


def test_old_events_are_gone_and_fetch_says_from_where():
    log = EventLog(3)
    fill(log, 10)
    assert log.first_seq == 8
    first, events = log.fetch(2)
    assert first == 8
    assert [e[0] for e in events] == [8, 9, 10]


def test_limit_and_beyond_the_end():
    log = EventLog(100)
    fill(log, 50)
    first, events = log.fetch(10, 1000, limit=5)
    assert first == 10 and [e[0] for e in events] == [10, 11, 12, 13, 14]
    assert log.fetch(51) == (51, [])


def test_sequence_must_be_consecutive():
    log = EventLog(3)
    with pytest.raises(ValueError):
        log.append(2, b"", b"")
    with pytest.raises(ValueError):
        EventLog(0)
