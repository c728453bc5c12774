"""Downloads read to their end are kept within a bound of bytes, not only of count.

A finished download keeps its last chunk so that a client whose last reply
was lost can read it again; a last chunk may be 16 MiB, so 64 of them
(``MAX_FINISHED_DOWNLOADS``) could hold 1 GiB in the daemon.  Their last
chunks together stay within ``MAX_FINISHED_BYTES``, the oldest dropped
first.  Checked on a real daemon by its memory, and exactly on the
daemon's service in this process.
"""

from __future__ import annotations

import pytest

from encore_client import RemoteStore, TransferError, ZmqTransport
from encore_client.testing import InProcessDaemon
from encored.stores.transfers import (
    MAX_FINISHED_BYTES,
    MAX_FINISHED_DOWNLOADS,
    MAX_STREAMS_PER_CLIENT,
    MIN_CHUNK,
)

MiB = 1024 * 1024


def read_to_end(store: RemoteStore, key: str, chunk: int) -> tuple[dict, bytes]:
    """Read ``key`` to its end by raw calls: ``(args of the last read, data)``."""
    reply = store._call("store.get", {"key": key, "chunk": chunk})
    stream, parts = reply.result["stream"], [reply.frames[0]]
    offset = len(parts[0])
    while True:
        args = {"stream": stream, "offset": offset, "size": chunk}
        reply = store._call("store.read", dict(args), with_store=False)
        parts.append(reply.frames[0])
        if reply.result["eof"]:
            return args, b"".join(parts)
        offset += len(reply.frames[0])


def read_again(store: RemoteStore, args: dict) -> bytes:
    """Repeat a read as a client whose reply was lost does."""
    reply = store._call("store.read", dict(args), with_store=False)
    assert reply.result["eof"] is True
    return reply.frames[0]


def rss(pid: int) -> int:
    """Resident bytes of process ``pid`` now."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_real_daemon_holds_a_bounded_amount_of_finished_downloads(own_daemon):
    daemon = own_daemon('[stores.mem]\ntype = "memory"\n')
    runtime = own_daemon.base / "rt"
    chunk = 8 * MiB
    value = bytes(range(256)) * ((2 * chunk - 1) // 256) + b"x" * 255
    assert len(value) == 2 * chunk - 1  # a last chunk of 8 MiB - 1
    # Two clients: each keeps at most MAX_STREAMS_PER_CLIENT downloads.
    readers = [RemoteStore("mem", runtime) for _ in range(2)]
    reads = 20
    assert reads <= MAX_STREAMS_PER_CLIENT
    try:
        readers[0].set_data("v", value)
        # Warm up (the first read's buffers), then count from there.
        first_args, data = read_to_end(readers[0], "v", chunk)
        assert data == value
        before = rss(daemon.process.pid)
        last = {}
        for reader in readers:
            for _ in range(reads):
                last[reader], data = read_to_end(reader, "v", chunk)
                assert data == value
        after = rss(daemon.process.pid)
        # The documented 64 MiB plus room for a few messages in flight; the
        # 40 last chunks of 8 MiB kept without the bound grew it by 320 MiB
        # (measured), with it by 64.
        assert MAX_FINISHED_BYTES == 64 * MiB
        assert after - before < (64 + 48) * MiB, (before, after)
        # The daemon says what it keeps (encore status shows it).
        with ZmqTransport(runtime) as transport:
            status = transport.request("status").result["service"]["transfers"]
        kept = MAX_FINISHED_BYTES // (chunk - 1)
        assert status["finished_downloads"] == kept
        assert status["finished_bytes"] == kept * (chunk - 1)
        assert status["downloads"] == 0 and status["uploads"] == 0
        # Right after eof the newest download answers a repeated read ...
        assert read_again(readers[1], last[readers[1]]) == value[chunk:]
        # ... while the oldest was dropped for the bytes, not the count.
        assert 2 * reads + 1 < MAX_FINISHED_DOWNLOADS
        with pytest.raises(TransferError, match="unknown data stream"):
            read_again(readers[0], first_args)
    finally:
        for reader in readers:
            reader.disconnect()


def test_finished_downloads_keep_within_their_bytes_oldest_dropped_first():
    chunk = 4 * MiB
    value = b"\x07" * (2 * chunk - MIN_CHUNK)  # last chunk: 4 MiB - 16 KiB
    last_size = chunk - MIN_CHUNK
    kept = MAX_FINISHED_BYTES // last_size
    with InProcessDaemon(stores={"mem": {"type": "memory"}}) as daemon:
        service = daemon.service
        readers = [daemon.store("mem") for _ in range(2)]
        readers[0].set_data("v", value)
        finished = []
        for i in range(kept + 5):
            reader = readers[i % 2]
            args, data = read_to_end(reader, "v", chunk)
            assert data == value
            finished.append((reader, args))
            counts = service.transfer_counts()
            assert counts["finished_bytes"] <= MAX_FINISHED_BYTES
            assert counts["finished_downloads"] == min(i + 1, kept)
            assert counts["downloads"] == 0
        assert service.transfer_counts()["finished_bytes"] == kept * last_size
        # The newest still answer a repeated read; the first five are gone.
        for reader, args in finished[-kept:]:
            assert read_again(reader, args) == value[chunk:]
        for reader, args in finished[:5]:
            with pytest.raises(TransferError):
                read_again(reader, args)


def test_small_finished_downloads_are_bounded_by_count():
    value = b"\x01" * (MIN_CHUNK + 10)  # last chunk: 10 bytes
    clients = MAX_FINISHED_DOWNLOADS // MAX_STREAMS_PER_CLIENT + 1
    with InProcessDaemon(stores={"mem": {"type": "memory"}}) as daemon:
        readers = [daemon.store("mem") for _ in range(clients)]
        readers[0].set_data("v", value)
        for reader in readers:
            for _ in range(MAX_STREAMS_PER_CLIENT):
                assert read_to_end(reader, "v", MIN_CHUNK)[1] == value
        counts = daemon.service.transfer_counts()
        assert counts["finished_downloads"] == MAX_FINISHED_DOWNLOADS
        assert counts["finished_bytes"] == 10 * MAX_FINISHED_DOWNLOADS


def test_closing_or_expiring_a_finished_download_gives_back_its_bytes():
    value = b"\x02" * (MIN_CHUNK + 100)
    with InProcessDaemon(stores={"mem": {"type": "memory"}}) as daemon:
        store = daemon.store("mem")
        store.set_data("v", value)
        args, _ = read_to_end(store, "v", MIN_CHUNK)
        assert daemon.service.transfer_counts()["finished_bytes"] == 100
        store._call("store.close_stream", {"stream": args["stream"]}, with_store=False)
        counts = daemon.service.transfer_counts()
        assert counts["finished_bytes"] == 0 and counts["finished_downloads"] == 0
