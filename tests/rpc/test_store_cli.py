"""The store commands of ``encore``, run as real processes."""

import json
import os
import subprocess
import sys

import pytest

from encored.testing import package_root


@pytest.fixture
def encore(rpc_env):
    env = dict(os.environ, PYTHONPATH=str(package_root()))

    def run(*args, input=None):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "encore_client.cli",
                "--runtime-dir",
                str(rpc_env.runtime_dir),
                *args,
            ],
            env=env,
            input=input,
            capture_output=True,
            timeout=60,
        )

    yield run
    run("rm", "cli", *[k for k in run("ls", "cli").stdout.decode().split("\n") if k])


def test_put_get_meta_ls_query_rm(encore, tmp_path):
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(9 * 1024 * 1024 + 3))
    done = encore(
        "put",
        "cli",
        "big/one",
        str(source),
        "--meta",
        "author=x",
        "--meta",
        "n=3",
        "--progress",
    )
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stderr.decode() and "MiB" in done.stderr.decode()
    assert encore("put", "cli", "small", "-", input=b"hello").returncode == 0
    target = tmp_path / "out.bin"
    got = encore("get", "cli", "big/one", "-o", str(target))
    assert got.returncode == 0, got.stderr
    assert target.read_bytes() == source.read_bytes()
    assert encore("get", "cli", "small").stdout == b"hello"
    meta = encore("meta", "cli", "big/one")
    assert json.loads(meta.stdout) == {"author": "x", "n": 3}
    assert encore("ls", "cli").stdout.decode().split() == ["big/one", "small"]
    assert encore("ls", "cli", "big/*").stdout.decode().split() == ["big/one"]
    query = encore("query", "cli", "n=3").stdout.decode().splitlines()
    assert query == ['big/one\t{"author": "x", "n": 3}']
    assert encore("query", "cli", "author=x", "--keys").stdout == b"big/one\n"
    # put without --meta keeps the metadata
    assert encore("put", "cli", "big/one", "-", input=b"new").returncode == 0
    assert json.loads(encore("meta", "cli", "big/one").stdout)["author"] == "x"
    assert encore("rm", "cli", "big/one", "small").returncode == 0
    assert encore("ls", "cli").stdout == b""


def test_readable_errors(encore, tmp_path):
    missing = encore("get", "cli", "nope", "-o", str(tmp_path / "x"))
    assert missing.returncode == 1
    assert "no key 'nope' in store 'cli'" in missing.stderr.decode()
    assert not (tmp_path / "x").exists()
    unknown = encore("ls", "no-such")
    assert unknown.returncode == 1
    assert "no store named 'no-such'" in unknown.stderr.decode()
    nofile = encore("put", "cli", "k", str(tmp_path / "absent"))
    assert nofile.returncode == 1 and "No such file" in nofile.stderr.decode()
    assert "Traceback" not in nofile.stderr.decode() + unknown.stderr.decode()
    assert encore("put", "cli", "k", "-", input=b"v").returncode == 0
    nodir = encore("get", "cli", "k", "-o", str(tmp_path / "no" / "x"))
    assert nodir.returncode == 1
    assert f"No such file or directory: '{tmp_path / 'no' / 'x'}'" in (
        nodir.stderr.decode()
    )


def test_rm_goes_on_past_a_missing_key(encore):
    for key in ("a", "b"):
        assert encore("put", "cli", key, "-", input=b"v").returncode == 0
    done = encore("rm", "cli", "a", "gone", "b")
    assert done.returncode == 1
    assert done.stderr.decode() == "encore rm: no key 'gone' in store 'cli'\n"
    assert encore("ls", "cli").stdout == b""  # a and b are both deleted
    assert encore("put", "cli", "c", "-", input=b"v").returncode == 0
    forced = encore("rm", "-f", "cli", "gone", "c")
    assert forced.returncode == 0 and forced.stderr == b""
    assert encore("ls", "cli").stdout == b""
