"""Helpers for testing code that uses encore (no test framework needed)."""
