"""Real HTTP servers on the loopback interface for testing the URL stores.

The servers live in ``encore.storage.testing_http``; this module keeps the
import path ``encore.storage.http_test_servers`` working:

- `RestStoreServer` implements the REST protocol of
  `encore.storage.dynamic_url_store.DynamicURLStore`.
- `StaticSiteServer` serves static files the way
  `encore.storage.static_url_store.StaticURLStore` reads them, with
  switchable failure modes.
"""

from .testing_http import RecordedRequest, RestStoreServer, StaticSiteServer
from .testing_http._rest_server import CHUNK_SIZE  # noqa: F401 (was importable here)

__all__ = ["RestStoreServer", "StaticSiteServer", "RecordedRequest"]
