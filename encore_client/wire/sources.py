"""Kinds of event-source descriptors: what a ``source`` becomes on the wire.

An event's ``source`` travels in its header as a descriptor, a map with a
``kind`` (``docs/protocol.md``, "Rebuilding events").
"""

from __future__ import annotations

__all__ = ["SOURCE_KIND", "OBJECT_SOURCE_KIND"]

#: ``kind`` of the descriptor of a store hosted by the daemon (``name``,
#: ``pid``): the receiver rebuilds it as a ``RemoteStore``.
SOURCE_KIND = "store"
#: ``kind`` of any other object (``type``, ``repr``, ``pid``): the receiver
#: rebuilds it as a ``RemoteSource``.
OBJECT_SOURCE_KIND = "object"
