"""Per-emitter sequence bookkeeping of an event receiver, sans I/O.

Protocol 4 numbers events where they are made: every emitter (a client's
bridge, the daemon itself) has a random 16-byte *epoch* id and numbers
its events 1, 2, 3, ... under it.  Nothing central counts, so the daemon
can forward events without looking at them; a receiver instead follows
each epoch's numbers on its own, and this class is that bookkeeping.

It holds no socket and no clock.  The receiver feeds it what arrived
(:meth:`SequenceTracker.receive`), what a heartbeat says was published
(:meth:`~SequenceTracker.announce`) and what a replay brought
(:meth:`~SequenceTracker.receive` again, or :meth:`~SequenceTracker.give_up`
for what is gone); each call returns what may be delivered now, in order,
with :class:`Lost` markers standing where events are known to be missing.
:meth:`~SequenceTracker.gaps` says what to ask the daemon's replay for.
"""

from __future__ import annotations

__all__ = ["Gap", "Lost", "SequenceTracker"]

from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")


class Gap(NamedTuple):
    """Events ``first`` to ``last`` (inclusive) of ``epoch`` not received yet."""

    epoch: bytes
    first: int
    last: int


class Lost(NamedTuple):
    """A delivery marker: events ``first`` to ``last`` of ``epoch`` are gone."""

    epoch: bytes
    first: int
    last: int

    @property
    def count(self) -> int:
        """How many events are missing."""
        return self.last - self.first + 1


class _Stream:
    """One epoch's state: the next number to deliver, what waits beyond it."""

    __slots__ = ("next", "held", "announced", "touched")

    def __init__(self, next_seq: int, touched: int) -> None:
        self.next = next_seq
        #: Events received ahead of a gap, by number.
        self.held: dict[int, object] = {}
        #: The highest number known to be published (heartbeats, arrivals).
        self.announced = next_seq - 1
        self.touched = touched


class SequenceTracker(Generic[T]):
    """Order and gap detection for the events of many epochs.

    Parameters
    ----------
    max_held : int
        Most events held ahead of gaps, over all epochs.  Beyond it an
        event arriving ahead of a gap is not kept but left to the replay
        (the gap is known to reach it), so memory stays bounded and
        nothing is declared lost for it.
    max_epochs : int
        Most epochs followed.  Beyond it the least recently heard half
        without held events is forgotten.

    An epoch met for the first time starts at the number it arrives with,
    unless :attr:`new_epochs_start_at_one` is set: a receiver sets it once
    it has loaded, with :meth:`expect`, where every epoch the daemon knew
    at the receiver's join stands; any other epoch is then new and its
    numbers must start at 1, so that losing its first events is seen.
    """

    def __init__(self, max_held: int = 10000, max_epochs: int = 4096) -> None:
        if max_held < 1 or max_epochs < 1:
            raise ValueError("max_held and max_epochs must be at least 1")
        self.max_held = max_held
        self.max_epochs = max_epochs
        self.new_epochs_start_at_one = False
        #: Events dropped because they were delivered before (replayed
        #: first, say) or are older than the stream's start.
        self.duplicates = 0
        #: Events not held because ``max_held`` were (left to the replay).
        self.deferred = 0
        self._streams: dict[bytes, _Stream] = {}
        self._held = 0
        self._tick = 0

    # -- feeding ------------------------------------------------------------------

    def expect(self, epoch: bytes, next_seq: int) -> None:
        """Start following ``epoch`` at ``next_seq`` (from the join's table).

        An epoch already followed is left as it is: what was received
        counts more than a table read before.
        """
        if next_seq < 1:
            raise ValueError("sequence numbers start at 1")
        if epoch not in self._streams:
            self._add(epoch, next_seq)

    def receive(self, epoch: bytes, seq: int, item: T) -> list[T | Lost]:
        """Take event ``seq`` of ``epoch``; return what may be delivered now.

        The list is empty when the event waits behind a gap or was a
        duplicate, else the event followed by any held events it
        unblocked.
        """
        stream = self._streams.get(epoch)
        if stream is None:
            start = 1 if self.new_epochs_start_at_one else seq
            stream = self._add(epoch, start)
        self._tick += 1
        stream.touched = self._tick
        if seq == stream.next:
            stream.next = seq + 1
            if seq > stream.announced:
                stream.announced = seq
            if not stream.held:
                return [item]
            out: list[T | Lost] = [item]
            self._release(stream, out)
            return out
        if seq < stream.next or seq in stream.held:
            self.duplicates += 1
            return []
        if seq > stream.announced:
            stream.announced = seq
        if self._held >= self.max_held:
            # Not held, but not lost: the gap now reaches it, and the
            # replay that fills the gap brings it again.
            self.deferred += 1
            return []
        stream.held[seq] = item
        self._held += 1
        return []

    def announce(self, epoch: bytes, last_seq: int) -> None:
        """Note that ``epoch`` has published up to ``last_seq`` (a heartbeat).

        Unknown epochs are ignored: their events before this receiver
        joined are not this receiver's to miss.
        """
        stream = self._streams.get(epoch)
        if stream is not None and last_seq > stream.announced:
            stream.announced = last_seq

    def give_up(self, epoch: bytes, last: int) -> list[T | Lost]:
        """Declare every event of ``epoch`` up to ``last`` not received gone.

        Returns, in order, a :class:`Lost` marker for each missing run and
        the held events between and after them that may now be delivered.
        """
        stream = self._streams.get(epoch)
        if stream is None or last < stream.next:
            return []
        out: list[T | Lost] = []
        seq = stream.next
        held = stream.held
        for number in sorted(n for n in held if n <= last):
            if number > seq:
                out.append(Lost(epoch, seq, number - 1))
            out.append(held.pop(number))  # type: ignore[arg-type]
            self._held -= 1
            seq = number + 1
        if seq <= last:
            out.append(Lost(epoch, seq, last))
        stream.next = last + 1
        if last > stream.announced:
            stream.announced = last
        self._release(stream, out)
        return out

    # -- reading ------------------------------------------------------------------

    def gaps(self) -> list[Gap]:
        """What is known to be missing: each epoch's first missing range."""
        return [
            Gap(epoch, s.next, min(s.held) - 1 if s.held else s.announced)
            for epoch, s in self._streams.items()
            if s.announced >= s.next
        ]

    def next_seq(self, epoch: bytes) -> int | None:
        """The next number ``epoch`` is expected to deliver (``None``: unknown)."""
        stream = self._streams.get(epoch)
        return None if stream is None else stream.next

    @property
    def held(self) -> int:
        """Events waiting behind gaps, over all epochs."""
        return self._held

    def __len__(self) -> int:
        return len(self._streams)

    # -- inside -------------------------------------------------------------------

    def _add(self, epoch: bytes, next_seq: int) -> _Stream:
        if len(self._streams) >= self.max_epochs:
            self._forget_idle()
        self._tick += 1
        stream = self._streams[epoch] = _Stream(next_seq, self._tick)
        return stream

    def _forget_idle(self) -> None:
        """Forget the least recently heard half of the epochs with no gap."""
        idle = sorted(
            (s.touched, e)
            for e, s in self._streams.items()
            if not s.held and s.announced < s.next
        )
        for _touched, epoch in idle[: max(1, len(self._streams) // 2)]:
            del self._streams[epoch]

    def _release(self, stream: _Stream, out: list[T | Lost]) -> None:
        """Move the held events that now follow in order to ``out``."""
        held = stream.held
        seq = stream.next
        while seq in held:
            out.append(held.pop(seq))  # type: ignore[arg-type]
            self._held -= 1
            seq += 1
        stream.next = seq
