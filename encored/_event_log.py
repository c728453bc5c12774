"""The daemon's bounded buffer of recently published events.

Sequence numbers are consecutive, so the buffer is a fixed-size circular
array indexed by ``seq % capacity``: appending and fetching are O(1), and an
event older than ``capacity`` published events is gone.
"""

from __future__ import annotations

__all__ = ["EventLog"]


class EventLog:
    """Keep the last ``capacity`` published events, by sequence number.

    Each entry is the pair of encoded frames ``(header, attributes)``
    exactly as published.  Not thread-safe: only the daemon's I/O thread
    uses it.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._slots: list[tuple[bytes, bytes] | None] = [None] * capacity
        #: Sequence number of the last event appended (0: none yet).
        self.last_seq = 0

    @property
    def first_seq(self) -> int:
        """The oldest sequence number still held (``last_seq + 1`` if empty)."""
        return max(1, self.last_seq - self.capacity + 1)

    def append(self, seq: int, header: bytes, attributes: bytes) -> None:
        """Record the event published as ``seq`` (must be ``last_seq + 1``)."""
        if seq != self.last_seq + 1:
            raise ValueError(f"sequence {seq} does not follow {self.last_seq}")
        self._slots[seq % self.capacity] = (header, attributes)
        self.last_seq = seq

    def fetch(
        self, first: int, last: int | None = None, limit: int = 1000
    ) -> tuple[int, list[tuple[int, bytes, bytes]]]:
        """Return the held events from ``first`` to ``last`` (inclusive).

        Returns ``(first_available, events)`` where ``first_available`` is the
        first sequence number actually returned from (greater than ``first``
        when older events are gone) and ``events`` is a list of ``(seq,
        header, attributes)``, at most ``limit`` long.
        """
        if last is None or last > self.last_seq:
            last = self.last_seq
        start = max(first, self.first_seq)
        stop = min(last, start + limit - 1)
        events = []
        for seq in range(start, stop + 1):
            slot = self._slots[seq % self.capacity]
            assert slot is not None
            events.append((seq, slot[0], slot[1]))
        return start, events
