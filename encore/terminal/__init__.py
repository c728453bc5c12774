"""Utilities for text terminals: a live progress display."""
