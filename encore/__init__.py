"""encore: an application-wide event bus and key-value storage API.

The ``encore`` package imports nothing outside the standard library; the
daemon (``encored``) and its client (``encore_client``) add ZeroMQ.
"""

__version__ = "0.8.0.dev0"
