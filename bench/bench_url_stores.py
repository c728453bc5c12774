"""URL stores against the same loopback servers driven directly.

Run:  python bench/bench_url_stores.py [--size-mib 256] [--repeat 3]

Each row measures one of our stores and, in the same run, its anchor: the
same HTTP work done by hand with the library the store uses, against the
same server, so that the ratio shows the store's own overhead.

- ``dynamic stream up/down``: `DynamicURLStore.set` / ``get_data`` of one
  large value (MB/s), against ``requests`` PUT with a generator body and
  GET with ``iter_content``, both in 1 MiB buffers.
- ``dynamic small set/get``: ops/s of a 100-byte value. A store ``set`` is
  two requests (data, metadata) and a ``get`` + read is two (metadata,
  data): the anchor does the same requests by hand, so the ratio is the
  store's overhead; one raw PUT is shown as well.
- ``static get``: ops/s of ``get_data(...).read()`` of a 100-byte file,
  against ``urllib.request.urlopen(url).read()``.
- ``static update_index``: ms to reload a 10,000-key index, against
  ``urlopen`` + ``json.loads`` of the same file.

Server and client share one process (and its GIL), for the store and the
anchor alike. Best of ``--repeat`` runs, store and anchor runs interleaved.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from encore.events.event_manager import EventManager  # noqa: E402
from encore.storage.dynamic_url_store import DynamicURLStore  # noqa: E402
from encore.storage.http_test_servers import (  # noqa: E402
    RestStoreServer,
    StaticSiteServer,
)
from encore.storage.static_url_store import StaticURLStore  # noqa: E402

MIB = 1024 * 1024
BLOCK = hashlib.sha256(b"bench").digest() * (MIB // 32)


class Pattern(io.RawIOBase):
    """``size`` bytes generated on the fly, never held whole."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        n = min(n, len(BLOCK))
        self.left -= n
        return BLOCK[:n]


def best(repeat: int, func) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def pair(repeat: int, ours, anchor) -> tuple[float, float]:
    """Best times of ``ours`` and ``anchor``, their runs interleaved.

    Interleaving spreads the machine's load swings over both sides.
    """
    ours_times, anchor_times = [], []
    for _ in range(repeat):
        ours_times.append(best(1, ours))
        anchor_times.append(best(1, anchor))
    return min(ours_times), min(anchor_times)


def bench_dynamic(size: int, repeat: int, ops: int) -> list[tuple]:
    rows = []
    with RestStoreServer() as server:
        store = DynamicURLStore(
            server.base_url, server.query_url, event_manager=EventManager()
        )
        store.connect()
        session = requests.Session()
        url = server.base_url + "/raw/data"

        def store_up():
            store.set("big", (Pattern(size), {}))

        def raw_up():
            source = Pattern(size)
            session.put(url, data=iter(lambda: source.read(MIB), b"")).close()

        def store_down():
            with store.get_data("big") as stream:
                while stream.read(MIB):
                    pass

        def raw_down():
            with session.get(url, stream=True) as response:
                for _ in response.iter_content(MIB):
                    pass

        mb = size / MIB
        up_store, up_raw = pair(repeat, store_up, raw_up)
        down_store, down_raw = pair(repeat, store_down, raw_down)
        rows.append(("dynamic stream up (MB/s)", mb / up_store, mb / up_raw))
        rows.append(("dynamic stream down (MB/s)", mb / down_store, mb / down_raw))

        small = b"x" * 100
        meta_url = server.base_url + "/raw/metadata"

        def store_sets():
            for i in range(ops):
                store.set("small", (small, {"i": i}))

        def raw_sets():
            for i in range(ops):
                session.put(url, data=small).close()
                session.put(meta_url, data=json.dumps({"i": i})).close()

        def raw_puts():
            for _ in range(ops):
                session.put(url, data=small).close()

        def store_gets():
            for _ in range(ops):
                value = store.get("small")
                with value.data as stream:
                    stream.read()

        def raw_gets():
            for _ in range(ops):
                session.get(meta_url).json()
                _ = session.get(url).content

        ours, anchor = pair(repeat, store_sets, raw_sets)
        rows.append(("dynamic small set (ops/s)", ops / ours, ops / anchor))
        rows.append(("  one raw PUT (ops/s)", None, ops / best(repeat, raw_puts)))
        ours, anchor = pair(repeat, store_gets, raw_gets)
        rows.append(("dynamic small get+read (ops/s)", ops / ours, ops / anchor))
        session.close()
        store.disconnect()
    return rows


def bench_static(repeat: int, ops: int) -> list[tuple]:
    rows = []
    with StaticSiteServer() as site:
        for i in range(10_000):
            site._index[f"key{i}"] = {"i": i, "kind": "bench", "tags": ["a", "b"]}
        site.publish("small", b"x" * 100, {"i": -1})
        store = StaticURLStore(
            site.root_url,
            site.data_path,
            site.query_path,
            poll=None,
            event_manager=EventManager(),
        )
        store.connect()
        data_url = site.root_url + "data/small"
        index_url = site.root_url + site.query_path

        def store_gets():
            for _ in range(ops):
                with store.get_data("small") as stream:
                    stream.read()

        def raw_gets():
            for _ in range(ops):
                with urllib.request.urlopen(data_url) as response:
                    response.read()

        def store_index():
            store.update_index()

        def raw_index():
            with urllib.request.urlopen(index_url) as response:
                json.loads(response.read())

        ours, anchor = pair(repeat, store_gets, raw_gets)
        rows.append(("static get+read (ops/s)", ops / ours, ops / anchor))
        ours, anchor = pair(repeat, store_index, raw_index)
        rows.append(("static update_index 10k keys (ms)", 1000 * ours, 1000 * anchor))
        store.disconnect()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ops", type=int, default=300)
    args = parser.parse_args()
    rows = bench_dynamic(args.size_mib * MIB, args.repeat, args.ops)
    rows += bench_static(args.repeat, args.ops)
    print(f"| measure | store | anchor | store / anchor |  (value {args.size_mib} MiB)")
    print("|---|---|---|---|")
    for name, ours, anchor in rows:
        if ours is None:
            print(f"| {name} | | {anchor:.0f} | |")
        else:
            print(f"| {name} | {ours:.0f} | {anchor:.0f} | {ours / anchor:.2f} |")


if __name__ == "__main__":
    main()
