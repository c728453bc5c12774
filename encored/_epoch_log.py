"""The daemon's bounded buffer of recent events, by emitter epoch.

Protocol 4 numbers events per emitter (an *epoch*: a random 16-byte id of
one bridge or daemon run, see ``encore_client.wire.sequence``).  The
daemon sees every forwarded event once more, off the hot path, and keeps
the most recent ``capacity`` of them, over all epochs, for receivers that
missed some to fetch again.  It also remembers the last number of each
recently active epoch, so that a receiver joining the bus learns where
every emitter stands, and a heartbeat can say what was published lately.

Not thread-safe: only the daemon's I/O thread uses it.
"""

from __future__ import annotations

__all__ = ["EpochLog"]

import collections


class _Epoch:
    """One epoch's held events and the last number seen."""

    __slots__ = ("events", "last_seq", "touched", "evicted")

    def __init__(self) -> None:
        self.events: dict[int, tuple[bytes, bytes]] = {}
        self.last_seq = 0
        self.touched = 0
        #: The highest number pushed out of the buffer (never taken again).
        self.evicted = 0


class EpochLog:
    """Keep the last ``capacity`` events, by epoch and sequence number.

    Each entry is the pair of frames ``(header, attributes)`` exactly as
    forwarded.  About ``max_epochs`` epochs are remembered: beyond that the
    least recently heard half of those holding no events is forgotten.
    """

    def __init__(self, capacity: int, max_epochs: int = 4096) -> None:
        if capacity < 1 or max_epochs < 1:
            raise ValueError("capacity and max_epochs must be at least 1")
        self.capacity = capacity
        self.max_epochs = max_epochs
        self._epochs: dict[bytes, _Epoch] = {}
        #: (epoch, seq) of every held event, oldest first.
        self._order: collections.deque[tuple[bytes, int]] = collections.deque()
        self._tick = 0
        #: Events appended in all (duplicates not counted).
        self.appended = 0

    def __len__(self) -> int:
        return len(self._order)

    @property
    def epoch_count(self) -> int:
        """How many epochs are remembered."""
        return len(self._epochs)

    def append(self, epoch: bytes, seq: int, header: bytes, attributes: bytes) -> bool:
        """Record event ``seq`` of ``epoch``; False if it was seen before.

        Numbers may skip (the daemon missed what a dead connection held):
        the skipped ones are simply not here to fetch.
        """
        entry = self._touch(epoch)
        # A number above the last seen, or one skipped so far (an emitter
        # sending again to a restarted daemon what it had noted), is new.
        if seq in entry.events or seq <= entry.evicted:
            return False
        entry.events[seq] = (header, attributes)
        if seq > entry.last_seq:
            entry.last_seq = seq
        self._order.append((epoch, seq))
        self.appended += 1
        if len(self._order) > self.capacity:
            old_epoch, old_seq = self._order.popleft()
            old = self._epochs[old_epoch]
            old.events.pop(old_seq, None)
            if old_seq > old.evicted:
                old.evicted = old_seq
        return True

    def last_seq(self, epoch: bytes) -> int:
        """The highest number seen of ``epoch`` (0: none remembered)."""
        entry = self._epochs.get(epoch)
        return 0 if entry is None else entry.last_seq

    def note(self, epoch: bytes, last_seq: int) -> None:
        """Remember that ``epoch`` stands at ``last_seq`` (an emitter's hello).

        After a daemon restart the new log knows no epoch; an emitter says
        where it stands when it joins, so that receivers joining later do
        not take its next event for a gap.
        """
        entry = self._touch(epoch)
        if last_seq > entry.last_seq:
            entry.last_seq = last_seq

    def fetch(
        self, epoch: bytes, first: int, last: int, limit: int = 1000
    ) -> tuple[int, list[tuple[int, bytes, bytes]]]:
        """Return the held events of ``epoch`` from ``first`` to ``last``.

        Returns ``(first_available, events)``: ``events`` are ``(seq,
        header, attributes)`` in order, at most ``limit`` of them, and
        every number from ``first`` below ``first_available`` is gone (so
        is any number skipped within ``events``).  ``first_available`` is
        ``last + 1`` when nothing of the range is held.
        """
        entry = self._epochs.get(epoch)
        if entry is None or not entry.events:
            return last + 1, []
        last = min(last, entry.last_seq)
        start = max(first, self._first(entry))
        events = []
        held = entry.events
        for seq in range(start, last + 1):
            pair = held.get(seq)
            if pair is not None:
                events.append((seq, pair[0], pair[1]))
                if len(events) >= limit:
                    break
        if not events:
            return last + 1, []
        return events[0][0], events

    def recent(self, limit: int) -> list[tuple[bytes, int]]:
        """The ``limit`` most recently heard epochs and their last numbers."""
        newest = sorted(self._epochs.items(), key=lambda kv: kv[1].touched)
        return [(epoch, e.last_seq) for epoch, e in newest[-limit:]]

    def _touch(self, epoch: bytes) -> _Epoch:
        """``epoch``'s entry (made if new), marked as heard just now."""
        entry = self._epochs.get(epoch)
        if entry is None:
            if len(self._epochs) >= self.max_epochs:
                self._forget_idle()
            entry = self._epochs[epoch] = _Epoch()
        self._tick += 1
        entry.touched = self._tick
        return entry

    def _first(self, entry: _Epoch) -> int:
        """The oldest number of ``entry`` still held (its next if none)."""
        return min(entry.events) if entry.events else entry.last_seq + 1

    def _forget_idle(self) -> None:
        """Forget the least recently heard half of the epochs holding no events.

        Epochs that hold events stay (their count is bounded by
        ``capacity``), so an evicted event never belongs to a newer epoch
        of the same id.
        """
        idle = sorted((e.touched, k) for k, e in self._epochs.items() if not e.events)
        for _touched, epoch in idle[: max(1, len(self._epochs) // 2)]:
            del self._epochs[epoch]
