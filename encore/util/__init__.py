"""Small utilities with no better home."""
