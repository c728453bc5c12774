"""Chunked transfers: the downloads and uploads a store service holds.

A :class:`Download` is a store's data stream a client reads chunk by
chunk (``store.get`` then ``store.read``); an :class:`Upload` feeds the
store's own ``set``, running on a thread of its own, through an
:class:`UploadStream` with the chunks as they arrive.  :class:`Transfers`
is the table of both, with the bounds: at most ``MAX_TRANSFERS`` open at
once, ``MAX_STREAMS_PER_CLIENT`` downloads per client, and the finished
downloads kept for a repeated last read within ``MAX_FINISHED_DOWNLOADS``
and ``MAX_FINISHED_BYTES``.  The handlers that use them are in
:mod:`.operations`.
"""

from __future__ import annotations

__all__ = [
    "Download",
    "Upload",
    "UploadStream",
    "Transfers",
    "read_full",
    "TRANSFER_TIMEOUT",
    "STREAM_IDLE",
    "MAX_TRANSFERS",
    "MAX_STREAMS_PER_CLIENT",
    "MAX_FINISHED_DOWNLOADS",
    "MAX_FINISHED_BYTES",
    "UPLOAD_WINDOW",
    "MIN_CHUNK",
    "MAX_CHUNK",
]

import collections
import io
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from encore_client._protocol import ErrorCode

from .._deferred import Deferred
from .._handlers import Response

logger = logging.getLogger("encored")

#: Seconds an upload may wait for its next chunk before it is abandoned
#: (the client died or hung): the store's ``set`` then fails and the old
#: value stays.  ``ENCORED_TRANSFER_TIMEOUT`` overrides it (tests).
TRANSFER_TIMEOUT = float(os.environ.get("ENCORED_TRANSFER_TIMEOUT", "30"))
#: Seconds an idle download or a staged upload is kept for its client.
STREAM_IDLE = 120.0
#: Most transfers (downloads + uploads + staged values) open at once.
MAX_TRANSFERS = 256
#: Most open download streams per client (the oldest are closed first).
MAX_STREAMS_PER_CLIENT = 32
#: Downloads read to their end that are still kept, so that a client whose
#: last reply was lost can ask for the last chunk again; the oldest go first.
#: They hold no open stream, so they do not count as transfers.
MAX_FINISHED_DOWNLOADS = 64
#: Most bytes of last chunks the finished downloads may hold together (a
#: last chunk is up to ``MAX_CHUNK``: 64 of them would be 1 GiB); beyond it
#: the oldest finished downloads go first, as beyond the count.
MAX_FINISHED_BYTES = 64 * 1024 * 1024
#: Chunks of an upload that may wait for the store call and still be
#: acknowledged on arrival (so the daemon holds at most this many plus the
#: one being written and the one arriving).
UPLOAD_WINDOW = 2
MIN_CHUNK = 16 * 1024
MAX_CHUNK = 16 * 1024 * 1024


def read_full(stream: Any, size: int) -> bytes:
    """Read ``size`` bytes, fewer only at the end of the stream."""
    data = stream.read(size)
    if data is None:
        data = b""
    if len(data) >= size or not data:
        return bytes(data)
    parts = [data]
    have = len(data)
    while have < size:
        more = stream.read(size - have)
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts)


class Download:
    """An open data stream a client reads chunk by chunk."""

    def __init__(self, sid: str, client: str, stream: Any, inline: bool) -> None:
        self.id = sid
        self.client = client
        self.stream: Any = stream
        self.inline = inline
        self.position = 0
        self.last: tuple[int, bytes] | None = None
        self.touched = time.monotonic()
        self.lock = threading.Lock()

    def close(self) -> None:
        """Close the store's stream (the download is then finished)."""
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:
                logger.exception("closing a download stream failed")


class UploadStream(io.RawIOBase):
    """The stream a store's ``set`` reads an upload from, chunk by chunk."""

    def __init__(
        self, upload: Upload, on_end: Callable[[], None] | None = None
    ) -> None:
        super().__init__()
        self._upload = upload
        self._current = memoryview(b"")
        self._on_end = on_end

    def _next(self) -> memoryview:
        chunk = self._upload.next_chunk()
        if not chunk and self._on_end is not None:
            on_end, self._on_end = self._on_end, None
            on_end()
        return chunk

    def readable(self) -> bool:
        """Always: the store reads from it."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the current chunk (waiting for one if needed)."""
        if not self._current:
            self._current = self._next()
            if not self._current:
                return 0
        n = min(len(buffer), len(self._current))
        buffer[:n] = self._current[:n]
        self._current = self._current[n:]
        return n

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes with one copy (``readinto`` needs two)."""
        if size is None or size < 0:
            return self.readall()
        if not self._current:
            self._current = self._next()
            if not self._current:
                return b""
        current = self._current
        if size >= len(current):
            self._current = memoryview(b"")
            whole = current.obj
            if isinstance(whole, bytes) and len(whole) == len(current):
                return whole  # the chunk as it came: no copy at all
            return current.tobytes()
        self._current = current[size:]
        return current[:size].tobytes()


class Upload:
    """One chunked upload and the thread running the store call it feeds."""

    def __init__(self, uid: str, client: str, mode: str) -> None:
        self.id = uid
        self.client = client
        self.mode = mode
        self.cond = threading.Condition()
        # Chunks not yet taken by the store call, each with the Deferred
        # of its acknowledgement (None: acknowledged when it arrived).
        self.queue: collections.deque[tuple[bytes, Deferred | None]] = (
            collections.deque()
        )
        self.next_seq = 0
        self.eof = False
        self.aborted: str | None = None
        self.finished = False
        self.error: tuple[Any, str] | None = None
        self.end: Deferred | None = None
        self.staged: Any = None
        self.touched = time.monotonic()
        self.thread: threading.Thread | None = None

    def next_chunk(self) -> memoryview:
        """Block until the next chunk (empty at the end); ack it."""
        with self.cond:
            while True:
                if self.aborted is not None:
                    raise OSError(f"upload abandoned: {self.aborted}")
                if self.queue:
                    chunk, ack = self.queue.popleft()
                    self.touched = time.monotonic()
                    if ack is not None:
                        ack.resolve(Response({"ok": True}))
                    return memoryview(chunk)
                if self.eof:
                    return memoryview(b"")
                if not self.cond.wait(TRANSFER_TIMEOUT):
                    if not self.queue and not self.eof and self.aborted is None:
                        self.aborted = (
                            f"no data from the client for {TRANSFER_TIMEOUT:g} s"
                        )

    def finish(self, error: tuple[Any, str] | None) -> None:
        """Record the outcome; answer the end request and waiting chunks."""
        with self.cond:
            self.finished = True
            self.error = error
            queued = list(self.queue)
            self.queue.clear()
            end = self.end
        failure = error or (ErrorCode.TRANSFER, "upload ended before this chunk")
        for _chunk, ack in queued:
            if ack is not None:
                ack.fail(*failure)
        if end is not None:
            self._answer(end)

    def _answer(self, end: Deferred) -> None:
        if self.error is not None:
            end.fail(*self.error)
        elif self.mode == "stage":
            end.resolve(Response({"staged": self.id}))
        else:
            end.resolve(Response({"ok": True}))


class Transfers:
    """The open downloads and uploads of a store service (thread-safe).

    ``downloads`` also holds the finished downloads (their stream closed,
    their last chunk kept) until they are dropped within the bounds.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.downloads: dict[str, Download] = {}
        self.uploads: dict[str, Upload] = {}
        #: Finished downloads (in ``downloads`` too) in the order they
        #: finished, with the bytes of the last chunk each keeps.
        self._finished: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._finished_bytes = 0

    def in_progress(self) -> int:
        """Open downloads plus uploads (what ``MAX_TRANSFERS`` bounds)."""
        with self._lock:
            return len(self.downloads) - len(self._finished) + len(self.uploads)

    def counts(self) -> dict[str, int]:
        """``downloads`` (open), ``finished_downloads``, ``finished_bytes``
        and ``uploads`` (uploads and staged values)."""
        with self._lock:
            return {
                "downloads": len(self.downloads) - len(self._finished),
                "finished_downloads": len(self._finished),
                "finished_bytes": self._finished_bytes,
                "uploads": len(self.uploads),
            }

    def _drop_download(self, sid: str) -> Download:
        # Called with the lock held.
        size = self._finished.pop(sid, None)
        if size is not None:
            self._finished_bytes -= size
        return self.downloads.pop(sid)

    def add_download(self, download: Download) -> list[Download]:
        """Register an open download; return its client's evicted ones.

        A client that opens values and never reads them to the end
        (metadata only, say) must not pile up open files: beyond
        ``MAX_STREAMS_PER_CLIENT`` its oldest downloads are dropped (the
        caller closes them).
        """
        client = download.client
        with self._lock:
            self.downloads[download.id] = download
            mine = [k for k, d in self.downloads.items() if d.client == client]
            return [self._drop_download(k) for k in mine[:-MAX_STREAMS_PER_CLIENT]]

    def download(self, sid: object) -> Download | None:
        """The download named ``sid`` (``None`` if unknown)."""
        with self._lock:
            return self.downloads.get(sid) if isinstance(sid, str) else None

    def finished(self, download: Download) -> None:
        """Keep a download read to its end, within the bounds.

        Beyond ``MAX_FINISHED_DOWNLOADS`` finished downloads or
        ``MAX_FINISHED_BYTES`` of their last chunks, the ones that
        finished first are dropped (a repeated read of theirs then gets
        ``TRANSFER``).
        """
        size = len(download.last[1]) if download.last is not None else 0
        with self._lock:
            if self.downloads.get(download.id) is not download:
                return  # closed or expired meanwhile
            self._finished[download.id] = size
            self._finished_bytes += size
            while self._finished and (
                len(self._finished) > MAX_FINISHED_DOWNLOADS
                or self._finished_bytes > MAX_FINISHED_BYTES
            ):
                sid, dropped = self._finished.popitem(last=False)
                self._finished_bytes -= dropped
                del self.downloads[sid]

    def close_download(self, sid: object, client: str) -> Download | None:
        """Forget ``client``'s download ``sid``; return it to be closed."""
        with self._lock:
            download = self.downloads.get(sid) if isinstance(sid, str) else None
            if download is None or download.client != client:
                return None
            return self._drop_download(download.id)

    def add_upload(self, upload: Upload) -> None:
        """Register an upload (or a staged value) under its id."""
        with self._lock:
            self.uploads[upload.id] = upload

    def upload(self, uid: object) -> Upload | None:
        """The upload named ``uid`` (``None`` if unknown)."""
        with self._lock:
            return self.uploads.get(uid) if isinstance(uid, str) else None

    def pop_upload(self, uid: object) -> Upload | None:
        """Forget the upload named ``uid``; return it (``None`` if unknown)."""
        with self._lock:
            return self.uploads.pop(uid, None) if isinstance(uid, str) else None

    def expire(self, now: float) -> tuple[list[Download], list[Upload]]:
        """Drop downloads idle and uploads finished for ``STREAM_IDLE``
        seconds; return them (the caller closes them)."""
        with self._lock:
            old = [
                sid
                for sid, d in self.downloads.items()
                if now - d.touched > STREAM_IDLE
            ]
            stale = [
                uid
                for uid, u in self.uploads.items()
                if u.finished and now - u.touched > STREAM_IDLE
            ]
            downloads = [self._drop_download(sid) for sid in old]
            uploads = [self.uploads.pop(uid) for uid in stale]
        return downloads, uploads

    def clear(self) -> tuple[list[Download], list[Upload]]:
        """Drop everything; return what was held (at shutdown)."""
        with self._lock:
            downloads = list(self.downloads.values())
            uploads = list(self.uploads.values())
            self.downloads.clear()
            self.uploads.clear()
            self._finished.clear()
            self._finished_bytes = 0
        return downloads, uploads
