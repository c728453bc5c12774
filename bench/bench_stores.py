"""Benchmark the stores of ``encore.storage`` against plain anchors.

Usage::

    python bench/bench_stores.py [--quick] [--dir DIRECTORY] [--only 123456]

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

6. ``PostgresStore`` on a private PostgreSQL cluster (unix socket in a
   temporary directory, started with ``initdb``/``pg_ctl`` and stopped by
   its pid): small ``set``/``get``/``get_metadata`` per second, anchors in
   the same run: plain psycopg running the statements the store runs
   (``BEGIN``, ``SELECT ... FOR UPDATE``, ``INSERT ... ON CONFLICT``,
   ``pg_notify``, ``COMMIT``; ``SELECT`` by key), and Redis ``SET``/``GET``
   through redis-py to a private ``redis-server`` on a unix socket;
   ``query`` over 100k keys with 100 matches (anchor: the same ``@>``
   statement through psycopg); ``from_file``/``to_file`` of a 1 GiB value
   (anchors: binary ``COPY`` of 1 MiB rows in one transaction, and
   ``SELECT`` of one row at a time). The cluster runs with
   ``synchronous_commit = off`` (``--pg-sync`` for ``on``): with a flush
   per commit the disk, not the client, is measured. Needs the server
   binaries, the ``postgres`` extra, and for the Redis anchor
   ``redis-server`` and redis-py (the ``bench`` extra).

Every timing is the best of several repeats, interleaved across the
variants of a section so that load from elsewhere hits them alike.
``--quick`` shrinks the sizes for a smoke run (figures then mean little).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
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
    import encore.storage._fs_index as module

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


# -- 6. PostgreSQL -----------------------------------------------------------------


@contextlib.contextmanager
def redis_on_socket():
    """A private redis-server on a unix socket in a temporary directory.

    Yields the socket path, or ``None`` (with a note) when redis-server or
    redis-py is missing. The server is stopped by its pid.
    """
    exe = shutil.which("redis-server")
    try:
        import redis  # noqa: F401
    except ImportError:
        exe = None
    if exe is None:
        print("\n(Redis anchor left out: needs redis-server and redis-py)")
        yield None
        return
    workdir = tempfile.mkdtemp(prefix="encr", dir="/tmp")
    path = os.path.join(workdir, "redis.sock")
    process = subprocess.Popen(
        [exe, "--port", "0", "--unixsocket", path, "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield path
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _pg_ops(store, psycopg, dsn, redis_path, n, repeat):
    """Rows (name, set/s, get+read/s, get_metadata/s) for small values."""
    data = b"x" * 100
    keys = [f"key{i}" for i in range(n)]
    metadata = [{"name": f"n{i}", "version": i, "type": "bench"} for i in range(n)]

    def store_set():
        for key, md in zip(keys, metadata):
            store.set(key, (io.BytesIO(data), md))

    def store_get():
        for key in keys:
            with store.get(key).data as stream:
                stream.read()

    def store_get_metadata():
        for key in keys:
            store.get_metadata(key)

    # The anchor: one autocommit connection, the store's own statements
    # (its table, so the same indexes are maintained), each set one
    # transaction with its NOTIFY, reads in binary like the store's.
    connection = psycopg.connect(dsn, autocommit=True)
    connection.execute(
        "CREATE TABLE bench_anchor (key bytea PRIMARY KEY, meta text NOT NULL, "
        "meta_index jsonb NOT NULL, data bytea, blob_id bigint, "
        "size bigint NOT NULL, created float8 NOT NULL, modified float8 NOT NULL)"
    )
    connection.execute(
        "CREATE INDEX ON bench_anchor USING gin (meta_index jsonb_path_ops) "
        "WITH (fastupdate = off)"
    )
    raw_keys = [key.encode() for key in keys]
    texts = [json.dumps(md, separators=(",", ":")) for md in metadata]
    select_old = (
        "SELECT meta, blob_id, created, modified FROM bench_anchor WHERE key = %s "
        "FOR UPDATE"
    )
    upsert = (
        "INSERT INTO bench_anchor (key, meta, meta_index, data, blob_id, size, "
        "created, "
        "modified) VALUES (%s, %s, %s::jsonb, %s, %s, %s, %s, %s) "
        "ON CONFLICT (key) DO UPDATE SET meta = EXCLUDED.meta, "
        "meta_index = EXCLUDED.meta_index, data = EXCLUDED.data, "
        "blob_id = EXCLUDED.blob_id, size = EXCLUDED.size, "
        "created = EXCLUDED.created, modified = EXCLUDED.modified"
    )
    select_value = (
        "SELECT meta, data, blob_id, size, created, modified FROM bench_anchor "
        "WHERE key = %s"
    )
    select_meta = "SELECT meta FROM bench_anchor WHERE key = %s"

    def anchor_set():
        for raw, text in zip(raw_keys, texts):
            now = time.time()
            with connection.transaction():
                connection.execute(select_old, (raw,)).fetchone()
                connection.execute(
                    upsert, (raw, text, text, data, None, len(data), now, now)
                )
                connection.execute(
                    "SELECT pg_notify(%s, %s)", ("bench_anchor__changes", text)
                )

    def anchor_get():
        for raw in raw_keys:
            row = connection.execute(select_value, (raw,), binary=True).fetchone()
            json.loads(row[0])

    def anchor_get_metadata():
        for raw in raw_keys:
            json.loads(
                connection.execute(select_meta, (raw,), binary=True).fetchone()[0]
            )

    rows = [
        ("PostgresStore", store_set, store_get, store_get_metadata),
        ("plain psycopg, same statements (anchor)", anchor_set, anchor_get,
         anchor_get_metadata),
    ]  # fmt: skip
    client = None
    if redis_path is not None:
        import redis

        client = redis.Redis(unix_socket_path=redis_path)

        def redis_set():
            for key in keys:
                client.set(key, data)

        def redis_get():
            for key in keys:
                client.get(key)

        rows.append(("Redis SET/GET, redis-py, unix socket (anchor)", redis_set,
                     redis_get, None))  # fmt: skip
    for _, *funcs in rows:
        funcs[0]()  # the keys exist: every timed set is a replacement
    tasks = [
        ((name, column), func)
        for name, *funcs in rows
        for column, func in enumerate(funcs)
        if func is not None
    ]
    times = interleaved(tasks, repeat)
    connection.close()
    if client is not None:
        client.close()
    return [
        (name, *[
            n / times[(name, column)] if func is not None else None
            for column, func in enumerate(funcs)
        ])
        for name, *funcs in rows
    ]  # fmt: skip


def _pg_query(store, psycopg, dsn, n, repeat):
    groups = n // 100
    target = f"g{groups // 2 + 1}"
    keys = [f"key{i}" for i in range(n)]
    values = [(b"", {"group": f"g{i % groups}", "i": i}) for i in range(n)]
    started = time.perf_counter()
    with store.transaction("load"):
        store.multiset(keys, values)
    loaded = time.perf_counter() - started
    connection = psycopg.connect(dsn, autocommit=True)
    # Fresh statistics, as autovacuum would give a table this size soon.
    connection.execute(f'ANALYZE "{store.table}"')
    plan = "\n".join(
        row[0]
        for row in connection.execute(
            f'EXPLAIN SELECT key, meta FROM "{store.table}" '
            "WHERE meta_index @> %s::jsonb",
            (json.dumps({"group": target}),),
        )
    )
    statement = f'SELECT key, meta FROM "{store.table}" WHERE meta_index @> %s::jsonb'
    criterion = json.dumps({"group": target})

    def anchor():
        return [
            (bytes(key).decode(), json.loads(meta))
            for key, meta in connection.execute(statement, (criterion,), binary=True)
        ]

    assert len(store.query(group=target)) == n // groups
    assert len(anchor()) == n // groups
    times = interleaved(
        [("store", lambda: store.query(group=target)), ("anchor", anchor)],
        repeat * 4,
    )
    connection.close()
    return loaded, times["store"], times["anchor"], plan


def _pg_stream(store, psycopg, sql, dsn, directory, size, repeat):
    source = os.path.join(directory, "pg-source.bin")
    block = os.urandom(MB)
    with open(source, "wb") as f:
        for _ in range(size // MB):
            f.write(block)
    target = os.path.join(directory, "pg-target.bin")
    connection = psycopg.connect(dsn, autocommit=True)
    chunks = sql.Identifier("bench_stream")
    connection.execute(
        sql.SQL(
            "CREATE TABLE {} (blob_id bigint, seq int, data bytea NOT NULL, "
            "PRIMARY KEY (blob_id, seq))"
        ).format(chunks)
    )
    connection.execute(
        sql.SQL("ALTER TABLE {} ALTER COLUMN data SET STORAGE EXTERNAL").format(chunks)
    )
    count = size // MB

    def anchor_in():
        with connection.transaction():
            connection.execute(sql.SQL("DELETE FROM {}").format(chunks))
            with (
                open(source, "rb") as src,
                connection.cursor().copy(
                    sql.SQL(
                        "COPY {} (blob_id, seq, data) FROM STDIN (FORMAT BINARY)"
                    ).format(chunks)
                ) as copy,
            ):
                copy.set_types(["int8", "int4", "bytea"])
                seq = 0
                while chunk := src.read(MB):
                    copy.write_row((1, seq, chunk))
                    seq += 1

    def anchor_out():
        query = sql.SQL("SELECT data FROM {} WHERE blob_id = 1 AND seq = %s").format(
            chunks
        )
        with open(target, "wb") as dst:
            for seq in range(count):
                dst.write(connection.execute(query, (seq,), binary=True).fetchone()[0])
        os.unlink(target)

    def store_in():
        store.from_file("big", source)

    def store_out():
        store.to_file("big", target)
        os.unlink(target)

    tasks = [
        (("store", "in"), store_in),
        (("store", "out"), store_out),
        (("anchor", "in"), anchor_in),
        (("anchor", "out"), anchor_out),
    ]
    times = interleaved(tasks, repeat)
    # The bytes came back as they went in.
    store.to_file("big", target)
    with open(target, "rb") as a, open(source, "rb") as b:
        same = hashlib.sha256(a.read()).digest() == hashlib.sha256(b.read()).digest()
    assert same, "PostgresStore.to_file gave other bytes"
    os.unlink(target)
    store.delete("big")
    connection.execute(sql.SQL("DROP TABLE {}").format(chunks))
    connection.close()
    os.unlink(source)
    return times


def bench_postgres(directory, quick, repeat, synchronous):
    try:
        import psycopg
        from psycopg import sql

        from encore.storage.postgres_cluster import PostgresCluster, find_pg_bin
        from encore.storage.postgres_store import PostgresStore
    except ImportError as error:
        print(f"\n(PostgreSQL section left out: {error})")
        return
    if find_pg_bin() is None:
        print("\n(PostgreSQL section left out: no initdb/pg_ctl: install postgresql)")
        return
    settings = {"synchronous_commit": "on" if synchronous else "off"}
    n_ops = 300 if quick else 3000
    n_query = 10_000 if quick else 100_000
    size = (32 if quick else 1024) * MB
    with PostgresCluster(settings) as cluster, redis_on_socket() as redis_path:
        version = psycopg.connect(cluster.dsn).info.server_version
        store = PostgresStore(cluster.dsn, "bench_store", event_manager=EventManager())
        store.connect()
        ops = _pg_ops(store, psycopg, cluster.dsn, redis_path, n_ops, repeat)
        query_store = PostgresStore(
            cluster.dsn, "bench_query", event_manager=EventManager()
        )
        query_store.connect()
        loaded, q_store, q_anchor, plan = _pg_query(
            query_store, psycopg, cluster.dsn, n_query, repeat
        )
        query_store.disconnect()
        streams = _pg_stream(
            store, psycopg, sql, cluster.dsn, directory, size, 2 if quick else 3
        )
        store.disconnect()
    print(
        f"\n### PostgresStore (PostgreSQL {version // 10000}.{version % 10000}, "
        f"psycopg {psycopg.__version__}, unix socket, synchronous_commit "
        f"{settings['synchronous_commit']})\n"
    )
    print("| store | set/s | get+read/s | get_metadata/s |")
    print("|---|---|---|---|")
    for name, *rates in ops:
        cells = [f"{rate:,.0f}" if rate is not None else "" for rate in rates]
        print(f"| {name} | " + " | ".join(cells) + " |")
    store_rates, anchor_rates = ops[0][1:], ops[1][1:]
    ratios = ", ".join(
        f"{label} {mine / theirs:.2f}x"
        for label, mine, theirs in zip(
            ("set", "get+read", "get_metadata"), store_rates, anchor_rates
        )
    )
    print(f"\nPostgresStore / plain psycopg: {ratios}")
    print(
        f"\n`query(group=...)` over {n_query:,} keys (100 matches): PostgresStore "
        f"{q_store * 1e3:.2f} ms, plain psycopg "
        f"{q_anchor * 1e3:.2f} ms (loading them in one transaction: {loaded:.1f} s)"
    )
    print("plan:\n    " + plan.replace("\n", "\n    "))
    mb = size / MB
    print(f"\nStreaming a {mb:.0f} MiB value (1 MiB chunk rows):\n")
    print("| | in MB/s | out MB/s |")
    print("|---|---|---|")
    print(
        f"| PostgresStore from_file / to_file | {mb / streams[('store', 'in')]:,.0f}"
        f" | {mb / streams[('store', 'out')]:,.0f} |"
    )
    print(
        "| plain psycopg: binary COPY in one transaction / SELECT a row at a time "
        f"(anchor) | {mb / streams[('anchor', 'in')]:,.0f} | "
        f"{mb / streams[('anchor', 'out')]:,.0f} |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, smoke run")
    parser.add_argument("--dir", default=None, help="where to put the data")
    parser.add_argument(
        "--only", default="123456", help="which sections to run, e.g. 35"
    )
    parser.add_argument(
        "--pg-sync",
        action="store_true",
        help="PostgreSQL with synchronous_commit = on (a flush per commit)",
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
        if "6" in args.only:
            bench_postgres(directory, quick, 5 if not quick else 1, args.pg_sync)


if __name__ == "__main__":
    main()
