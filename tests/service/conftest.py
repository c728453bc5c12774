"""Fixtures for the service tests.

``runtime_dir`` and ``make_daemon`` come from ``tests/conftest.py``.
"""

from encored.testing import wait_until

__all__ = ["wait_until"]
