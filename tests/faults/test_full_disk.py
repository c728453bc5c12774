"""A full disk under the daemon's stores (a 2 MiB tmpfs).

What must survive: writes fail with a clear ``OSError`` (no hang, no
crash), values written before are intact (data and metadata), the daemon
keeps serving reads, ``encore status`` names the problem, and writes work
again once there is room.

Mounting needs root.  Run as another user, the case runs itself again
inside a new user and mount namespace (``unshare --user --map-root-user
--mount``), where it may mount; the mount is always undone.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from encore.storage.abstract_store import StoreError
from encore_client import RemoteStore
from encored.testing import package_root

#: What a write on a full disk may raise: the store's own error (it wraps
#: the OSError with the key and the directory) or the OSError itself.
DISK_ERRORS = (OSError, StoreError)


def says_full(message: str) -> bool:
    """Whether an error message tells an operator the disk is full."""
    text = message.lower()
    return "no space left" in text or "disk is full" in text or "full" in text


CONFIG = """
[daemon]
heartbeat_interval = 0.2

[stores.fs]
type = "filesystem"
path = "{disk}/fs"
create = true

[stores.sq]
type = "sqlite"
location = "{disk}/store.db"
"""


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "2m"):
    """Mount a tmpfs of ``size`` on ``path``; unmount it whatever happens."""
    assert os.geteuid() == 0, "only root may mount (see rerun_as_namespace_root)"
    path.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte with one file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 1):  # what is left may be less than a block
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def attempt(store, expected, failures, label, key, data, meta):
    """One write: it lands whole, or fails clearly and changes nothing."""
    try:
        if data is None:
            store.set_metadata(key, meta)
        else:
            store.set(key, (io.BytesIO(data), meta))
    except DISK_ERRORS as exc:
        failures[label] = str(exc)
        assert says_full(str(exc)), (label, str(exc))
        return False
    old = expected.get(key, (b"", {}))
    expected[key] = (old[0] if data is None else data, meta)
    return True


def check_values(store, expected):
    for key, (data, meta) in expected.items():
        assert store.to_bytes(key) == data, key
        assert store.get_metadata(key) == meta, key
    assert sorted(store.query_keys()) == sorted(expected)


def rerun_as_namespace_root(nodeid: str) -> None:
    """Run test ``nodeid`` again as root of a new user and mount namespace."""
    unshare = shutil.which("unshare")
    assert unshare, "the full-disk case needs root, or unshare(1) to be root"
    env = dict(os.environ, ENCORE_FAULTS_IN_NAMESPACE="1")
    env.pop("ENCORE_FAULTS_FORCE_NAMESPACE", None)
    proc = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", sys.executable, "-m"]
        + ["pytest", "-q", "-p", "no:cacheprovider", nodeid],
        cwd=package_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("name", ["fs", "sq"])
def test_full_disk_fails_writes_clearly_and_keeps_old_values(
    make_daemon, base_dir, status, record, name, request
):
    if not os.environ.get("ENCORE_FAULTS_IN_NAMESPACE") and (
        os.geteuid() != 0 or os.environ.get("ENCORE_FAULTS_FORCE_NAMESPACE")
    ):
        rerun_as_namespace_root(request.node.nodeid)
        return
    with small_tmpfs(base_dir / "disk") as disk:
        make_daemon(CONFIG.format(disk=disk))
        runtime = base_dir / "rt"
        store = RemoteStore(name, runtime, timeout=10)
        expected: dict[str, tuple[bytes, dict]] = {}
        failures: dict[str, str] = {}
        try:
            old = os.urandom(100_000)
            assert attempt(store, expected, failures, "-", "keep", old, {"v": 1})
            assert attempt(store, expected, failures, "-", "other", b"small", {"v": 1})
            free_before = free_bytes(disk)
            # A value larger than the whole disk.
            big = os.urandom(3 << 20)
            assert not attempt(store, expected, failures, "too big", "keep", big, {})
            check_values(store, expected)
            free_after = free_bytes(disk)
            if name == "fs":
                # The failed write left nothing behind.  (SQLite keeps its
                # grown write-ahead log for reuse: not a leak, measured.)
                assert free_after >= free_before - 64 * 1024
            # Now no room at all.  A write may still land where the store
            # has room of its own (SQLite reuses its log), else it fails.
            filler = fill(disk)
            writes = [
                ("small set", "keep", b"x", {"v": 3}),
                ("new key", "new", b"y" * 5000, {}),
                ("metadata", "other", None, {"v": "x" * 5000}),
                ("too big again", "keep", big, {"v": 5}),
            ]
            landed = [attempt(store, expected, failures, *w) for w in writes]
            if name == "fs":
                assert not any(landed), landed  # every write needs new files
            assert not landed[-1]
            # Reads go on: every value is the last one that landed.
            check_values(store, expected)
            # encore status says what is wrong.
            service = status(runtime)["service"]
            disk_errors = {
                code: entry
                for code, entry in service["errors"].items()
                if says_full(entry["last"])
            }
            assert sum(e["count"] for e in disk_errors.values()) >= len(failures)
            text = status(runtime, as_json=False)
            assert "No space left" in text or "disk is full" in text, text
            # Room again: writes work again.
            filler.unlink()
            assert attempt(store, expected, failures, "-", "keep", b"new", {"v": 6})
            check_values(store, expected)
        finally:
            store.disconnect()
    record(
        store=name,
        free_bytes_before_failed_write=free_before,
        free_bytes_after_failed_write=free_after,
        failed_writes={k: v[:160] for k, v in failures.items()},
        landed_on_full_disk=[w[0] for w, ok in zip(writes, landed) if ok],
        status_errors={
            code: {"count": e["count"], "last": e["last"][:160]}
            for code, e in disk_errors.items()
        },
    )
