"""``type = "postgres"`` stores in a real encored on the private cluster.

``--check-config`` and the daemon's start refuse the same mistakes (exit
78); a DSN's password never reaches the log; ``encore status`` shows each
postgres store's connection state.
"""

import os
import subprocess
import sys

import pytest

from encore_client import RemoteStore, ZmqTransport
from encored.testing import package_root, short_tempdir, wait_until

from .conftest import drop_table

pytest.importorskip("psycopg")

EX_CONFIG = 78
SECRET = "s3cretPw-9f2"


def run_encored(*args, timeout=60):
    env = {"PYTHONPATH": str(package_root()), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "encored", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def config_text(name, table, dsn=None, dsn_file=None, extra=""):
    lines = ["[daemon]", "heartbeat_interval = 0.1", "", f"[stores.{name}]"]
    lines.append('type = "postgres"')
    if dsn is not None:
        lines.append(f'dsn = "{dsn}"')
    if dsn_file is not None:
        lines.append(f'dsn_file = "{dsn_file}"')
    if table is not None:
        lines.append(f'table = "{table}"')
    return "\n".join(lines) + "\n" + extra


def private_file(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return path


def assert_refused(tmp_path, text, *expected):
    """Both the check and the start exit 78 naming each expected text."""
    config = tmp_path / "c.toml"
    config.write_text(text)
    check = run_encored("--check-config", str(config))
    with short_tempdir() as runtime:
        start = run_encored("--config", str(config), "--runtime-dir", str(runtime))
        assert not (runtime / "requests.ipc").exists()
    assert check.returncode == EX_CONFIG, check.stdout + check.stderr
    assert start.returncode == EX_CONFIG, start.stderr
    for piece in expected:
        assert piece in check.stderr, check.stderr
        assert piece in start.stderr, start.stderr
    assert SECRET not in check.stdout + check.stderr + start.stderr
    return check.stderr


# -- --check-config -----------------------------------------------------------


def test_check_config_accepts_a_dsn_and_a_private_dsn_file(tmp_path, pg, table):
    config = tmp_path / "c.toml"
    config.write_text(config_text("pg", table, dsn=pg.dsn))
    result = run_encored("--check-config", str(config))
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout
    dsn_file = private_file(tmp_path / "dsn", pg.dsn + f" password={SECRET}\n")
    config.write_text(config_text("pg", None, dsn_file=dsn_file))
    result = run_encored("--check-config", str(config))
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_neither_or_both_of_dsn_and_dsn_file_is_refused(tmp_path, pg):
    assert_refused(
        tmp_path,
        config_text("pg", None),
        "stores.pg: a postgres store needs exactly one of 'dsn' and 'dsn_file'",
    )
    dsn_file = private_file(tmp_path / "dsn", pg.dsn)
    stderr = assert_refused(
        tmp_path,
        config_text("pg", None, dsn=pg.dsn, dsn_file=dsn_file),
        "exactly one of 'dsn' and 'dsn_file', not both",
    )
    assert "1 problem(s)" in stderr


def test_bad_table_names_are_refused(tmp_path, pg):
    for bad in ("1abc", "a-b", 'x"; DROP TABLE y; --', "t" * 42):
        escaped = bad.replace('"', '\\"')
        assert_refused(
            tmp_path,
            config_text("pg", escaped, dsn=pg.dsn),
            "stores.pg.table: ",
            "is not a valid table name",
        )


def test_bad_dsns_are_refused_without_showing_the_password(tmp_path):
    assert_refused(
        tmp_path, config_text("pg", None, dsn="  "), "stores.pg.dsn: is empty"
    )
    assert_refused(
        tmp_path,
        config_text("pg", None, dsn=f"host=/tmp {SECRET}"),
        "stores.pg.dsn: not a valid libpq connection string or URI",
    )
    assert_refused(
        tmp_path,
        config_text("pg", None, dsn=f"host=/tmp password={SECRET} colour=blue"),
        'invalid connection option "colour"',
    )
    assert_refused(
        tmp_path,
        config_text("pg", None, dsn=f"postgresql://u:{SECRET}@h:port/db"),
        "stores.pg.dsn: the port is not a number",
    )


def test_dsn_files_open_to_others_or_not_ours_are_refused(tmp_path, pg):
    dsn_file = private_file(tmp_path / "dsn", f"{pg.dsn} password={SECRET}\n")
    for mode in (0o640, 0o604, 0o620):
        os.chmod(dsn_file, mode)
        assert_refused(
            tmp_path,
            config_text("pg", None, dsn_file=dsn_file),
            f"stores.pg.dsn_file: {dsn_file} has mode {mode:04o}",
            f"chmod 600 {dsn_file}",
        )
    os.chmod(dsn_file, 0o600)
    if os.geteuid() == 0:
        os.chown(dsn_file, 1000, 1000)
        other = dsn_file
    else:
        other = "/etc/passwd"  # root's, and we are not root
    assert_refused(
        tmp_path,
        config_text("pg", None, dsn_file=other),
        f"stores.pg.dsn_file: {other} is owned by uid",
        f"not by the daemon's user (uid {os.geteuid()})",
    )


def test_missing_empty_or_odd_dsn_files_are_refused(tmp_path):
    missing = tmp_path / "nowhere"
    assert_refused(
        tmp_path,
        config_text("pg", None, dsn_file=missing),
        f"stores.pg.dsn_file: cannot read {missing}: No such file or directory",
    )
    empty = private_file(tmp_path / "empty", "\n")
    assert_refused(
        tmp_path, config_text("pg", None, dsn_file=empty), f"{empty} is empty"
    )
    folder = tmp_path / "folder"
    folder.mkdir(mode=0o700)
    assert_refused(
        tmp_path,
        config_text("pg", None, dsn_file=folder),
        f"{folder} is not a regular file",
    )
    bad = private_file(tmp_path / "bad", f"host=/tmp {SECRET}")
    assert_refused(
        tmp_path,
        config_text("pg", None, dsn_file=bad),
        f"stores.pg.dsn_file: the DSN in {bad}: not a valid libpq connection",
    )


def test_a_parsed_config_does_not_show_the_dsn():
    from encored import parse_config

    config = parse_config(config_text("pg", None, dsn=f"password={SECRET}"))
    assert config.stores["pg"].options["dsn"] == f"password={SECRET}"
    assert SECRET not in repr(config)
    assert "<hidden>" in repr(config.stores["pg"])


# -- a running daemon -------------------------------------------------------------


def status_of(runtime_dir):
    with ZmqTransport(runtime_dir, timeout=10) as transport:
        return transport.request("status").result


def encore_status(runtime_dir):
    env = dict(os.environ, PYTHONPATH=str(package_root()))
    return subprocess.run(
        [sys.executable, "-m", "encore_client.cli", "--runtime-dir", str(runtime_dir)]
        + ["status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.slow
def test_daemon_serves_a_postgres_store_and_status_shows_its_connection(
    tmp_path, pg, table, make_daemon, runtime_dir
):
    dsn_file = private_file(tmp_path / "dsn", f"{pg.dsn} password={SECRET}\n")
    daemon = make_daemon(
        config_text("team", table, dsn_file=dsn_file)
        + f'\n[stores.other]\ntype = "postgres"\ndsn = "{pg.dsn} password={SECRET}"'
        + f'\ntable = "{table}_b"\n'
    )
    store = RemoteStore("team", runtime_dir, timeout=10)
    try:
        store.set("k", (b"value", {"a": 1}))
        assert store.to_bytes("k") == b"value"
        assert store.query_keys(a=1) == ["k"]
        service = status_of(runtime_dir)["service"]
        assert service["postgres"] == {
            "team": {"state": "connected", "reconnections": 0},
            "other": {"state": "connected", "reconnections": 0},
        }
        shown = encore_status(runtime_dir)
        assert shown.returncode == 0, shown.stderr
        assert "store team" in shown.stdout
        assert "postgres connected" in shown.stdout
        # The server restarted under the daemon: the store reconnects by
        # itself and status counts the loss.
        pg.restart()
        wait_until(
            lambda: (
                status_of(runtime_dir)["service"]["postgres"]["team"]
                == {"state": "connected", "reconnections": 1}
            ),
            timeout=60,
            message="the store to reconnect",
        )
        assert store.to_bytes("k") == b"value"
        shown = encore_status(runtime_dir)
        assert "connection lost 1 time(s) so far" in shown.stdout
    finally:
        store.disconnect()
        daemon.stop()
        drop_table(pg.dsn, f"{table}_b")
    assert SECRET not in daemon.stderr()
    assert "store 'team' (postgres) ready" in daemon.stderr()


def test_a_daemon_that_cannot_reach_the_server_exits_1_without_the_password(
    tmp_path, make_daemon, runtime_dir
):
    with short_tempdir() as nowhere:
        dsn = f"host={nowhere} dbname=x user=u password={SECRET} connect_timeout=2"
        daemon = make_daemon(config_text("pg", None, dsn=dsn), start=False)
        daemon.start(wait=False)
        assert daemon.process.wait(60) == 1
    stderr = daemon.stderr()
    assert "store 'pg' (postgres) cannot be opened" in stderr
    assert "cannot connect to PostgreSQL" in stderr
    assert SECRET not in stderr
