"""The encored wire protocol, sans I/O: what travels, never how.

Modules here hold no sockets and no threads, so that the daemon, the
clients and a test can share them without starting anything.  It is
described for implementers in ``docs/protocol.md`` and
``docs/store_calls.md``.
"""

__all__: list[str] = []
