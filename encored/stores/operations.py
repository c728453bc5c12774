"""The store operations: the whole ``AbstractStore`` API on the request socket.

:class:`StoreService` owns the worker threads that run store calls, the
chunked transfers (:mod:`.transfers`) and the logged-in sessions
(:mod:`.sessions`), and gives the daemon its operations table
(:meth:`StoreService.operations`, merged with the bus table by
``merge_tables``).  Each handler below documents its request and reply;
``docs/store_calls.md`` has the overview.

Threads: a handler runs on the daemon's I/O thread, which must never wait
on a store.  It checks the arguments, then hands the store call to a worker
(a :class:`~encored._deferred.Deferred` carries the reply back).  Calls on
an in-memory store whose lock is free run inline instead: they cannot
block, and the thread hop would cost more than the call.  An upload has a
thread of its own that runs the store's ``set`` over a stream fed by the
upload's chunks; a chunk is acknowledged on arrival while at most
``UPLOAD_WINDOW`` chunks wait for that ``set``, else when the ``set`` has
taken one, which is the flow control: the daemon holds a few chunks of any
upload (the window, the one being written, the one arriving), and a
download holds one.  A download read to its end keeps its last chunk for a
repeated read (a client whose reply was lost asks again) until
``MAX_FINISHED_DOWNLOADS`` later ones finished or their last chunks hold
``MAX_FINISHED_BYTES`` (64 MiB) together, whichever comes first.

Errors of a store call travel as :class:`ErrorCode` values and come
back as the same exception types on the client.  Effectful operations are
``once``: the daemon answers a retried request from memory rather than
apply it twice; chunks are numbered, so a repeated chunk is recognised too.
"""

from __future__ import annotations

__all__ = ["StoreService", "map_store_error"]

import io
import itertools
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any

from encore.storage.abstract_store import (
    AbstractStore,
    AuthenticationError,
    AuthorizationError,
    ReadOnlyStoreError,
    StoreError,
)
from encore.storage.dict_memory_store import DictMemoryStore
from encore_client._protocol import ErrorCode
from encore_client._store_protocol import CHUNK_SIZE, ENVELOPE_DATA

from .._deferred import Deferred
from .._handlers import Operation, Request, RequestError, Response
from .hosting import StoreHost
from .sessions import Sessions
from .transfers import (
    MAX_CHUNK,
    MAX_TRANSFERS,
    MIN_CHUNK,
    TRANSFER_TIMEOUT,
    UPLOAD_WINDOW,
    Download,
    Transfers,
    Upload,
    UploadStream,
    read_full,
)

logger = logging.getLogger("encored")

_WRITE_MODES = ("set", "set_data", "stage")
_TX_OPS = ("set", "set_data", "set_metadata", "update_metadata", "delete")


def map_store_error(
    exc: BaseException,
) -> tuple[ErrorCode, str] | None:
    """The error code and message a store exception travels as (or ``None``).

    ``None`` means an unexpected exception: a daemon bug, logged with its
    traceback and answered ``INTERNAL``.
    """
    if isinstance(exc, KeyError):
        return ErrorCode.KEY_NOT_FOUND, str(exc.args[0]) if exc.args else "no such key"
    if isinstance(exc, AuthenticationError):
        return ErrorCode.AUTHENTICATION, str(exc)
    if isinstance(exc, AuthorizationError):
        return ErrorCode.AUTHORIZATION, str(exc)
    if isinstance(exc, ReadOnlyStoreError):
        return ErrorCode.READ_ONLY, str(exc)
    if isinstance(exc, StoreError):
        return ErrorCode.STORE_ERROR, str(exc)
    if isinstance(exc, TypeError):
        return ErrorCode.WRONG_TYPE, str(exc)
    if isinstance(exc, ValueError):
        return ErrorCode.BAD_ARGUMENT, str(exc)
    if isinstance(exc, NotImplementedError):
        return ErrorCode.NOT_IMPLEMENTED, str(exc) or "not supported by this store"
    if isinstance(exc, OSError):
        return ErrorCode.OS_ERROR, str(exc)
    return None


def _permissions_out(permissions: Any) -> Any:
    if permissions is None:
        return None  # most stores: no ABC check on every get
    if not isinstance(permissions, Mapping):
        return None
    return {str(k): sorted(v) for k, v in permissions.items()}


def _permissions_in(value: Any) -> dict[str, set[str]]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, list) for k, v in value.items()
    ):
        raise RequestError(
            ErrorCode.BAD_ARGUMENT, "'permissions' must map names to lists of tags"
        )
    return {k: set(v) for k, v in value.items()}


# -- argument checks (on the I/O thread) ---------------------------------------------


def _arg(args: Mapping[str, Any], name: str, types: type | tuple[type, ...]) -> Any:
    value = args.get(name)
    if (
        not isinstance(value, types)
        or isinstance(value, bool)
        and bool not in (types if isinstance(types, tuple) else (types,))
    ):
        raise RequestError(ErrorCode.BAD_ARGUMENT, f"{name!r} has the wrong type")
    return value


def _key(args: Mapping[str, Any], name: str = "key") -> str:
    value = args.get(name)
    if not isinstance(value, str):
        raise RequestError(
            ErrorCode.WRONG_TYPE, f"keys are strings, not {type(value).__name__}"
        )
    return value


def _keys(args: Mapping[str, Any]) -> list[str]:
    keys = args.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise RequestError(ErrorCode.WRONG_TYPE, "'keys' must be a list of strings")
    return keys


def _select(args: Mapping[str, Any]) -> list[str] | None:
    select = args.get("select")
    if select is None:
        return None
    if not isinstance(select, list) or not all(isinstance(s, str) for s in select):
        raise RequestError(ErrorCode.BAD_ARGUMENT, "'select' must be a list of names")
    return select


def _int(args: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = args.get(name)
    if value is None:
        value = default
    elif type(value) is not int:
        # msgpack gives exact ints; this also refuses bools.
        raise RequestError(ErrorCode.BAD_ARGUMENT, f"{name!r} must be an integer")
    return lo if value < lo else hi if value > hi else value


def _opt_int(args: Mapping[str, Any], name: str) -> int | None:
    value = args.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise RequestError(
            ErrorCode.BAD_ARGUMENT, f"{name!r} must be an integer or nil"
        )
    return value


_NO_WATCHERS = nullcontext()


class _Rollback(Exception):
    """Raised inside a transaction the client asked to roll back."""


class StoreService:
    """Serves the hosted stores on the request socket.

    Parameters
    ----------
    host : StoreHost
        The live stores.
    workers : int
        Worker threads for store calls (uploads have threads of their own).
    """

    def __init__(self, host: StoreHost, workers: int = 8) -> None:
        self.host = host
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="encored-store")
        self._ids = itertools.count(1)
        self._prefix = os.urandom(4).hex()
        #: Open (and finished) downloads and uploads.
        self.transfers = Transfers()
        #: Logged-in sessions' private store instances.
        self.sessions = Sessions()
        self._closed = False
        self._next_expiry = 0.0

    # -- plumbing -------------------------------------------------------------------

    def _new_id(self, kind: str) -> str:
        return f"{kind}{self._prefix}{next(self._ids)}"

    def _store(self, request: Request) -> Any:
        name = request.args.get("store")
        if not isinstance(name, str):
            raise RequestError(ErrorCode.BAD_ARGUMENT, "'store' must be a store name")
        session = request.args.get("session")
        if session is not None:
            private = self.sessions.get(session, request.client, name)
            if private is None:
                raise RequestError(
                    ErrorCode.AUTHENTICATION,
                    f"no connected session for store {name!r} "
                    "(the daemon restarted?): connect again",
                )
            return private
        store = self.host.stores.get(name)
        if store is None:
            hosted = ", ".join(sorted(self.host.stores)) or "none"
            raise RequestError(
                ErrorCode.NO_SUCH_STORE,
                f"encored hosts no store named {name[:100]!r} (hosted: {hosted})",
            )
        return store

    @staticmethod
    def _runs_inline(store: Any) -> bool:
        return type(store) is DictMemoryStore

    def _outcome(self, work: Callable[[], Response]) -> Response:
        """Run ``work`` here, turning store exceptions into error replies."""
        try:
            return work()
        except RequestError:
            raise
        except Exception as exc:
            mapped = map_store_error(exc)
            if mapped is None:
                raise
            raise RequestError(*mapped) from None

    def _job(self, deferred: Deferred, work: Callable[[], Response]) -> None:
        try:
            response = self._outcome(work)
        except RequestError as exc:
            deferred.fail(exc.code, exc.message)
        except BaseException:
            logger.exception("a store call failed inside the daemon")
            deferred.fail(
                ErrorCode.INTERNAL,
                "the store call failed inside the daemon; see its log",
            )
        else:
            deferred.resolve(response)

    def _run(self, store: Any, work: Callable[[], Response]) -> Response | Deferred:
        """Run a store call inline when it cannot block, else on a worker."""
        if type(store) is DictMemoryStore:  # as _runs_inline, one call less
            lock = store._lock
            if lock.acquire(blocking=False):
                # _outcome, inlined: this is the path of every small call
                # on a memory store.
                try:
                    return work()
                except RequestError:
                    raise
                except Exception as exc:
                    mapped = map_store_error(exc)
                    if mapped is None:
                        raise
                    raise RequestError(*mapped) from None
                finally:
                    lock.release()
        deferred = Deferred()
        try:
            self.pool.submit(self._job, deferred, work)
        except RuntimeError:  # the pool is shut down: the daemon is stopping
            raise RequestError(
                ErrorCode.UNAVAILABLE, "encored is shutting down"
            ) from None
        return deferred

    def _writing(self, store: Any) -> Any:
        """Tell the watchers concerned that a write of the daemon's own runs."""
        if not self.host.watchers:
            return _NO_WATCHERS  # no watched store at all: the common case
        watchers = self.host.watchers_of(store)
        if not watchers:
            return _NO_WATCHERS
        return self._watched_write(watchers)

    @contextmanager
    def _watched_write(self, watchers: list[Any]) -> Iterator[None]:
        with ExitStack() as stack:
            for watcher in watchers:
                stack.enter_context(watcher.own_write())
            yield

    def _expire(self) -> None:
        now = time.monotonic()
        # At most once a second: this runs on the I/O thread for every get.
        if now < self._next_expiry:
            return
        self._next_expiry = now + 1.0
        downloads, uploads = self.transfers.expire(now)
        for private in self.sessions.expire(now):
            self.pool.submit(private.disconnect)
        for download in downloads:
            self.pool.submit(download.close)
        for upload in uploads:
            if upload.staged is not None:
                upload.staged.close()

    def transfer_counts(self) -> dict[str, int]:
        """What the transfers hold now (for status and tests).

        ``downloads`` (open streams), ``finished_downloads`` (kept for a
        repeated last read), ``finished_bytes`` (their last chunks'
        bytes, at most ``MAX_FINISHED_BYTES``), ``uploads`` (uploads and
        staged values).
        """
        return self.transfers.counts()

    def _open_stream(
        self, client: str, stream: Any, result: dict[str, Any], chunk: int, inline: bool
    ) -> Response:
        """Reply with the first chunk of ``stream``; keep it open if more follows."""
        try:
            data = read_full(stream, chunk)
        except BaseException:
            stream.close()
            raise
        if len(data) < chunk:
            stream.close()
            result["stream"] = None
            if len(data) <= ENVELOPE_DATA:
                # Small data rides in the envelope: a frame fewer each way.
                result["data"] = data
                return Response(result)
            return Response(result, [data])
        sid = self._new_id("d")
        download = Download(sid, client, stream, inline)
        download.position = len(data)
        download.last = (0, data)
        for old in self.transfers.add_download(download):
            self.pool.submit(old.close)
        result["stream"] = sid
        return Response(result, [data])

    # -- handlers: discovery and sessions -------------------------------------------

    def h_list(self, daemon: Any, request: Request) -> Response:
        """List the hosted stores.

        Result: a list of ``{"name", "type", "writable", "watched"}``.
        """
        return Response(
            [
                {
                    "name": name,
                    "type": self.host.types[name],
                    "writable": isinstance(store, AbstractStore),
                    "watched": name in self.host.watchers,
                }
                for name, store in self.host.stores.items()
            ]
        )

    def h_connect(self, daemon: Any, request: Request) -> Response | Deferred:
        """Check that a store exists; with credentials, open a session.

        Args: ``store``, ``credentials`` (map or nil).  Stores that keep
        per-user state (simple_auth always; dynamic_url when credentials
        are given) get a private instance per session, connected with the
        credentials; a client keeps at most ``MAX_SESSIONS_PER_CLIENT``
        (its oldest are closed).  Result: ``type``, ``writable``,
        ``session`` (id to pass with later calls, or nil).  Errors:
        ``NO_SUCH_STORE``, ``AUTHENTICATION``.
        """
        store = self._store(request)
        name = request.args["store"]
        credentials = request.args.get("credentials")
        info = {
            "type": self.host.types[name],
            "writable": isinstance(store, AbstractStore),
        }
        factory = self.host.session_factories.get(name)
        if factory is None or (
            credentials is None and self.host.types[name] != "simple_auth"
        ):
            return Response(dict(info, session=None))

        def work() -> Response:
            private = factory()
            private.connect(credentials)
            sid = self._new_id("s")
            self.host.register_session_store(private, name)
            for evicted in self.sessions.open(sid, request.client, private, name):
                evicted.disconnect()
            return Response(dict(info, session=sid))

        return self._run(None, work)

    def h_disconnect(self, daemon: Any, request: Request) -> Response:
        """Close a session (args ``session``); unknown sessions are ignored."""
        private = self.sessions.close(request.args.get("session"), request.client)
        if private is not None:
            self.pool.submit(private.disconnect)
        return Response(None)

    # -- handlers: reads -------------------------------------------------------------

    def h_exists(self, daemon: Any, request: Request) -> Response | Deferred:
        """``exists(key)``.  Args: ``store``, ``key``.  Result: bool."""
        store = self._store(request)
        key = _key(request.args)
        return self._run(store, lambda: Response(bool(store.exists(key))))

    def h_get(self, daemon: Any, request: Request) -> Response | Deferred:
        """``get(key)`` with the first chunk of data.

        Args: ``store``, ``key``, ``chunk`` (bytes wanted in the reply).
        Result: ``metadata``, ``size``, ``created``, ``modified``,
        ``permissions``, ``stream`` (id to read the rest with
        ``store.read``, nil when the frame holds all the data).  Frame: the
        first ``chunk`` bytes.
        """
        store = self._store(request)
        key = _key(request.args)
        chunk = _int(request.args, "chunk", CHUNK_SIZE, MIN_CHUNK, MAX_CHUNK)
        self._expire()
        inline = self._runs_inline(store)

        def work() -> Response:
            value = store.get(key)
            result = {
                "metadata": value.metadata,
                "size": value.size,
                "created": value.created,
                "modified": value.modified,
                "permissions": _permissions_out(value.permissions),
            }
            return self._open_stream(request.client, value.data, result, chunk, inline)

        return self._run(store, work)

    def h_get_range(self, daemon: Any, request: Request) -> Response | Deferred:
        """``get_data_range(key, start, end)`` with the first chunk.

        Args: ``store``, ``key``, ``start``, ``end`` (int or nil),
        ``chunk``.  Result: ``stream`` as for ``store.get``.  Frame: data.
        """
        store = self._store(request)
        key = _key(request.args)
        start = _opt_int(request.args, "start")
        end = _opt_int(request.args, "end")
        chunk = _int(request.args, "chunk", CHUNK_SIZE, MIN_CHUNK, MAX_CHUNK)
        self._expire()
        inline = self._runs_inline(store)
        return self._run(
            store,
            lambda: self._open_stream(
                request.client, store.get_data_range(key, start, end), {}, chunk, inline
            ),
        )

    def h_read(self, daemon: Any, request: Request) -> Response | Deferred:
        """Read the next chunk of an open stream.

        Args: ``stream``, ``offset`` (bytes already received: a repeated
        offset gets the last chunk again), ``size``.  Result: ``eof``
        (bool; the store's stream is then closed and the download
        finished: its last chunk stays for a repeated read, within
        ``MAX_FINISHED_DOWNLOADS`` and ``MAX_FINISHED_BYTES``).  Frame:
        the bytes.  Error ``TRANSFER`` for an unknown, expired or dropped
        stream.
        """
        sid = request.args.get("stream")
        offset = _int(request.args, "offset", -1, -1, 1 << 62)
        size = _int(request.args, "size", CHUNK_SIZE, MIN_CHUNK, MAX_CHUNK)
        download = self.transfers.download(sid)
        if download is None or download.client != request.client:
            raise RequestError(
                ErrorCode.TRANSFER,
                "unknown data stream (expired, or the daemon restarted)",
            )

        def work() -> Response:
            with download.lock:
                download.touched = time.monotonic()
                if download.last is not None and offset == download.last[0]:
                    data = download.last[1]
                elif offset == download.position and download.stream is not None:
                    data = read_full(download.stream, size)
                    download.last = (offset, data)
                    download.position += len(data)
                    if len(data) < size:
                        download.close()
                        self.transfers.finished(download)
                elif offset == download.position:
                    data = b""
                else:
                    raise RequestError(
                        ErrorCode.TRANSFER,
                        f"read at offset {offset}, stream is at {download.position}",
                    )
                return Response({"eof": len(data) < size}, [data])

        if download.inline:
            return self._outcome(work)
        return self._run(None, work)

    def h_close_stream(self, daemon: Any, request: Request) -> Response:
        """Close an open stream (args ``stream``); unknown ids are ignored."""
        download = self.transfers.close_download(
            request.args.get("stream"), request.client
        )
        if download is not None:
            self.pool.submit(download.close)
        return Response(None)

    def h_get_metadata(self, daemon: Any, request: Request) -> Response | Deferred:
        """``get_metadata(key, select)``.  Result: the metadata map."""
        store = self._store(request)
        key = _key(request.args)
        select = _select(request.args)
        return self._run(store, lambda: Response(store.get_metadata(key, select)))

    def h_multiget_metadata(self, daemon: Any, request: Request) -> Response | Deferred:
        """``multiget_metadata(keys, select)``.  Result: list of maps."""
        store = self._store(request)
        keys = _keys(request.args)
        select = _select(request.args)
        return self._run(
            store, lambda: Response(list(store.multiget_metadata(keys, select)))
        )

    def h_query(self, daemon: Any, request: Request) -> Response | Deferred:
        """``query(select, **criteria)``.

        Args: ``store``, ``select`` (list or nil), ``criteria`` (map).
        Result: list of ``[key, metadata]``.
        """
        store = self._store(request)
        select = _select(request.args)
        criteria = request.args.get("criteria") or {}
        if not isinstance(criteria, dict) or not all(
            isinstance(k, str) for k in criteria
        ):
            raise RequestError(ErrorCode.BAD_ARGUMENT, "'criteria' must be a map")
        return self._run(
            store,
            lambda: Response(
                [[k, md] for k, md in store.query(select=select, **criteria)]
            ),
        )

    def h_query_keys(self, daemon: Any, request: Request) -> Response | Deferred:
        """``query_keys(**criteria)``.  Result: list of keys."""
        store = self._store(request)
        criteria = request.args.get("criteria") or {}
        if not isinstance(criteria, dict) or not all(
            isinstance(k, str) for k in criteria
        ):
            raise RequestError(ErrorCode.BAD_ARGUMENT, "'criteria' must be a map")
        return self._run(store, lambda: Response(list(store.query_keys(**criteria))))

    def h_glob(self, daemon: Any, request: Request) -> Response | Deferred:
        """``glob(pattern)``.  Args ``pattern``.  Result: list of keys."""
        store = self._store(request)
        pattern = _arg(request.args, "pattern", str)
        return self._run(store, lambda: Response(list(store.glob(pattern))))

    # -- handlers: writes --------------------------------------------------------------

    def h_set(self, daemon: Any, request: Request) -> Response | Deferred:
        """``set``/``set_data`` of a value small enough for one message.

        Args: ``store``, ``key``, ``mode`` (``"set"``: replace data and
        metadata; ``"set_data"``: data only), ``metadata`` (for ``set``),
        ``buffer_size``.  Frames: the data (none means empty).  Result: nil.
        """
        store = self._store(request)
        key = _key(request.args)
        mode = request.args.get("mode", "set")
        if mode not in ("set", "set_data") or len(request.frames) > 1:
            raise RequestError(
                ErrorCode.BAD_ARGUMENT, "bad 'mode' or frames for store.set"
            )
        metadata = request.args.get("metadata")
        buffer_size = _int(request.args, "buffer_size", 65536, 1, MAX_CHUNK)
        data = request.frames[0] if request.frames else request.args.get("data", b"")
        if not isinstance(data, bytes | memoryview):
            raise RequestError(ErrorCode.BAD_ARGUMENT, "'data' must be bytes")

        def work() -> Response:
            with self._writing(store):
                if mode == "set":
                    store.set(key, (io.BytesIO(data), metadata), buffer_size)
                else:
                    store.set_data(key, io.BytesIO(data), buffer_size)
            return Response(None)

        return self._run(store, work)

    def _metadata_write(self, request: Request, method: str) -> Response | Deferred:
        store = self._store(request)
        key = _key(request.args)
        metadata = request.args.get("metadata")

        def work() -> Response:
            with self._writing(store):
                getattr(store, method)(key, metadata)
            return Response(None)

        return self._run(store, work)

    def h_set_metadata(self, daemon: Any, request: Request) -> Response | Deferred:
        """``set_metadata(key, metadata)``.  Result: nil."""
        return self._metadata_write(request, "set_metadata")

    def h_update_metadata(self, daemon: Any, request: Request) -> Response | Deferred:
        """``update_metadata(key, metadata)``.  Result: nil."""
        return self._metadata_write(request, "update_metadata")

    def h_delete(self, daemon: Any, request: Request) -> Response | Deferred:
        """``delete(key)``.  Result: nil."""
        store = self._store(request)
        key = _key(request.args)

        def work() -> Response:
            with self._writing(store):
                store.delete(key)
            return Response(None)

        return self._run(store, work)

    # -- handlers: chunked uploads ---------------------------------------------

    def h_upload_begin(self, daemon: Any, request: Request) -> Response:
        """Start a chunked upload.

        Args: ``store``, ``key``, ``mode`` (``"set"``, ``"set_data"``, or
        ``"stage"``: keep the bytes in a temporary file for a later
        ``store.transaction``), ``metadata``, ``buffer_size``.  Result:
        ``upload`` (id).  The store call starts at once, on its own thread,
        reading the chunks as they come.
        """
        store = self._store(request) if request.args.get("mode") != "stage" else None
        mode = request.args.get("mode", "set")
        if mode not in _WRITE_MODES:
            raise RequestError(ErrorCode.BAD_ARGUMENT, f"bad upload mode {mode!r}")
        key = _key(request.args) if mode != "stage" else None
        metadata = request.args.get("metadata")
        buffer_size = _int(request.args, "buffer_size", 65536, 1, MAX_CHUNK)
        self._expire()
        if self.transfers.in_progress() >= MAX_TRANSFERS:
            raise RequestError(
                ErrorCode.UNAVAILABLE, "too many transfers in progress; retry later"
            )
        upload = Upload(self._new_id("u"), request.client, mode)

        def run() -> None:
            # The watchers learn of this write only once the data is all
            # here: the store commits after the end of the stream, and a
            # stalled client must not hold up the reporting of other
            # changes until it is given up.
            own = ExitStack()
            stream = UploadStream(
                upload, lambda: own.enter_context(self._writing(store))
            )
            error: tuple[Any, str] | None = None
            try:
                if mode == "stage":
                    spool = tempfile.TemporaryFile(prefix="encored-stage-")
                    try:
                        while chunk := stream.read(CHUNK_SIZE):
                            spool.write(chunk)
                    except BaseException:
                        spool.close()
                        raise
                    upload.staged = spool
                else:
                    with own:
                        if mode == "set":
                            store.set(key, (stream, metadata), buffer_size)
                        else:
                            store.set_data(key, stream, buffer_size)
            except Exception as exc:
                mapped = map_store_error(exc)
                if mapped is None:
                    logger.exception("upload to %r failed inside the daemon", key)
                    mapped = (
                        ErrorCode.INTERNAL,
                        "the upload failed inside the daemon; see its log",
                    )
                error = mapped
            finally:
                stream.close()
                own.close()
            upload.touched = time.monotonic()
            upload.finish(error)
            if upload.end is not None and mode != "stage":
                self.transfers.pop_upload(upload.id)

        self.transfers.add_upload(upload)
        upload.thread = threading.Thread(target=run, name="encored-upload", daemon=True)
        upload.thread.start()
        return Response({"upload": upload.id})

    def _upload(self, request: Request) -> Upload:
        upload = self.transfers.upload(request.args.get("upload"))
        if upload is None or upload.client != request.client:
            raise RequestError(
                ErrorCode.TRANSFER,
                "unknown upload (expired, or the daemon restarted)",
            )
        return upload

    def h_upload_chunk(self, daemon: Any, request: Request) -> Response | Deferred:
        """One chunk of an upload.

        Args: ``upload``, ``seq`` (0, 1, ...).  Frame: the bytes.  The
        reply comes at once while fewer than ``UPLOAD_WINDOW`` earlier
        chunks wait for the store call, else when the store call has taken
        the chunk; a chunk already received is acknowledged again.  If the
        store call failed the reply is its error.
        """
        upload = self._upload(request)
        seq = _int(request.args, "seq", -1, -1, 1 << 62)
        if len(request.frames) != 1:
            raise RequestError(ErrorCode.BAD_MESSAGE, "a chunk is one frame")
        with upload.cond:
            if upload.error is not None:
                raise RequestError(*upload.error)
            if upload.finished or upload.aborted is not None or upload.eof:
                raise RequestError(ErrorCode.TRANSFER, "the upload is over")
            if seq < upload.next_seq:
                return Response({"ok": True, "repeated": True})
            if seq != upload.next_seq:
                raise RequestError(
                    ErrorCode.TRANSFER,
                    f"chunk {seq} out of order (expected {upload.next_seq})",
                )
            # While few chunks wait, this one is acknowledged at once: the
            # client sends the next while the store writes the ones before
            # (the transfer and the writes overlap).  Beyond the window the
            # acknowledgement waits until the store takes the chunk, which
            # bounds what the daemon holds.
            ack = Deferred() if len(upload.queue) >= UPLOAD_WINDOW else None
            upload.queue.append((request.frames[0], ack))
            upload.next_seq += 1
            upload.touched = time.monotonic()
            upload.cond.notify()
        return ack if ack is not None else Response({"ok": True})

    def h_upload_end(self, daemon: Any, request: Request) -> Response | Deferred:
        """Finish an upload: answered when the store call has completed.

        Args: ``upload``, ``count`` (number of chunks sent).  Result: nil,
        or ``staged`` (id) for a staged upload.  Errors: whatever the store
        call raised.
        """
        upload = self._upload(request)
        count = _int(request.args, "count", -1, -1, 1 << 62)
        end = Deferred()
        with upload.cond:
            if upload.end is not None:
                raise RequestError(ErrorCode.TRANSFER, "upload already ended")
            if count != upload.next_seq and not upload.finished:
                raise RequestError(
                    ErrorCode.TRANSFER,
                    f"upload ended after {count} chunks, {upload.next_seq} received",
                )
            upload.eof = True
            upload.end = end
            upload.cond.notify()
            finished = upload.finished
        if finished:
            upload._answer(end)
            if upload.mode != "stage":
                self.transfers.pop_upload(upload.id)
        return end

    def h_upload_abort(self, daemon: Any, request: Request) -> Response:
        """Abandon an upload (args ``upload``): the store call fails, the
        old value stays.  Unknown uploads are ignored."""
        upload = self.transfers.pop_upload(request.args.get("upload"))
        if upload is not None and upload.client == request.client:
            with upload.cond:
                upload.aborted = "the client abandoned it"
                upload.cond.notify()
            if upload.staged is not None:
                upload.staged.close()
        return Response(None)

    # -- handlers: transactions and permissions --------------------------------

    def h_transaction(self, daemon: Any, request: Request) -> Response | Deferred:
        """Run a batch of writes inside the store's ``transaction()``.

        Args: ``store``, ``notes``, ``abort`` (bool: run the transaction and
        roll it back, so the store emits its start and end events but
        changes nothing), ``ops``: a list of ``{"op", "key", ...}`` with
        ``op`` one of ``set`` (``metadata``, ``frame`` or ``staged``),
        ``set_data`` (``frame`` or ``staged``), ``set_metadata`` and
        ``update_metadata`` (``metadata``), ``delete``.  ``frame`` is the
        index of the data frame; ``staged`` the id of a staged upload.
        Result: nil.  Errors: the first failing write's, and then nothing
        of the batch is kept (on stores that can roll back).
        """
        store = self._store(request)
        notes = request.args.get("notes")
        abort = bool(request.args.get("abort", False))
        ops = request.args.get("ops", [])
        frames = request.frames
        if not isinstance(ops, list) or (
            notes is not None and not isinstance(notes, str)
        ):
            raise RequestError(
                ErrorCode.BAD_ARGUMENT, "'ops' must be a list, 'notes' a string"
            )
        staged: dict[str, Upload] = {}
        for op in ops:
            if not isinstance(op, dict) or op.get("op") not in _TX_OPS:
                raise RequestError(
                    ErrorCode.BAD_ARGUMENT, f"bad transaction step {op!r:.80}"
                )
            _key(op)
            if "frame" in op:
                index = op["frame"]
                if not isinstance(index, int) or not 0 <= index < len(frames):
                    raise RequestError(ErrorCode.BAD_ARGUMENT, "bad frame index")
            if "staged" in op:
                upload = self.transfers.upload(op["staged"])
                if (
                    upload is None
                    or upload.staged is None
                    or upload.client != request.client
                ):
                    raise RequestError(ErrorCode.TRANSFER, "unknown staged value")
                staged[op["staged"]] = upload
        buffer_size = _int(request.args, "buffer_size", 65536, 1, MAX_CHUNK)

        def data_of(op: dict[str, Any]) -> Any:
            if "staged" in op:
                spool = staged[op["staged"]].staged
                spool.seek(0)
                return spool
            return io.BytesIO(frames[op["frame"]] if "frame" in op else b"")

        def work() -> Response:
            try:
                with self._writing(store):
                    with store.transaction(notes):
                        for op in ops:
                            kind, key = op["op"], op["key"]
                            if kind == "set":
                                store.set(
                                    key, (data_of(op), op.get("metadata")), buffer_size
                                )
                            elif kind == "set_data":
                                store.set_data(key, data_of(op), buffer_size)
                            elif kind == "set_metadata":
                                store.set_metadata(key, op.get("metadata"))
                            elif kind == "update_metadata":
                                store.update_metadata(key, op.get("metadata"))
                            else:
                                store.delete(key)
                        if abort:
                            raise _Rollback()
            except _Rollback:
                pass
            finally:
                for uid in staged:
                    self.transfers.pop_upload(uid)
                for upload in staged.values():
                    upload.staged.close()
            return Response(None)

        return self._run(store, work)

    def h_permissions(self, daemon: Any, request: Request) -> Response | Deferred:
        """Permissions of a key on an authorizing store.

        Args: ``store``, ``key``, ``action`` (``"get"``, ``"set"`` or
        ``"update"``), ``permissions`` (map of name to list of tags, for
        set/update).  Result: for ``get`` the permissions, else nil.
        Errors: ``NOT_IMPLEMENTED`` on stores without permissions.
        """
        store = self._store(request)
        key = _key(request.args)
        action = request.args.get("action")
        if action not in ("get", "set", "update"):
            raise RequestError(
                ErrorCode.BAD_ARGUMENT, "'action' must be get, set or update"
            )
        method = getattr(store, f"{action}_permissions", None)
        if method is None:
            raise RequestError(
                ErrorCode.NOT_IMPLEMENTED,
                f"store {request.args['store']!r} has no per-key permissions",
            )
        permissions = (
            _permissions_in(request.args.get("permissions"))
            if action != "get"
            else None
        )

        def work() -> Response:
            if action == "get":
                return Response(_permissions_out(method(key)))
            with self._writing(store):
                method(key, permissions)
            return Response(None)

        return self._run(store, work)

    def h_check_permissions(self, daemon: Any, request: Request) -> Response | Deferred:
        """``check_permissions(key)`` of a simple_auth store.  Result: list."""
        store = self._store(request)
        key = _key(request.args)
        method = getattr(store, "check_permissions", None)
        if method is None:
            raise RequestError(
                ErrorCode.NOT_IMPLEMENTED,
                f"store {request.args['store']!r} does not check permissions",
            )
        return self._run(store, lambda: Response(sorted(method(key))))

    # -- the table -------------------------------------------------------------

    def operations(self) -> dict[str, Operation]:
        """The store operations table (merge it with ``merge_tables``)."""
        return {
            "store.list": Operation(self.h_list),
            "store.connect": Operation(self.h_connect, once=True),
            "store.disconnect": Operation(self.h_disconnect),
            "store.exists": Operation(self.h_exists),
            "store.get": Operation(self.h_get),
            "store.get_range": Operation(self.h_get_range),
            "store.read": Operation(self.h_read),
            "store.close_stream": Operation(self.h_close_stream),
            "store.get_metadata": Operation(self.h_get_metadata),
            "store.multiget_metadata": Operation(self.h_multiget_metadata),
            "store.query": Operation(self.h_query),
            "store.query_keys": Operation(self.h_query_keys),
            "store.glob": Operation(self.h_glob),
            "store.set": Operation(self.h_set, once=True),
            "store.set_metadata": Operation(self.h_set_metadata, once=True),
            "store.update_metadata": Operation(self.h_update_metadata, once=True),
            "store.delete": Operation(self.h_delete, once=True),
            "store.upload_begin": Operation(self.h_upload_begin, once=True),
            "store.upload_chunk": Operation(self.h_upload_chunk),
            "store.upload_end": Operation(self.h_upload_end, once=True),
            "store.upload_abort": Operation(self.h_upload_abort),
            "store.transaction": Operation(self.h_transaction, once=True),
            "store.permissions": Operation(self.h_permissions, once=True),
            "store.check_permissions": Operation(self.h_check_permissions),
        }

    def close(self) -> None:
        """Abandon open transfers, finish running store calls, stop workers."""
        self._closed = True
        downloads, uploads = self.transfers.clear()
        for upload in uploads:
            with upload.cond:
                if not upload.finished and not upload.eof:
                    upload.aborted = "the daemon is stopping"
                upload.cond.notify()
        for upload in uploads:
            if upload.thread is not None:
                upload.thread.join(TRANSFER_TIMEOUT)
            if upload.staged is not None:
                upload.staged.close()
        self.pool.shutdown(wait=True)
        for download in downloads:
            download.close()
