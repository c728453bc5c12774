"""The checks of a configuration against the machine it will run on.

:func:`~encored._config.parse_config` checks what the text says; this
module checks what the daemon will find when it builds the stores: that a
filesystem store's directory exists (or can be created when
``create = true``), that it is a store, that the daemon may read and write
it, that an SQLite file is a database in a directory the daemon can write.
``encored --check-config`` and the daemon's start both call
:func:`load_checked_config`, so the check and the start agree: a problem
found here is a configuration problem (exit 78) in both.

Nothing here creates or changes anything: the check may run while a daemon
is serving the same configuration.
"""

from __future__ import annotations

__all__ = ["check_environment", "load_checked_config"]

import os
import sqlite3
import urllib.parse
from pathlib import Path

from ._config import (
    Config,
    ConfigError,
    StoreConfig,
    _Collector,
    default_config_text,
    load_config,
)


def _nearest_existing(path: str) -> str:
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def _creatable(path: str) -> str:
    """Why ``path`` (a directory to make) cannot be created, or ``""``."""
    base = _nearest_existing(path)
    if not os.path.isdir(base):
        return f"cannot create {path}: {base} is not a directory"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"cannot create {path}: no permission to write in {base}"
    return ""


def _check_filesystem(spec: StoreConfig) -> list[tuple[str, str]]:
    path = spec.options["path"]
    create = spec.options.get("create", False)
    magic = spec.options.get("magic_fname", ".FSStore")
    if not os.path.lexists(path):
        if not create:
            return [("path", f"{path} does not exist (set create = true to make it)")]
        problem = _creatable(path)
        return [("path", problem)] if problem else []
    if not os.path.isdir(path):
        return [("path", f"{path} is not a directory")]
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return [("path", f"no permission to read and write in {path}")]
    magic_path = os.path.join(path, magic)
    if not os.path.lexists(magic_path):
        if create:
            return []  # the daemon writes the magic file into the directory
        return [
            (
                "path",
                f"{path} is not a filesystem store: it has no {magic} file "
                "(set create = true to make one)",
            )
        ]
    if not os.path.isfile(magic_path) or not os.access(magic_path, os.R_OK):
        return [("path", f"cannot read the store's marker file {magic_path}")]
    return []


def _check_sqlite(spec: StoreConfig) -> list[tuple[str, str]]:
    location = spec.options.get("location", ":memory:")
    if location == ":memory:":
        return []
    folder = os.path.dirname(os.path.abspath(location))
    if not os.path.lexists(location):
        if os.path.isdir(folder):
            if not os.access(folder, os.W_OK | os.X_OK):
                return [
                    ("location", f"cannot create {location}: no permission in {folder}")
                ]
            return []
        problem = _creatable(folder)
        return [("location", problem)] if problem else []
    if os.path.isdir(location):
        return [("location", f"{location} is a directory, not a database file")]
    if not os.access(location, os.R_OK | os.W_OK):
        return [("location", f"no permission to read and write {location}")]
    if not os.access(folder, os.W_OK | os.X_OK):
        # SQLite writes its journal next to the database.
        return [("location", f"no permission to write in {folder} (for the journal)")]
    uri = "file:" + urllib.parse.quote(os.path.abspath(location)) + "?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True)
        try:
            connection.execute("PRAGMA schema_version").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        return [("location", f"{location} is not an SQLite database ({exc})")]
    return []


def _check_runtime_dir(path: str) -> str:
    if os.path.lexists(path):
        return "" if os.path.isdir(path) else f"{path} is not a directory"
    return _creatable(path)


_CHECKS = {"filesystem": _check_filesystem, "sqlite": _check_sqlite}


def check_environment(config: Config, text: str = "") -> list[str]:
    """Every problem the daemon would meet building ``config``'s stores.

    Each entry has the form of :class:`ConfigError`'s lines (``text``, the
    configuration's TOML, gives them their line numbers).  Store types with
    nothing on this machine to check (memory, URLs, composites) pass.
    """
    out = _Collector(config.source, text)
    if config.daemon.runtime_dir is not None:
        problem = _check_runtime_dir(config.daemon.runtime_dir)
        if problem:
            out.add(("daemon", "runtime_dir"), problem)
    for name, spec in config.stores.items():
        check = _CHECKS.get(spec.type)
        if check is None:
            continue
        for key, problem in check(spec):
            out.add(("stores", name, key), problem)
    return out.errors


def load_checked_config(path: str | os.PathLike[str] | None = None) -> Config:
    """:func:`load_config`, then :func:`check_environment`.

    Raises
    ------
    ConfigError
        Listing every problem of the text, or, when the text is valid,
        every problem of the stores' paths and permissions.
    """
    config = load_config(path)
    if path is None:
        text = default_config_text()
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""  # changed since: the lines go without numbers
    errors = check_environment(config, text)
    if errors:
        raise ConfigError(errors)
    return config
