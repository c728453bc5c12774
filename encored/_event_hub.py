"""The daemon's event path: clients' events forwarded inside libzmq.

Clients push their event messages to the inbound PULL socket; a
``zmq.proxy_steerable`` thread moves each message to the PUB socket the
subscribers read, in C, without the interpreter lock, so no Python runs in
the daemon per event.  A copy of every message goes to the capture
socket, which the daemon's I/O thread reads off the hot path to keep its
replay buffer and to show clients' events to its own listeners.

The daemon's own messages (its events, heartbeats, probes) enter the same
proxy through a local PUSH socket, so that every message subscribers get
has passed one queue in one order.

Why a PUB and not an XPUB whose subscriptions we check: libzmq's proxy
forwards what a backend socket receives (an XPUB's subscriptions) to the
frontend, which a PULL cannot take, and only one thread may use a socket.
The PUB applies subscriptions itself in libzmq's I/O thread; its
``MAXMSGSIZE`` disconnects a subscriber sending a subscription longer than
any documented topic, so a flood of long subscriptions costs neither
memory nor time in the daemon's loop.  Measured before choosing (see
``docs/protocol.md``): a Python loop forwarding to a checking XPUB added
about 17 µs at p50 over the C proxy, and would take the interpreter lock
from the store calls for every event.

Why the capture is a PUB: a PUSH capture blocks the proxy when the I/O
thread falls behind; a PUB drops instead (beyond a high-water mark of
``capture_hwm`` messages), so a busy daemon delays its replay buffer, not
the bus.  What the capture dropped shows up as numbers the buffer skips.
"""

from __future__ import annotations

__all__ = ["EventHub"]

import logging
import os
import threading
from collections.abc import Sequence

import zmq

logger = logging.getLogger("encored")

_INBOUND = "inproc://encored-events-in"
_CAPTURE = "inproc://encored-capture"
_CONTROL = "inproc://encored-proxy-control"
#: The topic of the marker that tells stop() the proxy has forwarded all.
_DRAINED = b"\xffdrained"


class EventHub:
    """The inbound, published and captured event sockets and their proxy.

    Parameters
    ----------
    context : zmq.Context
        The daemon's context.
    inbound : str
        Where clients push events (``ipc://...``).
    published : str
        Where subscribers connect (``ipc://...``).
    publish_hwm : int
        High-water mark of the PUB socket, in messages, per subscriber.
    max_message_size : int
        Largest inbound message; a bigger one drops its sender's connection.
    max_subscription : int
        Longest subscription applied; a longer one drops its subscriber.

    Build, then bind extra endpoints on :attr:`inbound` and
    :attr:`published` if needed (tcp), then :meth:`start`.  :meth:`send`
    is safe from any thread; :attr:`capture` belongs to the I/O thread.
    """

    def __init__(
        self,
        context: zmq.Context,
        inbound: str,
        published: str,
        *,
        publish_hwm: int,
        max_message_size: int,
        max_subscription: int,
        capture_hwm: int = 100_000,
    ) -> None:
        self._context = context
        self.inbound = context.socket(zmq.PULL)
        self.inbound.setsockopt(zmq.LINGER, 0)
        self.inbound.setsockopt(zmq.MAXMSGSIZE, max_message_size)
        self.published = context.socket(zmq.PUB)
        self.published.setsockopt(zmq.LINGER, 500)
        self.published.setsockopt(zmq.SNDHWM, publish_hwm)
        # The margin is ZMTP 3.1's command name.
        self.published.setsockopt(zmq.MAXMSGSIZE, max_subscription + 16)
        self._capture_out = context.socket(zmq.PUB)
        self._capture_out.setsockopt(zmq.LINGER, 0)
        self._capture_out.setsockopt(zmq.SNDHWM, capture_hwm)
        self._capture_out.bind(_CAPTURE)
        #: The copy of every forwarded message (read by the I/O thread).
        self.capture = context.socket(zmq.SUB)
        self.capture.setsockopt(zmq.LINGER, 0)
        self.capture.setsockopt(zmq.RCVHWM, capture_hwm)
        self.capture.setsockopt(zmq.SUBSCRIBE, b"")
        self.capture.connect(_CAPTURE)
        self._control_in = context.socket(zmq.PAIR)
        self._control_in.bind(_CONTROL)
        self._control = context.socket(zmq.PAIR)
        self._control.connect(_CONTROL)
        old_umask = os.umask(0o077)  # the socket files are for us only
        try:
            self.inbound.bind(_INBOUND)
            self.inbound.bind(inbound)
            self.published.bind(published)
        finally:
            os.umask(old_umask)
        self._local = context.socket(zmq.PUSH)
        self._local.setsockopt(zmq.LINGER, 500)
        self._local.connect(_INBOUND)
        self._local_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start forwarding (the proxy thread owns the three sockets now)."""
        self._thread = threading.Thread(
            target=self._forward, name="encored-event-proxy", daemon=True
        )
        self._thread.start()

    def _forward(self) -> None:
        try:
            zmq.proxy_steerable(
                self.inbound, self.published, self._capture_out, self._control_in
            )
        except zmq.ContextTerminated:  # pragma: no cover - stop() comes first
            pass
        except Exception:  # pragma: no cover - libzmq failing is a bug
            logger.exception("the event proxy stopped")

    def send(self, frames: Sequence[bytes]) -> None:
        """Publish one message of the daemon's own (any thread)."""
        with self._local_lock:
            self._local.send_multipart(frames, copy=False)

    def stop(self) -> None:
        """Forward what was sent, stop the proxy, close the sockets.

        Called on the I/O thread (it reads the capture here): a marker sent
        last through the local socket comes out of the capture after every
        earlier message, and no subscriber receives it (no subscription
        starts with its byte).
        """
        if self._thread is not None:
            self.send([_DRAINED])
            poller = zmq.Poller()
            poller.register(self.capture, zmq.POLLIN)
            while poller.poll(1000):
                if self.capture.recv_multipart()[0] == _DRAINED:
                    break
            self._control.send(b"TERMINATE")
            self._thread.join(5.0)
            self._thread = None
        for sock in (
            self._local,
            self._control,
            self._control_in,
            self.capture,
            self._capture_out,
            self.inbound,
            self.published,
        ):
            sock.close()
