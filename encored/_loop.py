"""The daemon's I/O loop: the sockets, the poll loop, and the hand-off.

ZeroMQ sockets are not thread-safe, so one thread (the one that calls
:meth:`Loop.run`, normally the main thread) owns the ROUTER socket that
serves requests, the capture socket of the event path and the PUB
socket's monitor.  Requests go to the :class:`~encored._router.Router`;
captured events and heartbeats to the
:class:`~encored._publisher.Publisher`.  Other threads reach the loop
through a wake-up pipe: :meth:`Loop.post_reply` (a worker's deferred
reply), :meth:`Loop.call_soon` and :meth:`Loop.request_stop`.
"""

from __future__ import annotations

__all__ = ["Loop"]

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq
from zmq.backend import zmq_poll
from zmq.utils.monitor import recv_monitor_message

from encore_client._protocol import MAX_ENVELOPE, MAX_SUBSCRIPTION
from encore_client._transport import send_frames

from ._config import Config
from ._event_hub import EventHub
from ._publisher import Publisher
from ._router import Key, Router, recv_request

if TYPE_CHECKING:  # pragma: no cover
    from encore_client._paths import Endpoints

logger = logging.getLogger("encored")

_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_SNDMORE = _NOBLOCK | int(zmq.SNDMORE)
_POLLIN = int(zmq.POLLIN)


class Loop:
    """The sockets and the poll loop of one daemon.

    Parameters
    ----------
    config : Config
        The daemon's configuration (its ``[daemon]`` settings are read
        when the loop binds and starts).
    endpoints : Endpoints
        Where to bind.
    router : Router
        Answers requests.
    publisher : Publisher
        Reads the capture, sends heartbeats.
    """

    def __init__(
        self,
        config: Config,
        endpoints: Endpoints,
        router: Router,
        publisher: Publisher,
    ) -> None:
        self.config = config
        self.endpoints = endpoints
        self.router = router
        self.publisher = publisher
        #: Connected event sockets (from the PUB socket's monitor).
        self.subscribers = 0
        self._max_size = config.daemon.max_message_size
        self._stop = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._closed = False
        # Replies of deferred operations (see _deferred.py), posted by
        # worker threads, and calls to run on the I/O thread.
        self._replies: collections.deque[tuple[list[bytes], Key | None]] = (
            collections.deque()
        )
        self._calls: collections.deque[Callable[[], None]] = collections.deque()
        self._context: zmq.Context | None = None
        self._requests: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._hub: EventHub | None = None
        # -- service hooks (systemd watchdog, reload, tcp; see _service.py) --
        #: Called on the I/O thread on every pass of the loop with the
        #: monotonic time; each returns the monotonic time it next wants to
        #: run, and the loop wakes up by then.
        self.loop_hooks: list[Callable[[float], float]] = []
        #: Called with the ROUTER, PUB and inbound PULL sockets after the
        #: ipc binds.
        self.bind_hooks: list[Callable[[zmq.Socket, zmq.Socket, zmq.Socket], None]] = []
        #: Called after the sockets are closed, before the context ends
        #: (helpers with sockets of their own on it close them here).
        self.close_hooks: list[Callable[[], None]] = []

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        return self._stop

    # -- from other threads -----------------------------------------------------------

    def _wake(self, byte: bytes) -> None:
        try:
            os.write(self._wake_w, byte)
        except (BlockingIOError, OSError):
            pass  # full pipe: the I/O thread is awake; closed: stopping

    def request_stop(self) -> None:
        """Ask the loop to stop (safe from signal handlers and other threads)."""
        self._stop = True
        self._wake(b"\1")

    def call_soon(self, func: Callable[[], None]) -> None:
        """Run ``func()`` on the I/O thread soon (safe from any thread).

        Exceptions it raises are logged; the loop goes on.
        """
        self._calls.append(func)
        self._wake(b"\0")

    def post_reply(self, frames: list[bytes], key: Key | None) -> None:
        """Hand a finished deferred reply to the I/O thread (any thread).

        ``key`` is the ``(client, request id)`` of an effectful request, so
        that its reply is remembered for retries, or ``None``.
        """
        if self._requests is None:
            return  # the loop has stopped: nobody will send it
        self._replies.append((frames, key))
        self._wake(b"\0")

    # -- on the I/O thread -----------------------------------------------------------

    def _run_calls(self) -> None:
        while self._calls:
            func = self._calls.popleft()
            try:
                func()
            except Exception:
                logger.exception("a call on the I/O thread failed")

    def _send_replies(self) -> None:
        requests = self._requests
        settle = self.router.settle
        while self._replies:
            frames, key = self._replies.popleft()
            if key is not None:
                settle(key, frames)
            if requests is None:
                continue
            try:
                send_frames(requests, frames, _NOBLOCK)
            except zmq.ZMQError as exc:
                logger.debug("deferred reply dropped: %s", exc)

    def _on_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        if self._calls:
            self._run_calls()
        self._send_replies()

    def _on_monitor(self) -> None:
        assert self._monitor is not None
        try:
            message = recv_monitor_message(self._monitor, flags=zmq.NOBLOCK)
        except zmq.Again:
            return
        if message["event"] == zmq.EVENT_ACCEPTED:
            self.subscribers += 1
        elif message["event"] == zmq.EVENT_DISCONNECTED:
            self.subscribers = max(0, self.subscribers - 1)

    def bind(self) -> None:
        """Make the context and sockets and bind them (on the I/O thread)."""
        self.router.io_thread = threading.get_ident()
        self._context = zmq.Context()
        self._requests = self._context.socket(zmq.ROUTER)
        self._requests.setsockopt(zmq.LINGER, 0)
        # A hard cap at the transport: anything far beyond the configured
        # limit is dropped by libzmq before it costs us memory; anything
        # between the two gets a proper TOO_LARGE reply from the router.
        self._requests.setsockopt(zmq.MAXMSGSIZE, 2 * self._max_size + MAX_ENVELOPE)
        hub = EventHub(
            self._context,
            self.endpoints.events_in,
            self.endpoints.events,
            publish_hwm=self.config.daemon.publish_hwm,
            max_message_size=self._max_size + MAX_ENVELOPE,
            max_subscription=MAX_SUBSCRIPTION,
        )
        self._monitor = hub.published.get_monitor_socket(
            zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
        )
        self._hub = hub
        old_umask = os.umask(0o077)  # the socket files are for us only
        try:
            self._requests.bind(self.endpoints.requests)
        finally:
            os.umask(old_umask)
        for hook in self.bind_hooks:
            hook(self._requests, hub.published, hub.inbound)

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Bind the sockets and serve until :meth:`request_stop`.

        ``on_ready`` is called once the sockets are bound.  Returns after
        the sockets are closed.
        """
        self.bind()
        assert self._requests is not None and self._monitor is not None
        hub = self._hub
        assert hub is not None
        publisher = self.publisher
        publisher.start_hub(hub)
        capture = hub.capture
        # What zmq.Poller would hold, polled without its Python layer.
        poll_items: list[tuple[Any, int]] = [
            (capture, _POLLIN),
            (self._requests, _POLLIN),
            (self._monitor, _POLLIN),
            (self._wake_r, _POLLIN),
        ]
        interval = self.config.daemon.heartbeat_interval
        logger.info(
            "encored %s serving on %s (pid %d, %d stores configured)",
            publisher.instance_id,
            self.endpoints.runtime_dir,
            os.getpid(),
            len(self.config.stores),
        )
        if on_ready is not None:
            on_ready()
        next_beat = time.monotonic()
        requests = self._requests
        requests_only = [(requests, _POLLIN)]
        route = self.router.route
        remember = self.router.remember
        try:
            while not self._stop:
                now = time.monotonic()
                if now >= next_beat:
                    publisher.heartbeat()
                    next_beat = now + interval
                wake_at = next_beat
                for hook in self.loop_hooks:
                    wake_at = min(wake_at, hook(now))
                events = dict(zmq_poll(poll_items, int(max(0.0, wake_at - now) * 1000)))
                if self._wake_r in events:
                    self._on_wake()
                if capture in events:
                    publisher.on_capture(capture)
                if requests in events:
                    # Serve a bounded batch, then look at the other sockets.
                    for _ in range(256):
                        try:
                            frames = recv_request(requests)
                        except zmq.Again:
                            break  # a spurious wake-up: rare
                        key, reply = route(frames)
                        if reply is not None:
                            try:
                                if len(reply) == 2:  # the common reply
                                    requests.send(reply[0], _NOBLOCK_SNDMORE)
                                    requests.send(reply[1], _NOBLOCK)
                                else:
                                    send_frames(requests, reply, _NOBLOCK)
                            except zmq.ZMQError as exc:
                                # The client is gone or not reading; it will
                                # time out and retry.
                                logger.debug("reply dropped: %s", exc)
                            if key is not None:
                                # After the send: the client need not wait
                                # for it, and a retry is read only after it.
                                remember(key, reply)
                        # Asking whether more is queued costs far less than
                        # the zmq.Again a receive on an empty socket raises;
                        # a zero-timeout poll of the one socket less than
                        # its EVENTS option (pyzmq looks the option up).
                        if not zmq_poll(requests_only, 0):
                            break
                if self._monitor in events:
                    self._on_monitor()
            self._on_wake()
        finally:
            self.close()

    def close(self) -> None:
        """Close the sockets, the context and the wake-up pipe (once).

        Also right for a loop that never ran.
        """
        if self._closed:
            return
        self._closed = True
        self.publisher.detach()
        hub = self._hub
        if hub is not None:
            hub.published.disable_monitor()
            hub.stop()  # after the last events and replies are sent
        for sock in (self._monitor, self._requests):
            if sock is not None:
                sock.close()
        self._monitor = self._requests = None
        for hook in self.close_hooks:
            try:
                hook()
            except Exception:
                logger.exception("a close hook failed")
        if self._context is not None:
            self._context.term()
            self._context = None
        os.close(self._wake_r)
        os.close(self._wake_w)
