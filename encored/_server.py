"""The daemon: a :class:`Daemon` wires its parts together.

Where each part lives:

* :mod:`._loop` (:class:`~encored._loop.Loop`): the sockets and the poll
  loop, start and stop, the hand-off from worker threads;
* :mod:`._router` (:class:`~encored._router.Router`): a request's envelope,
  deduplication of retries, dispatch by the operations table, replies;
* :mod:`._publisher` (:class:`~encored._publisher.Publisher`): the
  daemon's epoch and events, the capture reader feeding the replay buffer
  and the daemon's listeners, heartbeats and probes;
* :mod:`._handlers`: the bus operations; :mod:`.stores`: the store part.

Handlers get the :class:`Daemon` as their first argument; the names it
offers them are listed on the class.
"""

from __future__ import annotations

__all__ = ["Daemon"]

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from encore.events.event_manager import EventManager
from encore_client._protocol import ErrorCode

from ._complaints import RateLimitedLog
from ._config import Config
from ._handlers import BUS_OPERATIONS, Operation, Response
from ._loop import Loop
from ._publisher import DaemonEventManager, Publisher
from ._router import Router
from ._runtime_dir import RuntimeDir


class Daemon:
    """One encored instance: its publisher, router and loop.

    Parameters
    ----------
    config : Config
        A validated configuration.
    runtime_dir : RuntimeDir
        The (already locked) runtime directory to bind in.
    event_manager : EventManager, optional
        The manager whose events are published (a new
        :class:`DaemonEventManager` by default).
    operations : mapping, optional
        The operations table (default: the event-bus operations).

    Attributes
    ----------
    publisher : Publisher
    router : Router
    loop : Loop
    config : Config
        The configuration in force (a reload replaces it).
    instance_id : str
        This run's id; its bytes are the daemon's epoch.
    """

    def __init__(
        self,
        config: Config,
        runtime_dir: RuntimeDir,
        event_manager: EventManager | None = None,
        operations: Mapping[str, Operation] | None = None,
    ) -> None:
        self.config = config
        self.runtime_dir = runtime_dir
        self.endpoints = runtime_dir.endpoints
        self.instance_id = uuid.uuid4().hex
        self.started = time.time()
        self.event_manager = (
            event_manager if event_manager is not None else DaemonEventManager()
        )
        complaints = RateLimitedLog()
        self.publisher = Publisher(
            self.instance_id, self.event_manager, config.daemon.event_buffer, complaints
        )
        self.router = Router(
            operations if operations is not None else BUS_OPERATIONS,
            config.daemon.max_message_size,
            complaints,
            self,
        )
        self.loop = Loop(config, self.endpoints, self.router, self.publisher)
        # What handlers and the service read, without the part's name.
        self.registry = self.publisher.registry
        self.log = self.publisher.log
        self.epoch = self.publisher.epoch
        self.operations = self.router.operations
        self.error_counts = self.router.error_counts
        self.last_errors = self.router.last_errors
        self.loop_hooks = self.loop.loop_hooks
        self.bind_hooks = self.loop.bind_hooks
        self.close_hooks = self.loop.close_hooks
        self.publish = self.publisher.publish
        self.publish_many = self.publisher.publish_many
        self.publish_probe = self.publisher.publish_probe
        self.epochs = self.publisher.epochs
        self.rebuild_event = self.publisher.rebuild_event
        self.only_published = self.publisher.only_published
        self.handle = self.router.handle
        self.post_reply = self.loop.post_reply
        self.call_soon = self.loop.call_soon
        self.request_stop = self.loop.request_stop

    @property
    def last_seq(self) -> int:
        """The last number given to one of the daemon's own events."""
        return self.publisher.last_seq

    @property
    def malformed_events(self) -> int:
        """Captured event messages that were not well-formed."""
        return self.publisher.malformed_events

    @property
    def subscribers(self) -> int:
        """Connected event sockets."""
        return self.loop.subscribers

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        return self.loop.stopping

    def _reply(
        self, identity: bytes, request_id: Any, response: Response
    ) -> list[bytes]:
        # Called by a Deferred (see _deferred.py), as on an in-process daemon.
        return self.router.reply(identity, request_id, response)

    def _error(
        self, identity: bytes, request_id: Any, code: ErrorCode, message: str
    ) -> list[bytes]:
        # Called by a Deferred (see _deferred.py), as on an in-process daemon.
        return self.router.error(identity, request_id, code, message)

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Bind the sockets and serve until :meth:`request_stop`.

        ``on_ready`` is called once the sockets are bound (the daemon then
        tells systemd it is ready).  Returns after the sockets are closed.
        """
        self.loop.run(on_ready)

    def close(self) -> None:
        """Release what a daemon that never ran holds (its wake-up pipe);
        :meth:`run` does this itself on return."""
        self.loop.close()
