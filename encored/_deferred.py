"""Replies given later, from any thread: how store calls leave the I/O thread.

The daemon's I/O thread owns every socket and must never wait on a store
(a slow disk or a 1 GiB copy would stall every other client).  A handler
that has slow work to do starts it elsewhere (a worker thread) and returns
a :class:`Deferred` instead of a :class:`~encored.Response`.  Whoever
finishes the work calls :meth:`Deferred.resolve` or :meth:`Deferred.fail`
from any thread; the reply is encoded on that thread and handed to the I/O
thread, which sends it (see ``Daemon.post_reply``).

The work may finish before the daemon has even seen the ``Deferred`` (a
fast worker): the outcome is then kept until :meth:`Deferred.bind` is
called, so no reply is lost either way.
"""

from __future__ import annotations

__all__ = ["Deferred"]

import threading
from typing import TYPE_CHECKING, Any

from encore_client._protocol import ErrorCode

from ._handlers import Response

if TYPE_CHECKING:  # pragma: no cover
    from ._server import Daemon


class Deferred:
    """A reply promised by a handler, delivered by :meth:`resolve`/:meth:`fail`.

    Exactly one of ``resolve``/``fail`` takes effect; later calls are
    ignored (a worker racing an abort must not answer twice).
    """

    __slots__ = ("_lock", "_target", "_outcome", "_done")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._target: tuple[Daemon, bytes, Any, Any] | None = None
        self._outcome: Response | tuple[ErrorCode, str] | None = None
        self._done = False

    @property
    def done(self) -> bool:
        """Whether an outcome was given."""
        return self._done

    def bind(self, daemon: Daemon, identity: bytes, request_id: Any, key: Any) -> None:
        """Attach the request this answers (called by the daemon only)."""
        with self._lock:
            self._target = (daemon, identity, request_id, key)
            outcome = self._outcome
        if outcome is not None:
            self._post(outcome)

    def resolve(self, response: Response | None = None) -> None:
        """Answer with ``response`` (an empty success when ``None``)."""
        self._give(response if response is not None else Response())

    def fail(self, code: ErrorCode | int, message: str) -> None:
        """Answer with an error ``code`` and ``message``."""
        self._give((code, message))

    def _give(self, outcome: Response | tuple[Any, str]) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            self._outcome = outcome
            bound = self._target is not None
        if bound:
            self._post(outcome)

    def _post(self, outcome: Response | tuple[Any, str]) -> None:
        assert self._target is not None
        daemon, identity, request_id, key = self._target
        if isinstance(outcome, Response):
            frames = daemon._reply(identity, request_id, outcome)
        else:
            frames = daemon._error(identity, request_id, outcome[0], outcome[1])
        daemon.post_reply(frames, key)
