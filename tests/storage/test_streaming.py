"""A 1 GiB value streams through the stores with bounded memory.

Each test runs ``big_value_child.py`` in a fresh interpreter, which moves a
1 GiB value through ``from_file``/``set_data``, ``get`` and ``to_file``
and reports its own peak resident memory (``getrusage``): it must stay far
below the size of the value.
"""

import pathlib
import shutil
import subprocess
import sys

import pytest

CHILD = pathlib.Path(__file__).with_name("big_value_child.py")
SIZE = 1 << 30
LIMIT = 128 << 20  # an eighth of the value; ~35 MiB is typical


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["filesystem", "sqlite"])
def test_one_gib_value_streams_in_bounded_memory(kind, tmp_path, child_env):
    try:
        result = subprocess.run(
            [sys.executable, str(CHILD), kind, str(tmp_path), str(SIZE)],
            env=child_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        # pytest keeps old temporary directories: do not leave a GiB there.
        shutil.rmtree(tmp_path, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    peak = int(result.stdout.split()[-1])
    assert peak < LIMIT, f"peak RSS {peak / 2**20:.0f} MiB for a 1 GiB value"
