"""The protocol version, carried by every message that crosses the wire."""

from __future__ import annotations

__all__ = ["PROTOCOL_VERSION"]

#: Version of the wire format; carried in every request envelope, every
#: reply envelope, every beacon and every event header.  A daemon refuses
#: other versions with ``UNSUPPORTED_VERSION``; a client refuses replies in
#: another version.
PROTOCOL_VERSION = 4
