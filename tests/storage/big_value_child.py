"""Child process for the large-value streaming tests (run as a script).

Usage: python big_value_child.py {sqlite|filesystem} DIRECTORY SIZE

Writes SIZE bytes of a periodic pattern to a file (produced on the fly,
never whole in memory), streams them into a store with ``from_file``
(``set_data``: the same path as ``set``), reads them back through ``get``
and copies them out with ``to_file``, checking every byte, and prints the
peak resident memory of this process in bytes.
"""

import os
import resource
import sys
import time

from encore.events.api import EventManager
from encore.storage.filesystem_store import FileSystemStore, init_shared_store
from encore.storage.sqlite_store import SqliteStore

BLOCK = bytes(range(256)) * 4096
TWICE = BLOCK * 2


def expected(offset, length):
    """The pattern bytes at ``offset`` (``length`` at most one block)."""
    start = offset % len(BLOCK)
    return TWICE[start : start + length]


def peak_rss():
    """Peak resident memory of this process, in bytes.

    VmHWM of the process's own address space. ``getrusage``'s ru_maxrss
    is not usable here: Linux carries the high-water mark of the address
    space replaced by ``exec`` over into it, so a child started from a
    big pytest process would report the parent's size.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def check_stream(read, size, what):
    offset = 0
    while chunk := read(1 << 20):
        assert chunk == expected(offset, len(chunk)), f"{what}: wrong bytes at {offset}"
        offset += len(chunk)
    assert offset == size, f"{what}: {offset} bytes instead of {size}"


def main():
    kind, directory, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    manager = EventManager()
    if kind == "sqlite":
        store = SqliteStore(os.path.join(directory, "big.db"), event_manager=manager)
    else:
        path = os.path.join(directory, "store")
        init_shared_store(path)
        store = FileSystemStore(path, event_manager=manager)
    store.connect()
    source = os.path.join(directory, "source.bin")
    with open(source, "wb") as f:
        for offset in range(0, size, len(BLOCK)):
            f.write(BLOCK[: min(len(BLOCK), size - offset)])

    started = time.perf_counter()
    store.from_file("big", source)
    stored = time.perf_counter()
    os.unlink(source)
    with store.get("big").data as stream:
        check_stream(stream.read, size, "get")
    read = time.perf_counter()
    out = os.path.join(directory, "out.bin")
    store.to_file("big", out)
    copied = time.perf_counter()
    with open(out, "rb") as f:
        check_stream(f.read, size, "to_file")
    os.unlink(out)
    with store.get_data_range("big", size - 10, size) as stream:
        assert stream.read() == expected(size - 10, 10)
    store.disconnect()
    print(
        f"from_file {stored - started:.2f}s get {read - stored:.2f}s "
        f"to_file {copied - read:.2f}s",
        file=sys.stderr,
    )
    print(peak_rss())


if __name__ == "__main__":
    main()
