"""Store events that exist because of the daemon.

They are defined here, on the client side, so that a process receiving
them from the bus rebuilds them as their own class (``encored`` imports
this module; the dependency runs daemon -> client -> library).
"""

from __future__ import annotations

__all__ = ["StoreResyncEvent"]

from encore.storage.events import StoreEvent


class StoreResyncEvent(StoreEvent):
    """A watched store was rescanned after its watcher lost track of changes.

    Emitted after the rescan's own ``StoreSetEvent``/``StoreDeleteEvent``
    events (one per key that differs from what was last reported), so a
    listener that keeps a copy of the store is in step again when it
    arrives.  A listener that cannot tell what it may have missed should
    reread everything on this event.

    Attributes
    ----------
    reason : str
        Why the rescan happened (``"overflow"``, ``"requested"``).
    changed : list of str
        Keys found set or changed by the rescan.
    deleted : list of str
        Keys found deleted by the rescan.
    """
