"""Application-wide events: event classes, listeners, and their dispatch.

Import the public names from :mod:`encore.events.api`.
"""
