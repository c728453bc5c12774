"""Benchmark the stores of ``encore.storage`` against plain anchors.

Usage::

    python bench/bench_stores.py [--quick] [--dir DIRECTORY]

Measures, in one run:

1. ``set`` / ``get`` (and read the data) / ``get_metadata`` operations per
   second on ``DictMemoryStore``, ``SqliteStore`` (a file) and
   ``FileSystemStore``, for a 100-byte value with three metadata fields;
   anchor: a plain ``sqlite3`` loop (``INSERT OR REPLACE`` in its own
   transaction, ``SELECT`` by key) on a WAL database.
2. The cost of the events a ``set`` emits when nobody listens:
   ``DictMemoryStore.set`` with its events, and with ``_emit`` replaced by
   a no-op.
3. ``query`` on one metadata field over 100k keys (100 matches):
   ``SqliteStore`` (expression index) and ``DictMemoryStore`` (scan);
   anchor: plain ``sqlite3`` with the field in an indexed column.
4. ``FileSystemStore.query`` over 10k keys: the first query (builds the
   index), a query after nothing changed, a query after another writer
   changed one file; anchor: a plain loop that opens and parses every
   metadata file.
5. MB/s of ``from_file`` and ``to_file`` with a 256 MiB value; anchors:
   ``shutil.copyfileobj`` of the same file, without and with ``fsync``.

Every timing is the best of several repeats, interleaved across the
variants of a section so that load from elsewhere hits them alike.
``--quick`` shrinks the sizes for a smoke run (figures then mean little).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from encore.events.api import EventManager  # noqa: E402
from encore.storage.dict_memory_store import DictMemoryStore  # noqa: E402
from encore.storage.filesystem_store import (  # noqa: E402
    FileSystemStore,
    init_shared_store,
)
from encore.storage.sqlite_store import SqliteStore  # noqa: E402

MB = 1 << 20


def best(func, repeat):
    """Run ``func`` ``repeat`` times; return the shortest wall time."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return min(times)


def make_stores(directory):
    manager = EventManager()
    memory = DictMemoryStore(event_manager=manager)
    sqlite = SqliteStore(os.path.join(directory, "bench.db"), event_manager=manager)
    fs_path = os.path.join(directory, "fs")
    init_shared_store(fs_path)
    fs = FileSystemStore(fs_path, event_manager=manager)
    fast_path = os.path.join(directory, "fs-fast")
    init_shared_store(fast_path)
    fast = FileSystemStore(fast_path, event_manager=manager, durable=False)
    for store in (memory, sqlite, fs, fast):
        store.connect()
    return {
        "DictMemoryStore": memory,
        "SqliteStore": sqlite,
        "FileSystemStore": fs,
        "FileSystemStore (durable=False)": fast,
    }


# -- 1. operations per second ---------------------------------------------------


def interleaved(tasks, repeat):
    """Best time of each ``(label, func)``, repeats interleaved across tasks.

    Interleaving spreads load from elsewhere on the machine over every
    task alike, so ratios between tasks of one run hold better.
    """
    times = {label: float("inf") for label, _ in tasks}
    for _ in range(repeat):
        for label, func in tasks:
            started = time.perf_counter()
            func()
            times[label] = min(times[label], time.perf_counter() - started)
    return times


def bench_ops(stores, directory, counts, repeat):
    data = b"x" * 100
    rows = []  # (name, n, set, get, get_metadata); None: not measured
    for name, store in stores.items():
        n = counts[name]
        keys = [f"key{i}" for i in range(n)]
        metadata = [{"name": f"n{i}", "version": i, "type": "bench"} for i in range(n)]

        def do_set(store=store, keys=keys, metadata=metadata):
            for key, md in zip(keys, metadata):
                store.set(key, (io.BytesIO(data), md))

        def do_get(store=store, keys=keys):
            for key in keys:
                with store.get(key).data as stream:
                    stream.read()

        def do_get_metadata(store=store, keys=keys):
            for key in keys:
                store.get_metadata(key)

        do_set()
        rows.append((name, n, do_set, do_get, do_get_metadata))

    n = counts["SqliteStore"]
    path = os.path.join(directory, "anchor.db")
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(
        "CREATE TABLE t (key TEXT PRIMARY KEY, metadata TEXT, data BLOB)"
    )
    keys = [f"key{i}" for i in range(n)]
    texts = [
        json.dumps({"name": f"n{i}", "version": i, "type": "bench"}) for i in range(n)
    ]

    def anchor_set():
        for key, text in zip(keys, texts):
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT OR REPLACE INTO t VALUES (?, ?, ?)", (key, text, data)
            )
            connection.execute("COMMIT")

    def anchor_get():
        for key in keys:
            connection.execute(
                "SELECT metadata, data FROM t WHERE key = ?", (key,)
            ).fetchone()

    def anchor_get_metadata():
        for key in keys:
            json.loads(
                connection.execute(
                    "SELECT metadata FROM t WHERE key = ?", (key,)
                ).fetchone()[0]
            )

    anchor_set()
    rows.append(
        ("plain sqlite3 (anchor)", n, anchor_set, anchor_get, anchor_get_metadata)
    )

    n = counts["FileSystemStore"]
    plain = os.path.join(directory, "plain-files")
    os.mkdir(plain)

    def files_set(sync):
        def run():
            for i in range(n):
                for suffix, payload in (
                    (".data", data),
                    (".metadata", texts[i % len(texts)].encode()),
                ):
                    temp = os.path.join(plain, f".tmp{suffix}")
                    with open(temp, "wb") as f:
                        f.write(payload)
                        if sync:
                            f.flush()
                            os.fsync(f.fileno())
                    os.replace(temp, os.path.join(plain, f"key{i}{suffix}"))

        return run

    def files_get():
        for i in range(n):
            with open(os.path.join(plain, f"key{i}.data"), "rb") as f:
                f.read()
            with open(os.path.join(plain, f"key{i}.metadata"), "rb") as f:
                json.loads(f.read())

    def files_get_metadata():
        for i in range(n):
            with open(os.path.join(plain, f"key{i}.metadata"), "rb") as f:
                json.loads(f.read())

    files_set(False)()
    rows.append(
        (
            "plain files: temp + rename, fsync (anchor)",
            n,
            files_set(True),
            files_get,
            files_get_metadata,
        )
    )
    rows.append(
        (
            "plain files: temp + rename, no fsync (anchor)",
            n,
            files_set(False),
            None,
            None,
        )
    )
    tasks = [
        ((name, column), func)
        for name, _, *funcs in rows
        for column, func in enumerate(funcs)
        if func is not None
    ]
    times = interleaved(tasks, repeat)
    connection.close()
    print("\n### Operations per second (100-byte value, 3 metadata fields)\n")
    print("| store | set/s | get+read/s | get_metadata/s |")
    print("|---|---|---|---|")
    for name, n, *funcs in rows:
        cells = [
            f"{n / times[(name, column)]:,.0f}" if func is not None else ""
            for column, func in enumerate(funcs)
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


# -- 2. event cost ---------------------------------------------------------------


def bench_event_cost(n, repeat):
    store = DictMemoryStore(event_manager=EventManager())
    data = b"x" * 100
    metadata = {"name": "n", "version": 1, "type": "bench"}

    def sets():
        for i in range(n):
            store.set(f"k{i % 100}", (io.BytesIO(data), metadata))

    # Alternate the two variants so that load from elsewhere hits both.
    with_times, without_times = [], []
    for _ in range(repeat * 8):
        store.__dict__.pop("_emit", None)
        with_times.append(best(sets, 1) / n)
        store._emit = lambda events: None
        without_times.append(best(sets, 1) / n)
    with_events = min(with_times)
    without_events = min(without_times)
    cost = with_events - without_events
    print("\n### Cost of the events of a `set` when nobody listens\n")
    print("| DictMemoryStore.set | µs per set |")
    print("|---|---|")
    print(f"| with events | {with_events * 1e6:.2f} |")
    print(f"| events switched off (`_emit` no-op) | {without_events * 1e6:.2f} |")
    print(
        f"| difference: the events | {cost * 1e6:.2f} "
        f"({cost / with_events:.0%} of a set) |"
    )


# -- 3. query over 100k keys -------------------------------------------------------


def bench_query(directory, n, repeat):
    groups = n // 100
    target = f"g{groups // 2 + 1}"
    memory = DictMemoryStore(event_manager=EventManager())
    sqlite = SqliteStore(
        os.path.join(directory, "query.db"), event_manager=EventManager()
    )
    sqlite.connect()
    values = [(b"", {"group": f"g{i % groups}", "i": i}) for i in range(n)]
    keys = [f"key{i}" for i in range(n)]
    memory.multiset(keys, values)
    with sqlite.transaction("load"):
        sqlite.multiset(keys, values)
    sqlite.query(group="g0")  # creates the index

    connection = sqlite3.connect(os.path.join(directory, "query-anchor.db"))
    connection.execute(
        "CREATE TABLE t (key TEXT PRIMARY KEY, grp TEXT, metadata TEXT, data BLOB)"
    )
    connection.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?)",
        ((k, md["group"], json.dumps(md), b"") for k, (_, md) in zip(keys, values)),
    )
    connection.execute("CREATE INDEX t_grp ON t(grp)")
    connection.commit()

    def anchor():
        [
            (key, json.loads(text))
            for key, text in connection.execute(
                "SELECT key, metadata FROM t WHERE grp = ?", (target,)
            )
        ]

    rows = [
        (
            "SqliteStore (expression index)",
            best(lambda: sqlite.query(group=target), repeat),
        ),
        ("DictMemoryStore (scan)", best(lambda: memory.query(group=target), repeat)),
        ("plain sqlite3, indexed column (anchor)", best(anchor, repeat)),
    ]
    assert len(sqlite.query(group=target)) == n // groups
    sqlite.disconnect()
    connection.close()
    print(f"\n### `query(group=...)` over {n:,} keys ({n // groups} matches)\n")
    print("| store | ms |")
    print("|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1e3:.2f} |")


# -- 4. FileSystemStore.query -----------------------------------------------------


def bench_fs_query(directory, n, repeat):
    path = os.path.join(directory, "fsq")
    init_shared_store(path)
    store = FileSystemStore(path, event_manager=EventManager(), durable=False)
    store.connect()
    groups = n // 100
    target = f"g{groups // 2 + 1}"
    for i in range(n):
        store.set(f"key{i}", (io.BytesIO(b""), {"group": f"g{i % groups}", "i": i}))
    other = FileSystemStore(path, event_manager=EventManager(), durable=False)
    other.connect()

    started = time.perf_counter()
    store.query(group="g1")
    first = time.perf_counter() - started
    unchanged = best(lambda: store.query(group=target), repeat)
    counter = iter(range(10**9))

    def after_change():
        other.update_metadata("key7", {"touch": next(counter)})
        started = time.perf_counter()
        result = store.query(group=target)
        elapsed = time.perf_counter() - started
        assert len(result) == n // groups
        return elapsed

    changed = min(after_change() for _ in range(repeat))

    def plain_loop():
        result = []
        for name in os.listdir(path):
            if not name.endswith(".metadata"):
                continue
            with open(os.path.join(path, name), "rb") as f:
                metadata = json.load(f)
            if metadata.get("group") == target:
                result.append((name[: -len(".metadata")], metadata))
        assert len(result) == n // groups

    loop = best(plain_loop, repeat)
    store.disconnect()

    # The same without inotify: every query stats every file.
    import encore.storage.filesystem_store as module

    real_inotify = module._Inotify

    def no_inotify(path):
        raise OSError("inotify switched off for this measurement")

    real_racy = module._RACY_NS
    module._Inotify = no_inotify
    try:
        polling = FileSystemStore(path, event_manager=EventManager(), durable=False)
        polling.connect()
        # Listing changed recently (or timestamps can't be trusted): every
        # query scans the directory and stats every file.
        module._RACY_NS = 10**18
        polling.query(group=target)
        scanned = best(lambda: polling.query(group=target), repeat)
        # Listing unchanged for longer than the safety margin: only the
        # metadata files are stat'ed.
        module._RACY_NS = real_racy
        time.sleep(real_racy / 1e9 + 0.1)
        polling.query(group=target)
        polled = best(lambda: polling.query(group=target), repeat)
        polling.disconnect()
    finally:
        module._Inotify = real_inotify
        module._RACY_NS = real_racy
    other.disconnect()
    print(f"\n### `FileSystemStore.query(group=...)` over {n:,} keys\n")
    print("| case | ms | plain loop / case |")
    print("|---|---|---|")
    print(
        f"| first query (builds the index) | {first * 1e3:.1f} | {loop / first:.1f}x |"
    )
    print(
        f"| nothing changed since the last query | {unchanged * 1e3:.2f} | "
        f"{loop / unchanged:.0f}x |"
    )
    print(
        f"| another store instance changed one key | {changed * 1e3:.2f} | "
        f"{loop / changed:.0f}x |"
    )
    print(
        f"| without inotify, listing changed in the last 2 s (scan, stat all) | "
        f"{scanned * 1e3:.2f} | {loop / scanned:.1f}x |"
    )
    print(
        f"| without inotify, listing older (stat metadata files) | "
        f"{polled * 1e3:.2f} | {loop / polled:.1f}x |"
    )
    print(
        f"| plain loop: open and parse every metadata file (anchor) | "
        f"{loop * 1e3:.1f} | 1x |"
    )


# -- 5. streaming ------------------------------------------------------------------


def bench_streaming(directory, size, repeat):
    source = os.path.join(directory, "source.bin")
    block = os.urandom(MB)
    with open(source, "wb") as f:
        for _ in range(size // MB):
            f.write(block)
    target = os.path.join(directory, "target.bin")

    def plain_copy(sync):
        def run():
            with open(source, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, MB)
                if sync:
                    dst.flush()
                    os.fsync(dst.fileno())
            os.unlink(target)

        return run

    def plain_sqlite():
        path = os.path.join(directory, "stream-anchor.db")
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS c (b INTEGER, o INTEGER, d BLOB, "
            "PRIMARY KEY (b, o))"
        )
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("DELETE FROM c")
        with open(source, "rb") as src:
            offset = 0
            while chunk := src.read(MB):
                connection.execute("INSERT INTO c VALUES (1, ?, ?)", (offset, chunk))
                offset += len(chunk)
        connection.execute("COMMIT")
        connection.close()

    durable_path = os.path.join(directory, "fs-stream")
    fast_path = os.path.join(directory, "fs-stream-fast")
    init_shared_store(durable_path)
    init_shared_store(fast_path)
    stores = [
        ("SqliteStore", SqliteStore(os.path.join(directory, "stream.db"))),
        ("FileSystemStore (durable, fsync)", FileSystemStore(durable_path)),
        ("FileSystemStore (durable=False)", FileSystemStore(fast_path, durable=False)),
        ("DictMemoryStore", DictMemoryStore()),
    ]
    tasks = [
        ("copy", plain_copy(False)),
        ("copy+fsync", plain_copy(True)),
        ("sqlite3", plain_sqlite),
    ]
    for name, store in stores:
        store.event_manager = EventManager()
        store.connect()

        def to_file(store=store):
            store.to_file("big", target)
            os.unlink(target)

        tasks.append(((name, "in"), lambda store=store: store.from_file("big", source)))
        tasks.append(((name, "out"), to_file))
    times = interleaved(tasks, repeat)
    rows = [
        ("shutil.copyfileobj (anchor)", times["copy"], None),
        ("shutil.copyfileobj + fsync (anchor)", times["copy+fsync"], None),
        (
            "plain sqlite3: 1 MiB blob rows, one transaction (anchor)",
            times["sqlite3"],
            None,
        ),
    ]
    for name, store in stores:
        rows.append((name, times[(name, "in")], times[(name, "out")]))
        store.delete("big")
        store.disconnect()
    os.unlink(source)
    anchor = rows[0][1]
    mb = size / MB
    print(f"\n### Streaming a {mb:.0f} MiB value\n")
    print(
        "| store | from_file MB/s | to_file MB/s | from_file / copy | to_file / copy |"
    )
    print("|---|---|---|---|---|")
    for name, t_in, t_out in rows:
        if t_out is None:
            print(f"| {name} | {mb / t_in:,.0f} | | | |")
        else:
            print(
                f"| {name} | {mb / t_in:,.0f} | {mb / t_out:,.0f} | "
                f"{anchor / t_in:.0%} | {anchor / t_out:.0%} |"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, smoke run")
    parser.add_argument("--dir", default=None, help="where to put the data")
    parser.add_argument(
        "--only", default="12345", help="which sections to run, e.g. 35"
    )
    args = parser.parse_args()
    quick = args.quick
    repeat = 2 if quick else 5
    print(
        f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    with tempfile.TemporaryDirectory(prefix="encbench", dir=args.dir) as directory:
        if "1" in args.only:
            counts = (
                {
                    "DictMemoryStore": 2000,
                    "SqliteStore": 500,
                    "FileSystemStore": 200,
                    "FileSystemStore (durable=False)": 200,
                }
                if quick
                else {
                    "DictMemoryStore": 20000,
                    "SqliteStore": 5000,
                    "FileSystemStore": 2000,
                    "FileSystemStore (durable=False)": 2000,
                }
            )
            stores = make_stores(directory)
            bench_ops(stores, directory, counts, 5 if not quick else 1)
            for store in stores.values():
                store.disconnect()
        if "2" in args.only:
            bench_event_cost(2000 if quick else 10000, repeat)
        if "3" in args.only:
            bench_query(directory, 10_000 if quick else 100_000, repeat)
        if "4" in args.only:
            bench_fs_query(directory, 1000 if quick else 10_000, repeat)
        if "5" in args.only:
            bench_streaming(directory, (16 if quick else 256) * MB, 2 if quick else 3)


if __name__ == "__main__":
    main()
