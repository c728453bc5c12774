"""Real HTTP servers on the loopback interface for testing the URL stores.

Two servers, each a stdlib ``ThreadingHTTPServer`` bound to ``127.0.0.1``
on a free port and served from a background thread:

- `RestStoreServer` implements the REST protocol that
  `encore.storage.dynamic_url_store.DynamicURLStore` speaks (data, metadata
  and permissions per key, ``DELETE`` of a key, a query URL), keeping the
  keys in an in-memory dict and each value's bytes in a file of a private
  temporary directory, so that large values stream through it in both
  directions without being held in memory.
- `StaticSiteServer` serves a directory of static files (an index JSON and
  a data directory, the layout `StaticURLStore` reads), with switchable
  failure modes: slow responses, forced status codes, a broken index and
  HTTP basic authentication.

Both are context managers; ``stop()`` shuts the listening socket, closes
every open connection and joins the serving threads, so nothing leaks into
the next test.  They live in the package rather than in a ``conftest.py``
so that any test suite (the daemon's as well as the stores') can start one.
Only the standard library is used.
"""

from ._rest_server import RestStoreServer
from ._server_base import RecordedRequest
from ._static_server import StaticSiteServer

__all__ = ["RestStoreServer", "StaticSiteServer", "RecordedRequest"]
