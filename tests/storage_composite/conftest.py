"""Fixtures for the composite store tests (joined, mounted, simple-auth)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch) -> None:
    """Keep loopback requests off any proxy configured in the environment."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
