"""The daemon's replay buffer by emitter epoch (encored._epoch_log)."""

import pytest

from encored._epoch_log import EpochLog

A = b"a" * 16
B = b"b" * 16


def frames(epoch: bytes, seq: int) -> tuple[bytes, bytes]:
    return (epoch[:1] + b"h%d" % seq, b"attrs%d" % seq)


def fill(log: EpochLog, epoch: bytes, seqs) -> None:
    for seq in seqs:
        assert log.append(epoch, seq, *frames(epoch, seq))


def test_fetch_returns_the_range_in_order():
    log = EpochLog(100)
    fill(log, A, range(1, 11))
    fill(log, B, range(1, 4))
    first, events = log.fetch(A, 3, 5)
    assert first == 3
    assert events == [(seq, *frames(A, seq)) for seq in (3, 4, 5)]
    assert log.last_seq(A) == 10 and log.last_seq(B) == 3 and len(log) == 13


def test_the_oldest_events_of_all_epochs_go_first():
    log = EpochLog(4)
    fill(log, A, (1, 2))
    fill(log, B, (1, 2, 3))
    assert len(log) == 4
    first, events = log.fetch(A, 1, 2)
    assert first == 2 and [e[0] for e in events] == [2]
    assert log.last_seq(A) == 2  # numbers outlive the events


def test_nothing_held_of_a_range_says_where_it_ends():
    log = EpochLog(10)
    assert log.fetch(A, 1, 5) == (6, [])
    fill(log, A, (1, 2))
    assert log.fetch(A, 3, 9) == (3, [])  # beyond what was seen


def test_limit_cuts_a_fetch():
    log = EpochLog(100)
    fill(log, A, range(1, 51))
    first, events = log.fetch(A, 1, 50, limit=7)
    assert first == 1 and [e[0] for e in events] == list(range(1, 8))


def test_duplicates_are_refused_and_skipped_numbers_can_come_later():
    log = EpochLog(100)
    fill(log, A, (1, 2, 5))  # 3 and 4 were lost on a dead connection
    assert not log.append(A, 2, *frames(A, 2))
    assert log.fetch(A, 1, 5)[1][2][0] == 5
    assert log.append(A, 3, *frames(A, 3))  # the emitter sent it again
    assert [e[0] for e in log.fetch(A, 1, 5)[1]] == [1, 2, 3, 5]
    assert log.appended == 4


def test_an_evicted_number_is_not_taken_again():
    log = EpochLog(2)
    fill(log, A, (1, 2, 3))
    assert not log.append(A, 1, *frames(A, 1))


def test_note_records_where_an_emitter_stands():
    log = EpochLog(10)
    log.note(A, 41)
    assert log.last_seq(A) == 41
    # What the emitter sends again after a restart is taken all the same.
    assert log.append(A, 40, *frames(A, 40))
    assert log.fetch(A, 40, 40)[1] == [(40, *frames(A, 40))]
    fill(log, A, (42,))
    log.note(A, 7)  # older news changes nothing
    assert log.last_seq(A) == 42
    assert log.recent(5) == [(A, 42)]


def test_recent_lists_the_most_recently_heard_epochs():
    log = EpochLog(10)
    fill(log, A, (1,))
    fill(log, B, (1, 2))
    fill(log, A, (2, 3))
    assert log.recent(1) == [(A, 3)]
    assert log.recent(5) == [(B, 2), (A, 3)]


def test_epochs_without_events_are_forgotten_beyond_the_bound():
    log = EpochLog(2, max_epochs=4)
    for i in range(10):
        epoch = bytes([i]) * 16
        log.note(epoch, 5)
    assert len(log._epochs) <= 5
    assert log.last_seq(bytes([9]) * 16) == 5  # the newest stay


def test_epochs_holding_events_stay():
    log = EpochLog(3, max_epochs=2)
    fill(log, A, (1,))
    fill(log, B, (1,))
    fill(log, b"c" * 16, (1,))
    assert log.last_seq(A) == 1 and log.fetch(A, 1, 1)[1]
    fill(log, b"d" * 16, (1,))  # evicts A's event; the epochs still stay
    assert log.fetch(A, 1, 1) == (2, [])


def test_bounds_must_be_positive():
    with pytest.raises(ValueError):
        EpochLog(0)
    with pytest.raises(ValueError):
        EpochLog(1, max_epochs=0)
