"""SIGKILL of the daemon during writes through RemoteStore, many times.

What must survive: every write the daemon acknowledged is there after all
the kills (the acknowledged version, or a later one that was attempted
and may have landed before its acknowledgement was lost), and no value is
torn: data and metadata always belong to the same write.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import threading
import time
from collections import Counter, defaultdict

import pytest

from encore_client import RemoteStore

KILLS = int(os.environ.get("ENCORE_FAULTS_KILLS", "20"))
KEYS = 40

CONFIG = """
[daemon]
heartbeat_interval = 0.2

[stores.fs]
type = "filesystem"
path = "{base}/fs"
create = true

[stores.sq]
type = "sqlite"
location = "{base}/store.db"
"""

# Inline (envelope), one frame, and chunked uploads (> 256 KiB).
SIZES = [100, 20_000, 200_000, 700_000]


def value_for(key: str, version: int) -> bytes:
    """The bytes of write ``version`` of ``key``: rebuilt to check them."""
    rng = random.Random(f"{key}/{version}")
    size = SIZES[version % len(SIZES)] + rng.randrange(1000)
    head = f"{key}:{version}:".encode()
    return head + rng.randbytes(size)


class Writer(threading.Thread):
    """Writes versions of a few keys until told to stop; tracks the outcome."""

    def __init__(self, store: RemoteStore) -> None:
        super().__init__(name=f"writer-{store.name}", daemon=True)
        self.store = store
        self.stop = threading.Event()
        self.acked: dict[str, int] = {}
        self.attempted: dict[str, set[int]] = defaultdict(set)
        self.failures: Counter[str] = Counter()
        self.writes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        version = 0
        try:
            while not self.stop.is_set():
                version += 1
                key = f"k{version % KEYS}"
                data = value_for(key, version)
                meta = {"version": version, "sha": hashlib.sha256(data).hexdigest()}
                self.attempted[key].add(version)
                try:
                    self.store.set(key, (io.BytesIO(data), meta))
                except Exception as exc:  # the daemon died under the call
                    self.failures[type(exc).__name__] += 1
                    continue
                self.acked[key] = version
                self.writes += 1
        except BaseException as exc:  # pragma: no cover - reported below
            self.error = exc


@pytest.mark.slow
def test_acknowledged_writes_survive_repeated_sigkill(
    make_daemon, base_dir, record, status
):
    daemon = make_daemon(CONFIG.format(base=base_dir))
    runtime = base_dir / "rt"
    writers = [Writer(RemoteStore(n, runtime, timeout=3)) for n in ("fs", "sq")]
    for writer in writers:
        writer.start()
    rng = random.Random(8)
    restart_times = []
    try:
        for _ in range(KILLS):
            # Let some writes through, then kill at a random moment.
            target = sum(w.writes for w in writers) + 3
            deadline = time.monotonic() + 30
            while sum(w.writes for w in writers) < target:
                assert time.monotonic() < deadline, "writers made no progress"
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.3))
            daemon.kill()
            started = time.monotonic()
            daemon.start()
            restart_times.append(time.monotonic() - started)
    finally:
        for writer in writers:
            writer.stop.set()
        for writer in writers:
            writer.join(60)
    for writer in writers:
        assert writer.error is None, writer.error
        assert not writer.is_alive()

    torn = missing = later = 0
    for writer in writers:
        check = RemoteStore(writer.store.name, runtime, timeout=10)
        for key, acked in writer.acked.items():
            data = check.to_bytes(key)
            meta = check.get_metadata(key)
            head = data.split(b":", 2)
            version = int(head[1])
            # Data and metadata of one write, and the data whole.
            if meta.get("version") != version or (
                meta.get("sha") != hashlib.sha256(data).hexdigest()
                or data != value_for(key, version)
            ):
                torn += 1
            if version < acked:
                missing += 1
            elif version > acked:
                assert version in writer.attempted[key]
                later += 1
        check.disconnect()
        writer.store.disconnect()
    assert torn == 0
    assert missing == 0
    # After the storm the daemon reports its previous run ended uncleanly.
    service = status(runtime)["service"]
    assert service["previous_exit"]["clean"] is False
    assert "NOT CLEAN: pid" in status(runtime, as_json=False)
    record(
        kills=KILLS,
        acknowledged_writes=sum(w.writes for w in writers),
        failed_writes=dict(sum((w.failures for w in writers), Counter())),
        keys_checked=sum(len(w.acked) for w in writers),
        torn=torn,
        acknowledged_but_missing=missing,
        unacknowledged_but_landed=later,
        restart_seconds_median=round(sorted(restart_times)[len(restart_times) // 2], 3),
        restart_seconds_max=round(max(restart_times), 3),
    )
