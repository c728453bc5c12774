"""The receiver's per-epoch sequence bookkeeping (encore_client.wire.sequence)."""

import random

import pytest

from encore_client.wire.sequence import Gap, Lost, SequenceTracker

A = b"a" * 16
B = b"b" * 16


def test_in_order_events_are_delivered_at_once():
    tracker = SequenceTracker()
    assert [tracker.receive(A, seq, f"a{seq}") for seq in (1, 2, 3)] == [
        ["a1"],
        ["a2"],
        ["a3"],
    ]
    assert tracker.gaps() == [] and tracker.held == 0
    assert tracker.next_seq(A) == 4


def test_a_first_event_starts_its_epoch_unless_new_epochs_start_at_one():
    tracker = SequenceTracker()
    assert tracker.receive(A, 40, "x") == ["x"]  # joined while A ran
    tracker.new_epochs_start_at_one = True
    assert tracker.receive(B, 3, "b3") == []  # B is new: 1 and 2 are missing
    assert tracker.gaps() == [Gap(B, 1, 2)]


def test_a_gap_holds_later_events_until_the_replay_fills_it():
    tracker = SequenceTracker()
    tracker.receive(A, 1, 1)
    assert tracker.receive(A, 4, 4) == []
    assert tracker.receive(A, 5, 5) == []
    assert tracker.gaps() == [Gap(A, 2, 3)]  # up to what is held
    assert tracker.held == 2
    # The replay brings 2..5; 4 and 5 are held already.
    assert tracker.receive(A, 2, 2) == [2]
    assert tracker.receive(A, 3, 3) == [3, 4, 5]
    assert tracker.receive(A, 4, 4) == [] and tracker.receive(A, 5, 5) == []
    assert tracker.duplicates == 2 and tracker.held == 0 and tracker.gaps() == []


def test_epochs_are_independent():
    tracker = SequenceTracker()
    tracker.receive(A, 1, "a1")
    tracker.receive(B, 1, "b1")
    assert tracker.receive(A, 3, "a3") == []
    assert tracker.receive(B, 2, "b2") == ["b2"]  # A's gap does not hold B
    assert tracker.gaps() == [Gap(A, 2, 2)]


def test_a_heartbeat_reveals_a_lost_tail():
    tracker = SequenceTracker()
    tracker.receive(A, 1, 1)
    tracker.announce(A, 3)  # 2 and 3 were published, none arrived
    assert tracker.gaps() == [Gap(A, 2, 3)]
    tracker.announce(B, 9)  # never heard of B: not ours to miss
    assert tracker.gaps() == [Gap(A, 2, 3)]


def test_giving_up_marks_the_loss_in_order_and_releases_what_waited():
    tracker = SequenceTracker()
    tracker.receive(A, 1, 1)
    tracker.receive(A, 5, 5)
    tracker.receive(A, 6, 6)
    out = tracker.give_up(A, 4)
    assert out == [Lost(A, 2, 4), 5, 6]
    assert out[0].count == 3
    assert tracker.next_seq(A) == 7 and tracker.gaps() == []
    # A replayed straggler of the lost range is a duplicate now.
    assert tracker.receive(A, 3, 3) == []


def test_giving_up_part_of_a_gap_leaves_the_rest_to_fill():
    tracker = SequenceTracker()
    tracker.receive(A, 1, 1)
    tracker.receive(A, 6, 6)
    # The daemon's buffer starts at 4: 2 and 3 are gone, 4 and 5 come.
    assert tracker.give_up(A, 3) == [Lost(A, 2, 3)]
    assert tracker.gaps() == [Gap(A, 4, 5)]
    assert tracker.receive(A, 4, 4) == [4]
    assert tracker.receive(A, 5, 5) == [5, 6]


def test_giving_up_what_was_delivered_is_nothing():
    tracker = SequenceTracker()
    tracker.receive(A, 1, 1)
    tracker.receive(A, 2, 2)
    assert tracker.give_up(A, 2) == []
    assert tracker.give_up(B, 2) == []


def test_held_events_inside_a_given_up_range_are_delivered_not_lost():
    tracker = SequenceTracker()
    tracker.receive(A, 1, 1)
    for seq in (3, 4, 7, 9):
        tracker.receive(A, seq, seq)
    assert tracker.give_up(A, 8) == [
        Lost(A, 2, 2),
        3,
        4,
        Lost(A, 5, 6),
        7,
        Lost(A, 8, 8),
        9,
    ]
    assert tracker.next_seq(A) == 10 and tracker.held == 0


def test_held_events_are_bounded_and_the_rest_is_left_to_the_replay():
    tracker = SequenceTracker(max_held=3)
    tracker.receive(A, 1, 1)
    for seq in (3, 4, 5):
        assert tracker.receive(A, seq, seq) == []
    # A fourth is not kept, but the gap reaches it: the replay brings it.
    assert tracker.receive(A, 7, 7) == []
    assert tracker.held == 3 and tracker.deferred == 1
    assert tracker.gaps() == [Gap(A, 2, 2)]
    assert tracker.receive(A, 2, 2) == [2, 3, 4, 5]
    assert tracker.gaps() == [Gap(A, 6, 7)]
    assert tracker.receive(A, 6, 6) == [6]
    assert tracker.receive(A, 7, 7) == [7]


def test_expect_sets_where_a_known_epoch_stands():
    tracker = SequenceTracker()
    tracker.new_epochs_start_at_one = True
    tracker.expect(A, 10)
    assert tracker.receive(A, 9, "old") == []  # before the join
    assert tracker.receive(A, 10, "x") == ["x"]
    tracker.expect(A, 3)  # a table older than what arrived changes nothing
    assert tracker.next_seq(A) == 11
    with pytest.raises(ValueError):
        tracker.expect(B, 0)


def test_epochs_are_bounded_and_the_least_recently_heard_go_first():
    tracker = SequenceTracker(max_epochs=4)
    epochs = [bytes([i]) * 16 for i in range(4)]
    for epoch in epochs:
        tracker.receive(epoch, 1, 1)
    tracker.receive(epochs[0], 2, 2)  # epoch 0 is the most recently heard
    tracker.receive(b"n" * 16, 1, 1)
    assert len(tracker) == 3
    assert tracker.next_seq(epochs[0]) == 3
    assert tracker.next_seq(epochs[1]) is None and tracker.next_seq(epochs[2]) is None


def test_an_epoch_with_a_gap_is_never_forgotten():
    tracker = SequenceTracker(max_epochs=2)
    tracker.receive(A, 1, 1)
    tracker.receive(A, 3, 3)  # a gap at 2
    tracker.receive(B, 1, 1)
    tracker.receive(b"c" * 16, 1, 1)
    assert tracker.next_seq(A) == 2 and tracker.gaps() == [Gap(A, 2, 2)]


def test_any_arrival_order_delivers_each_event_once_in_order():
    rng = random.Random(7)
    for _ in range(200):
        tracker = SequenceTracker()
        tracker.new_epochs_start_at_one = True
        arrivals = [(e, s) for e in (A, B) for s in range(1, 30)]
        rng.shuffle(arrivals)
        arrivals += rng.sample(arrivals, 10)  # duplicates
        delivered: dict[bytes, list[int]] = {A: [], B: []}
        for epoch, seq in arrivals:
            for item in tracker.receive(epoch, seq, seq):
                assert not isinstance(item, Lost)
                delivered[epoch].append(item)
        assert delivered == {A: list(range(1, 30)), B: list(range(1, 30))}
        assert tracker.held == 0 and tracker.gaps() == []


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        SequenceTracker(max_held=0)
    with pytest.raises(ValueError):
        SequenceTracker(max_epochs=0)
