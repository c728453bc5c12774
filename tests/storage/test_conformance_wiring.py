"""Every concrete store in ``encore.storage`` runs the conformance suite.

Finds the store classes by importing every module of the package, and the
test classes that run the suite by parsing the test files (tests do not
import each other), then fails for any store no suite subclass names.
"""

import ast
import importlib
import inspect
import pathlib
import pkgutil

import encore.storage
from encore.storage.abstract_store import AbstractReadOnlyStore

MIXINS = {"StoreReadTests", "StoreWriteTests", "StoreTransactionTests", "StoreKeyTests"}
TESTS = pathlib.Path(__file__).resolve().parents[1]


def concrete_stores():
    found = set()
    for info in pkgutil.iter_modules(encore.storage.__path__):
        module = importlib.import_module(f"encore.storage.{info.name}")
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, AbstractReadOnlyStore)
                and not inspect.isabstract(obj)
                and obj.__module__ == module.__name__
            ):
                found.add(obj.__name__)
    return found


def stores_under_test():
    named = set()
    for path in TESTS.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
            if bases & MIXINS:
                named |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    return named


def test_every_store_runs_the_conformance_suite():
    stores = concrete_stores()
    assert "DictMemoryStore" in stores
    missing = stores - stores_under_test()
    assert not missing, f"stores without a conformance test class: {sorted(missing)}"


def test_testing_module_does_not_import_pytest():
    source = pathlib.Path(
        inspect.getfile(importlib.import_module("encore.storage.testing"))
    )
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (
            node.names
            if isinstance(node, ast.Import)
            else [ast.alias(node.module or "")]
        )
    }
    assert "pytest" not in imported
