"""Every `encore` module loads nothing outside the standard library."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CODE = """
import pkgutil, sys
before = set(sys.modules)  # what site.py loaded, e.g. setuptools hooks
sys.path.insert(0, sys.argv[1])
import encore
# Modules of optional extras need their extra's package (and say so).
optional = {"encore.storage.postgres_store"}
for info in pkgutil.walk_packages(encore.__path__, "encore."):
    if info.name not in optional:
        __import__(info.name)
loaded = {name.split(".")[0] for name in set(sys.modules) - before}
print(",".join(sorted(loaded - set(sys.stdlib_module_names) - {"encore", "__main__"})))
"""


def test_encore_imports_only_standard_library():
    proc = subprocess.run(
        [sys.executable, "-I", "-c", CODE, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
