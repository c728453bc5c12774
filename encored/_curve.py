"""tcp:// endpoints with CURVE: the daemon's side.

The daemon's ROUTER and PUB sockets keep their ipc endpoints and, when
``[listen]`` names them, bind tcp endpoints too.  ZeroMQ copies a
socket's security options into each endpoint when it is bound, so the
ipc endpoints (bound first) stay plain, and the tcp ones (bound after the
sockets are made CURVE servers) accept only CURVE clients.

Which clients: a ZAP handler (ZeroMQ's authentication protocol, served by
``zmq.auth``'s authenticator thread on the daemon's context) accepts a
handshake only from a public key in the authorised list.  Everything else
fails the handshake, so an unknown client never gets a reply, nor a single
event.  The handler is started before the tcp endpoints are bound: without
one, libzmq would let any CURVE client in.  The list is read again on
SIGHUP.
"""

from __future__ import annotations

__all__ = ["CurveServer", "ZAP_DOMAIN"]

import logging
import os
import threading
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from encore_client._keys import read_key_pair

from ._listen_config import ListenSettings, read_authorized_keys

logger = logging.getLogger("encored")

#: The ZAP domain of the tcp endpoints.
ZAP_DOMAIN = "encored"


class CurveServer:
    """Binds the tcp endpoints and authenticates their clients.

    Parameters
    ----------
    settings : ListenSettings
        Validated ``[listen]``/``[curve]`` settings.

    Raises
    ------
    ValueError
        If the key files cannot be read (they were checked when the
        configuration was loaded, but may have changed since).
    """

    def __init__(self, settings: ListenSettings) -> None:
        self.settings = settings
        assert settings.server_secret_key and settings.authorized_keys
        self.public, self._secret = read_key_pair(
            os.path.expanduser(settings.server_secret_key)
        )
        self.authorized = read_authorized_keys(
            os.path.expanduser(settings.authorized_keys)
        )
        self.refused = 0
        self.accepted = 0
        self.bound: dict[str, str] = {}
        self._lock = threading.Lock()
        self._auth: ThreadAuthenticator | None = None

    # -- the ZAP credentials provider (called on the authenticator thread) -------

    def callback(self, domain: str, key: bytes) -> bool:
        """Whether the client with public ``key`` may connect."""
        allowed = domain == ZAP_DOMAIN and key in self.authorized
        with self._lock:
            if allowed:
                self.accepted += 1
            else:
                self.refused += 1
        if not allowed:
            logger.warning(
                "refused a CURVE client with an unknown key %s", key.decode("ascii")
            )
        return allowed

    # -- binding -------------------------------------------------------------------

    def bind(self, router: zmq.Socket, pub: zmq.Socket, inbound: zmq.Socket) -> None:
        """Start authentication, then bind the tcp endpoints (a bind hook)."""
        context = router.context
        auth = ThreadAuthenticator(context, log=logging.getLogger("encored.zap"))
        auth.start()
        auth.configure_curve_callback(ZAP_DOMAIN, self)
        self._auth = auth
        for sock, endpoint, label in (
            (router, self.settings.requests, "requests"),
            (pub, self.settings.events, "events"),
            (inbound, self.settings.events_in, "events_in"),
        ):
            if not endpoint:
                continue
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self._secret)
            sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
            sock.bind(endpoint)
            self.bound[label] = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        logger.info(
            "tcp with CURVE: requests %s, events %s, events_in %s; server key %s; "
            "%d authorised client key(s)",
            self.bound.get("requests", "-"),
            self.bound.get("events", "-"),
            self.bound.get("events_in", "-"),
            self.public.decode(),
            len(self.authorized),
        )

    def reload_keys(self, config: Any) -> None:
        """Read the authorised keys again (after a SIGHUP reload).

        A list that cannot be read is logged and the old one kept.
        """
        listen = getattr(config, "listen", None)
        path = getattr(listen, "authorized_keys", None) or self.settings.authorized_keys
        try:
            keys = read_authorized_keys(os.path.expanduser(path))
        except (ValueError, OSError) as exc:
            logger.error("keeping the old authorised keys: %s", exc)
            return
        self.authorized = keys
        logger.info("authorised CURVE client keys: %d", len(keys))

    def describe(self) -> dict[str, Any]:
        """A summary for ``status``."""
        return {
            "requests": self.bound.get("requests"),
            "events": self.bound.get("events"),
            "events_in": self.bound.get("events_in"),
            "server_key": self.public.decode(),
            "authorized_keys": len(self.authorized),
            "accepted": self.accepted,
            "refused": self.refused,
        }

    def close(self) -> None:
        """Stop the authenticator (before the daemon's context ends)."""
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
