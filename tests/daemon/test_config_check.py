"""``--check-config`` and the daemon's start agree (issue 16, item 4).

Both run the same checks of the stores' paths and permissions, and both
exit 78 (EX_CONFIG) for a problem there; every run below uses a real
``encored`` process on real directories.
"""

import os
import subprocess
import sys

import pytest

from encored.testing import package_root

EX_CONFIG = 78


def run_encored(*args, unprivileged=False):
    env = {"PYTHONPATH": str(package_root()), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "encored", *args]
    if unprivileged and os.geteuid() == 0:
        # Permissions do not bind root. In a user namespace that maps uid
        # 1000 onto root, root's files are the process's own and their
        # owner bits apply, while everything stays readable.
        command = ["unshare", "--user", "--map-user=1000", "--map-group=1000"] + command
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def both(config, runtime_dir, unprivileged=False):
    """(check, start): the check's and the daemon's completed processes."""
    check = run_encored("--check-config", str(config), unprivileged=unprivileged)
    start = run_encored(
        "--config",
        str(config),
        "--runtime-dir",
        str(runtime_dir),
        unprivileged=unprivileged,
    )
    return check, start


def assert_refused_by_both(config, runtime_dir, *expected, unprivileged=False):
    check, start = both(config, runtime_dir, unprivileged)
    assert check.returncode == EX_CONFIG, check.stdout + check.stderr
    assert start.returncode == EX_CONFIG, start.stderr
    for text in expected:
        assert text in check.stderr
        assert text in start.stderr
    assert "valid" not in check.stdout
    assert "not starting" in start.stderr
    assert not (runtime_dir / "requests.ipc").exists()
    return check, start


def test_missing_path_with_create_false_is_refused_by_both(tmp_path, runtime_dir):
    missing = tmp_path / "nowhere"
    config = tmp_path / "c.toml"
    config.write_text(
        f'[stores.files]\ntype = "filesystem"\npath = "{missing}"\ncreate = false\n'
    )
    check, _ = assert_refused_by_both(
        config,
        runtime_dir,
        f"{config}:3: stores.files.path: {missing} does not exist",
    )
    assert "1 problem(s)" in check.stderr
    assert not missing.exists()


def test_directory_without_marker_file_is_refused(tmp_path, runtime_dir):
    plain = tmp_path / "plain"
    plain.mkdir()
    config = tmp_path / "c.toml"
    config.write_text(f'[stores.files]\ntype = "filesystem"\npath = "{plain}"\n')
    assert_refused_by_both(
        config, runtime_dir, "stores.files.path", "is not a filesystem store"
    )
    assert list(plain.iterdir()) == []


def test_path_that_cannot_be_created_is_refused(tmp_path, runtime_dir):
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    config = tmp_path / "c.toml"
    config.write_text(
        "[stores.files]\n"
        'type = "filesystem"\n'
        f'path = "{blocker}/store"\n'
        "create = true\n"
        "[stores.db]\n"
        'type = "sqlite"\n'
        f'location = "{blocker}/sub/db.sqlite"\n'
    )
    check, _ = assert_refused_by_both(
        config,
        runtime_dir,
        f"{config}:3: stores.files.path: cannot create {blocker}/store",
        f"{config}:7: stores.db.location: cannot create {blocker}/sub",
    )
    assert "2 problem(s)" in check.stderr


def test_sqlite_file_that_is_not_a_database_is_refused(tmp_path, runtime_dir):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database, and it is long enough" * 50)
    config = tmp_path / "c.toml"
    config.write_text(f'[stores.db]\ntype = "sqlite"\nlocation = "{junk}"\n')
    assert_refused_by_both(
        config, runtime_dir, "stores.db.location", "is not an SQLite database"
    )


def test_store_directory_without_write_permission_is_refused(tmp_path, runtime_dir):
    store = tmp_path / "store"
    store.mkdir()
    (store / ".FSStore").write_text("")
    config = tmp_path / "c.toml"
    config.write_text(f'[stores.files]\ntype = "filesystem"\npath = "{store}"\n')
    store.chmod(0o555)
    try:
        assert_refused_by_both(
            config,
            runtime_dir,
            f"stores.files.path: no permission to read and write in {store}",
            unprivileged=True,
        )
    finally:
        store.chmod(0o755)


def test_good_store_paths_pass_and_the_check_creates_nothing(tmp_path):
    to_make = tmp_path / "new" / "store"
    db_dir = tmp_path / "dbs"
    config = tmp_path / "c.toml"
    config.write_text(
        "[stores.files]\n"
        'type = "filesystem"\n'
        f'path = "{to_make}"\n'
        "create = true\n"
        "[stores.db]\n"
        'type = "sqlite"\n'
        f'location = "{db_dir}/db.sqlite"\n'
    )
    check = run_encored("--check-config", str(config))
    assert check.returncode == 0, check.stderr
    assert "configuration is valid" in check.stdout
    assert not (tmp_path / "new").exists()
    assert not db_dir.exists()


def test_every_unknown_store_in_a_list_is_reported(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        '[stores.a]\ntype = "memory"\n'
        '[stores.both]\ntype = "joined"\nstores = ["a", "typo1", "typo2"]\n'
    )
    check = run_encored("--check-config", str(config))
    assert check.returncode == EX_CONFIG
    assert "'typo1'" in check.stderr
    assert "'typo2'" in check.stderr


@pytest.mark.parametrize("create", ["true", "false"])
def test_a_working_store_starts_after_the_same_check(tmp_path, make_daemon, create):
    # The check must not refuse what the daemon can open.
    store = tmp_path / "store"
    if create == "false":
        store.mkdir()
        (store / ".FSStore").write_text("")
    daemon = make_daemon(
        f'[stores.files]\ntype = "filesystem"\npath = "{store}"\ncreate = {create}\n'
    )
    assert daemon.process.poll() is None
    assert (store / ".FSStore").exists()
