"""Loading and validating encored's TOML configuration.

Everything is checked before the daemon starts: every mistake in a file is
collected (with its location: file, line when it can be found, and the key
path) and reported together, and a file with any mistake is refused as a
whole.  The embedded default (``default.toml`` beside this module) is used
when no file is given.
"""

from __future__ import annotations

__all__ = [
    "Config",
    "DaemonSettings",
    "StoreConfig",
    "ConfigError",
    "load_config",
    "parse_config",
    "default_config_text",
    "STORE_TYPES",
]

import os
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ConfigError(ValueError):
    """The configuration is invalid; ``errors`` lists every mistake found.

    Each entry of ``errors`` is one line of the form
    ``FILE:LINE: key.path: what is wrong`` (``LINE`` is left out when the
    key's line cannot be told).
    """

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class DaemonSettings:
    """The ``[daemon]`` table (see ``default.toml`` for each meaning)."""

    event_buffer: int = 10000
    heartbeat_interval: float = 1.0
    max_message_size: int = 16 * 1024 * 1024
    publish_hwm: int = 100000
    runtime_dir: str | None = None


@dataclass(frozen=True)
class StoreConfig:
    """One ``[stores.NAME]`` table: the store's type and its options."""

    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        # A postgres DSN can hold a password: never in a repr or a log.
        shown = {k: ("<hidden>" if k == "dsn" else v) for k, v in self.options.items()}
        return f"StoreConfig(name={self.name!r}, type={self.type!r}, options={shown!r})"


@dataclass(frozen=True)
class Config:
    """A complete, validated configuration."""

    source: str
    daemon: DaemonSettings
    stores: dict[str, StoreConfig]
    #: ``[listen]``/``[curve]``: tcp endpoints with CURVE (``_listen_config``).
    listen: Any = None


# -- schema ---------------------------------------------------------------------

_STR = (str,)
_BOOL = (bool,)
_NUM = (int, float)
_INT = (int,)
_LIST = (list,)

# For each store type: option -> (accepted types, required, kind) where kind
# says how the value is checked further: "path" (expanded), "store" (the name
# of another configured store), "stores" (a list of them), "names" (a list of
# strings), "url" or None.
_Option = tuple[tuple[type, ...], bool, str | None]
STORE_TYPES: dict[str, dict[str, _Option]] = {
    "memory": {},
    "sqlite": {
        "location": (_STR, False, "path"),
        "table": (_STR, False, "identifier"),
        "index": (_STR, False, "index"),
        "index_columns": (_LIST, False, "identifiers"),
    },
    "filesystem": {
        "path": (_STR, True, "path"),
        "watch": (_BOOL, False, None),
        "create": (_BOOL, False, None),
        "magic_fname": (_STR, False, None),
    },
    "static_url": {
        "root_url": (_STR, True, "url"),
        "data_path": (_STR, True, None),
        "query_path": (_STR, True, None),
        "poll": (_NUM, False, "nonnegative"),
    },
    "dynamic_url": {
        "base_url": (_STR, True, "url"),
        "query_url": (_STR, True, "url"),
        "url_format": (_STR, False, None),
        "url_format_no_part": (_STR, False, None),
    },
    "joined": {"stores": (_LIST, True, "stores")},
    "mounted": {
        "mount_point": (_STR, True, None),
        "mount_store": (_STR, True, "store"),
        "backing_store": (_STR, True, "store"),
    },
    "simple_auth": {
        "store": (_STR, True, "store"),
        "user_key_path": (_STR, False, None),
        "user_key_store": (_STR, False, "store"),
        "encoder": (_STR, False, "encoder"),
    },
    # One of dsn / dsn_file (checked in _check_store); the DSN's syntax and
    # the file's owner and mode are checked by _config_check, which may
    # import psycopg.
    "postgres": {
        "dsn": (_STR, False, "dsn"),
        "dsn_file": (_STR, False, "path"),
        "table": (_STR, False, "pg_table"),
    },
}

_DAEMON_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "event_buffer": (_INT, "positive"),
    "heartbeat_interval": (_NUM, "positive"),
    "max_message_size": (_INT, "message_size"),
    "publish_hwm": (_INT, "positive"),
    "runtime_dir": (_STR, "path"),
}

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: PostgresStore's table names: ``<table>__chunks_pkey`` must stay within
#: PostgreSQL's 63-byte identifiers.
_PG_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
_STORE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_VAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
#: Variables that have a documented value when unset (XDG base directories).
_VAR_DEFAULTS = {"XDG_DATA_HOME": "~/.local/share", "XDG_CONFIG_HOME": "~/.config"}


def expand_path(text: str) -> str:
    """Expand ``$VAR``/``${VAR}`` and a leading ``~`` in a configured path.

    Raises ``KeyError`` naming the variable when one is unset and has no
    XDG default.
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        value = os.environ.get(name) or _VAR_DEFAULTS.get(name)
        if value is None:
            raise KeyError(name)
        return os.path.expanduser(value)

    return os.path.expanduser(_VAR_RE.sub(substitute, text))


# -- locating keys in the text ----------------------------------------------------


class _Locator:
    """Finds the line of a key path in TOML text, for error messages.

    It reads table headers and ``key =`` lines only; keys it cannot place
    (inline tables, dotted keys) are reported without a line number.
    """

    _HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")
    _KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), 1):
            header = self._HEADER.match(line)
            if header:
                table = tuple(self._unquote(p) for p in header.group(1).split("."))
                self.lines.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key:
                self.lines.setdefault((*table, self._unquote(key.group(1))), number)

    @staticmethod
    def _unquote(part: str) -> str:
        part = part.strip()
        if len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'":
            return part[1:-1]
        return part

    def line(self, path: tuple[str, ...]) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


class _Collector:
    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.locator = _Locator(text)
        self.errors: list[str] = []

    def add(self, path: tuple[str, ...], message: str) -> None:
        line = self.locator.line(path)
        where = f"{self.source}:{line}" if line is not None else self.source
        key = ".".join(path) if path else "(top level)"
        self.errors.append(f"{where}: {key}: {message}")


def _type_names(types: tuple[type, ...]) -> str:
    names = {
        str: "a string",
        bool: "true or false",
        int: "an integer",
        float: "a number",
        list: "a list",
    }
    return " or ".join(dict.fromkeys(names[t] for t in types))


def _type_ok(value: object, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # TOML's true is not the number 1
    return isinstance(value, types)


# -- validation -------------------------------------------------------------------


def _check_daemon(table: object, out: _Collector) -> DaemonSettings:
    if not isinstance(table, dict):
        out.add(("daemon",), "must be a table")
        return DaemonSettings()
    values: dict[str, Any] = {}
    for key, value in table.items():
        path = ("daemon", key)
        if key not in _DAEMON_KEYS:
            out.add(path, f"unknown setting (known: {', '.join(sorted(_DAEMON_KEYS))})")
            continue
        types, check = _DAEMON_KEYS[key]
        if not _type_ok(value, types):
            out.add(path, f"must be {_type_names(types)}, not {value!r}")
            continue
        if check == "positive" and not value > 0:
            out.add(path, f"must be greater than 0, not {value!r}")
            continue
        if check == "message_size" and not 1024 <= value <= 1 << 30:
            out.add(path, "must be between 1024 and 1073741824 bytes")
            continue
        if check == "path":
            try:
                value = expand_path(value)
            except KeyError as exc:
                out.add(path, f"environment variable {exc.args[0]} is not set")
                continue
        values[key] = float(value) if key == "heartbeat_interval" else value
    return DaemonSettings(**values)


def _check_store(
    name: str, table: object, names: set[str], out: _Collector
) -> StoreConfig | None:
    base = ("stores", name)
    if not _STORE_NAME_RE.match(name):
        out.add(base, "store names use letters, digits, '_', '-' and '.'")
    if not isinstance(table, dict):
        out.add(base, "must be a table")
        return None
    kind = table.get("type")
    if kind is None:
        out.add(base, f"missing 'type' (one of: {', '.join(STORE_TYPES)})")
        return None
    if kind not in STORE_TYPES:
        out.add(
            (*base, "type"),
            f"unknown store type {kind!r} (one of: {', '.join(STORE_TYPES)})",
        )
        return None
    schema = STORE_TYPES[kind]
    options: dict[str, Any] = {}
    ok = True
    for key in schema:
        if schema[key][1] and key not in table:
            out.add(base, f"missing required option {key!r} for a {kind} store")
            ok = False
    for key, value in table.items():
        if key == "type":
            continue
        path = (*base, key)
        if key not in schema:
            known = ", ".join(sorted(schema)) or "none"
            out.add(path, f"unknown option for a {kind} store (known: {known})")
            ok = False
            continue
        types, _required, check = schema[key]
        if not _type_ok(value, types):
            out.add(path, f"must be {_type_names(types)}, not {value!r}")
            ok = False
            continue
        problem = _check_value(check, value, name, names)
        if problem:
            out.add(path, problem)
            ok = False
            continue
        if check == "path" and value != ":memory:":
            try:
                value = expand_path(value)
            except KeyError as exc:
                out.add(path, f"environment variable {exc.args[0]} is not set")
                ok = False
                continue
        options[key] = value
    if kind == "postgres" and ("dsn" in table) == ("dsn_file" in table):
        # Neither or both: a second source of the password is a mistake
        # waiting to happen, so the choice is the user's, not ours.
        out.add(
            base,
            "a postgres store needs exactly one of 'dsn' and 'dsn_file'"
            + (", not both" if "dsn" in table else ""),
        )
        ok = False
    return StoreConfig(name, kind, options) if ok else None


def _check_value(check: str | None, value: Any, name: str, names: set[str]) -> str:
    if check == "store":
        if value == name:
            return "a store cannot refer to itself"
        if value not in names:
            return f"no store named {value!r} is configured"
    elif check == "stores":
        if not value:
            return "must name at least one store"
        if name in value:
            return "a store cannot refer to itself"
        # Every missing name at once: a user fixing a list of typos should
        # not have to run the check once per name.
        missing = [i for i in value if not isinstance(i, str) or i not in names]
        if len(missing) == 1:
            return f"no store named {missing[0]!r} is configured"
        if missing:
            listed = ", ".join(repr(i) for i in missing)
            return f"no stores named {listed} are configured"
    elif check == "identifier":
        if not _IDENT_RE.match(value):
            return f"{value!r} is not a valid SQL identifier (letters, digits, '_')"
    elif check == "pg_table":
        if not _PG_TABLE_RE.match(value):
            return (
                f"{value!r} is not a valid table name (a letter or '_', then "
                "letters, digits, '_'; at most 41 characters)"
            )
    elif check == "dsn":
        if not value.strip():
            return "is empty (give a libpq connection string or URI)"
    elif check == "identifiers":
        for item in value:
            if not isinstance(item, str) or not _IDENT_RE.match(item):
                return f"{item!r} is not a valid SQL identifier (letters, digits, '_')"
    elif check == "index":
        if value not in ("dynamic", "static", "none"):
            return f"must be 'dynamic', 'static' or 'none', not {value!r}"
    elif check == "url":
        if not re.match(r"^(https?|file)://", value):
            return f"{value!r} is not an http(s) or file URL"
    elif check == "nonnegative":
        if value < 0:
            return f"must not be negative, not {value!r}"
    elif check == "encoder":
        if value not in ("pbkdf2", "sha1"):
            return f"must be 'pbkdf2' or 'sha1', not {value!r}"
    return ""


def store_references(store: StoreConfig) -> list[str]:
    """Names of the other configured stores a composite store is built on."""
    schema = STORE_TYPES[store.type]
    found: list[str] = []
    for key, value in store.options.items():
        check = schema[key][2]
        if check == "store":
            found.append(value)
        elif check == "stores":
            found.extend(value)
    return found


def _check_cycles(stores: dict[str, StoreConfig], out: _Collector) -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2 or name not in stores:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*trail[trail.index(name) :], name])
            out.add(("stores", name), f"stores refer to each other in a cycle: {cycle}")
            return
        state[name] = 1
        for ref in store_references(stores[name]):
            visit(ref, [*trail, name])
        state[name] = 2

    for name in stores:
        visit(name, [])


def parse_config(text: str, source: str = "<config>") -> Config:
    """Parse and validate configuration text.

    Raises
    ------
    ConfigError
        Listing every problem found, each with its location.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from exc
    out = _Collector(source, text)
    for key in data:
        if key not in ("daemon", "stores", "listen", "curve"):
            out.add((key,), "unknown table (known: daemon, stores, listen, curve)")
    daemon = _check_daemon(data.get("daemon", {}), out)
    raw_stores = data.get("stores", {})
    stores: dict[str, StoreConfig] = {}
    if not isinstance(raw_stores, dict):
        out.add(("stores",), "must be a table of store tables")
    else:
        names = set(raw_stores)
        for name, table in raw_stores.items():
            store = _check_store(name, table, names, out)
            if store is not None:
                stores[name] = store
        _check_cycles(stores, out)
    from ._listen_config import check_listen  # tcp + CURVE (issue 8)

    listen = check_listen(data, out)
    if out.errors:
        raise ConfigError(out.errors)
    return Config(source=source, daemon=daemon, stores=stores, listen=listen)


def default_config_text() -> str:
    """The embedded default configuration (``encored/default.toml``)."""
    return resources.files(__package__).joinpath("default.toml").read_text("utf-8")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the configuration file at ``path``, or the embedded default.

    Raises
    ------
    ConfigError
        If the file cannot be read or is invalid (every problem listed).
    """
    if path is None:
        return parse_config(default_config_text(), "<embedded default>")
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{source}: cannot read: {exc}"]) from exc
    return parse_config(text, source)
