"""Configuration: the embedded default, every mistake reported with its place."""

import subprocess
import sys

import pytest

from encored import ConfigError, load_config, parse_config
from encored._config import expand_path
from encored.testing import package_root


def test_embedded_default_has_a_watched_filesystem_store_and_a_memory_store(
    monkeypatch,
):
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", "/home/someone")
    config = load_config(None)
    assert config.source == "<embedded default>"
    default = config.stores["default"]
    assert default.type == "filesystem"
    assert default.options["path"] == "/home/someone/.local/share/encore/default"
    assert default.options["watch"] is True
    assert config.stores["memory"].type == "memory"
    assert config.daemon.event_buffer > 0


def test_default_store_follows_xdg_data_home(monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", "/data/x")
    assert load_config(None).stores["default"].options["path"] == (
        "/data/x/encore/default"
    )


BAD = """\
[daemon]
event_buffer = 0
heartbeat_interval = "fast"
colour = "blue"

[stores.docs]
type = "filesystem"
watch = "yes"

[stores.db]
type = "sqlite"
table = "store; DROP TABLE x"

[stores.both]
type = "joined"
stores = ["docs", "nowhere"]

[stores.odd]
type = "cassandra"

[stores.a]
type = "mounted"
mount_point = "m/"
mount_store = "b"
backing_store = "docs"

[stores.b]
type = "mounted"
mount_point = "m/"
mount_store = "a"
backing_store = "docs"
"""


def test_every_mistake_is_reported_with_file_line_and_key():
    with pytest.raises(ConfigError) as info:
        parse_config(BAD, "my.toml")
    errors = info.value.errors
    text = "\n".join(errors)
    expected = [
        "my.toml:2: daemon.event_buffer: must be greater than 0",
        "my.toml:3: daemon.heartbeat_interval: must be an integer or a number",
        "my.toml:4: daemon.colour: unknown setting",
        "my.toml:6: stores.docs: missing required option 'path'",
        "my.toml:8: stores.docs.watch: must be true or false",
        "my.toml:12: stores.db.table: 'store; DROP TABLE x' is not a valid SQL",
        "my.toml:16: stores.both.stores: no store named 'nowhere'",
        "my.toml:19: stores.odd.type: unknown store type 'cassandra'",
        "stores refer to each other in a cycle: a -> b -> a",
    ]
    for fragment in expected:
        assert fragment in text, f"missing {fragment!r} in:\n{text}"
    assert len(errors) == len(expected)


def test_toml_syntax_error_names_file_and_line():
    with pytest.raises(ConfigError) as info:
        parse_config("[stores.x\ntype = 1\n", "broken.toml")
    assert info.value.errors[0].startswith("broken.toml: not valid TOML")
    assert "line 1" in info.value.errors[0]


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_unset_variable_is_reported(monkeypatch):
    monkeypatch.delenv("ENCORE_NOT_SET", raising=False)
    text = '[stores.x]\ntype = "filesystem"\npath = "$ENCORE_NOT_SET/x"\n'
    with pytest.raises(ConfigError, match="ENCORE_NOT_SET is not set"):
        parse_config(text, "c.toml")


def test_expand_path(monkeypatch):
    monkeypatch.setenv("HOME", "/h")
    monkeypatch.setenv("FOO", "/foo")
    assert expand_path("~/a") == "/h/a"
    assert expand_path("${FOO}/b/$FOO") == "/foo/b//foo"


def test_valid_configuration_of_every_store_type():
    text = """
[stores.m]
type = "memory"
[stores.s]
type = "sqlite"
location = ":memory:"
table = "store"
index = "dynamic"
index_columns = ["author"]
[stores.f]
type = "filesystem"
path = "/tmp/x"
watch = false
[stores.st]
type = "static_url"
root_url = "http://127.0.0.1:1/"
data_path = "data/"
query_path = "index.json"
poll = 30
[stores.d]
type = "dynamic_url"
base_url = "http://127.0.0.1:1/"
query_url = "http://127.0.0.1:1/query"
[stores.j]
type = "joined"
stores = ["m", "s"]
[stores.mt]
type = "mounted"
mount_point = "mnt/"
mount_store = "m"
backing_store = "f"
[stores.auth]
type = "simple_auth"
store = "s"
encoder = "pbkdf2"
"""
    config = parse_config(text)
    assert sorted(config.stores) == sorted(
        ["m", "s", "f", "st", "d", "j", "mt", "auth"]
    )
    assert config.stores["j"].options == {"stores": ["m", "s"]}


def run_encored(*args):
    env = {"PYTHONPATH": str(package_root()), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "encored", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_check_config_reports_all_problems_and_exits_78(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    proc = run_encored("--check-config", str(bad))
    assert proc.returncode == 78
    assert f"{bad}:2: daemon.event_buffer" in proc.stderr
    assert f"{bad}:19: stores.odd.type" in proc.stderr
    assert "9 problem(s)" in proc.stderr


def test_check_config_accepts_a_good_file(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[stores.m]\ntype = "memory"\n')
    proc = run_encored("--check-config", str(good))
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout


def test_daemon_refuses_to_start_on_a_bad_file(tmp_path, runtime_dir):
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    proc = run_encored("--config", str(bad), "--runtime-dir", str(runtime_dir))
    assert proc.returncode == 78
    assert "stores.odd.type" in proc.stderr
    assert "not starting" in proc.stderr
    assert not (runtime_dir / "events.ipc").exists()


@pytest.mark.parametrize("index", ["dynamic", "static", "none"])
def test_sqlite_index_modes_accepted(index):
    text = f'[stores.s]\ntype = "sqlite"\nlocation = ":memory:"\nindex = "{index}"\n'
    assert parse_config(text).stores["s"].options["index"] == index


def test_sqlite_unknown_index_mode_refused():
    text = '[stores.s]\ntype = "sqlite"\nlocation = ":memory:"\nindex = "fast"\n'
    with pytest.raises(ConfigError, match="'dynamic', 'static' or 'none'"):
        parse_config(text, "c.toml")
