"""The checks of a configuration against the machine it will run on.

:func:`~encored._config.parse_config` checks what the text says; this
module checks what the daemon will find when it builds the stores: that a
filesystem store's directory exists (or can be created when
``create = true``), that it is a store, that the daemon may read and write
it, that an SQLite file is a database in a directory the daemon can write,
that a postgres store's DSN parses and its ``dsn_file`` is the daemon
user's own and private (the server itself is not contacted: a database
that is down is not a configuration mistake).
``encored --check-config`` and the daemon's start both call
:func:`load_checked_config`, so the check and the start agree: a problem
found here is a configuration problem (exit 78) in both.

Nothing here creates or changes anything: the check may run while a daemon
is serving the same configuration.
"""

from __future__ import annotations

__all__ = ["check_environment", "load_checked_config", "read_dsn_file", "dsn_problem"]

import os
import re
import sqlite3
import stat
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


#: Longest DSN file read: a connection string is a line, not a document.
_DSN_FILE_LIMIT = 65536


class DsnFileError(ValueError):
    """A ``dsn_file`` the daemon must not use; the message says why."""


def read_dsn_file(path: str) -> str:
    """The DSN in ``path``, if the file is private to the daemon's user.

    The file must be a regular file owned by the effective user with no
    permission for group or others (a DSN can hold a password). Owner and
    mode are read from the opened file, so a file swapped in between is not
    read either. Surrounding whitespace (the final newline) is dropped.

    Raises
    ------
    DsnFileError
        Naming the file and the problem, never its content.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise DsnFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DsnFileError(f"{path} is not a regular file")
        uid = os.geteuid()
        if info.st_uid != uid:
            raise DsnFileError(
                f"{path} is owned by uid {info.st_uid}, not by the daemon's user "
                f"(uid {uid}): a DSN file can hold a password, only its owner "
                "may use it"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise DsnFileError(
                f"{path} has mode {mode:04o}: a DSN file can hold a password and "
                f"must not be open to group or others (chmod 600 {path})"
            )
        try:
            raw = os.read(fd, _DSN_FILE_LIMIT + 1)
        except OSError as exc:
            raise DsnFileError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > _DSN_FILE_LIMIT:
        raise DsnFileError(f"{path} is longer than {_DSN_FILE_LIMIT} bytes")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise DsnFileError(f"{path} is not UTF-8 text") from None
    if not text:
        raise DsnFileError(f"{path} is empty (it should hold a connection string)")
    return text


def _scrub(message: str, keywords: set[str]) -> str:
    # libpq's parse errors quote what they stumbled on, which may be a
    # piece of the password: only option names (known ones, and the unknown
    # one an "invalid ... option/parameter" message names) and "=" are kept.
    if message.startswith(("invalid connection option", "invalid URI query")):
        return message
    return re.sub(
        r'"([^"]*)"',
        lambda m: m.group(0) if m.group(1) in keywords | {"="} else '"..."',
        message,
    )


def dsn_problem(dsn: str) -> str:
    """Why ``dsn`` is not a usable libpq connection string, or ``""``.

    The answer never contains the DSN's values (its password).
    """
    if not dsn.strip():
        return "is empty (give a libpq connection string or URI)"
    try:
        import psycopg.pq
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return (
            "a postgres store needs psycopg 3: install the 'postgres' extra "
            "(pip install 'encore[postgres]')"
        )
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        keywords = {
            option.keyword.decode() for option in psycopg.pq.Conninfo.get_defaults()
        }
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return "not a valid libpq connection string or URI: " + _scrub(first, keywords)
    port = str(params.get("port", ""))
    if port and not all(part.strip().isdigit() for part in port.split(",")):
        return "the port is not a number"
    return ""


def _check_postgres(spec: StoreConfig) -> list[tuple[str, str]]:
    options = spec.options
    if "dsn" in options:
        problem = dsn_problem(options["dsn"])
        return [("dsn", problem)] if problem else []
    path = options["dsn_file"]
    try:
        dsn = read_dsn_file(path)
    except DsnFileError as exc:
        return [("dsn_file", str(exc))]
    problem = dsn_problem(dsn)
    return [("dsn_file", f"the DSN in {path}: {problem}")] if problem else []


def _check_runtime_dir(path: str) -> str:
    if os.path.lexists(path):
        return "" if os.path.isdir(path) else f"{path} is not a directory"
    return _creatable(path)


_CHECKS = {
    "filesystem": _check_filesystem,
    "sqlite": _check_sqlite,
    "postgres": _check_postgres,
}


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
