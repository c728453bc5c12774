"""The ``[listen]`` and ``[curve]`` tables: tcp endpoints, only with CURVE.

::

    [listen]
    requests = "tcp://0.0.0.0:7700"   # store calls
    events = "tcp://0.0.0.0:7701"     # the event bus (PUB)
    events_in = "tcp://0.0.0.0:7702"  # where remote bridges push events

    [curve]
    server_secret_key = "/etc/encored/encored.key_secret"
    authorized_keys = "/etc/encored/authorized_keys"

Port 0 lets the system choose (``encore status`` shows the port bound).
A ``tcp://`` endpoint without ``[curve]`` is refused: remote access is
only offered with authentication and encryption.  ``server_secret_key``
is a secret certificate written by ``encore keys generate`` (mode 0600);
``authorized_keys`` is a file with one client public key (Z85, 40
characters) a line, optionally followed by a name (``encore keys
generate`` prints such a line), ``#`` comment lines allowed; or a
directory of ``*.key`` public certificates.  The ipc sockets stay as they are.
"""

from __future__ import annotations

__all__ = ["ListenSettings", "check_listen", "read_authorized_keys"]

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from encore_client._keys import is_z85_key, read_key_pair, read_public_key

_TCP = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+|\*):(\d{1,5})$")


class _Errors(Protocol):
    def add(self, path: tuple[str, ...], message: str) -> None: ...


@dataclass(frozen=True)
class ListenSettings:
    """Validated ``[listen]`` and ``[curve]`` settings."""

    requests: str | None = None
    events: str | None = None
    events_in: str | None = None
    server_secret_key: str | None = None
    authorized_keys: str | None = None

    @property
    def tcp_configured(self) -> bool:
        """Whether any tcp endpoint is configured."""
        return bool(self.requests or self.events or self.events_in)


def read_authorized_keys(source: str | os.PathLike[str]) -> frozenset[bytes]:
    """The client public keys listed in a file or a directory of ``*.key``.

    Raises ``ValueError`` naming the file and line of a bad entry.
    """
    path = Path(source)
    keys: set[bytes] = set()
    if path.is_dir():
        for cert in sorted(path.glob("*.key")):
            keys.add(read_public_key(cert))
        return frozenset(keys)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        # Z85 keys may contain (and start with) '#': a line is a key when
        # its first word is one; else it may be a comment.
        if not words or (not is_z85_key(words[0]) and words[0].startswith("#")):
            continue
        if not is_z85_key(words[0]):
            raise ValueError(f"{path}:{number}: not a 40-character Z85 public key")
        keys.add(words[0].encode("ascii"))  # a name may follow the key
    return frozenset(keys)


def check_listen(data: dict[str, Any], out: _Errors) -> ListenSettings | None:
    """Validate the ``[listen]``/``[curve]`` tables of parsed TOML ``data``.

    Problems are reported through ``out.add(path, message)``; the result is
    ``None`` when neither table is present.
    """
    listen = data.get("listen")
    curve = data.get("curve")
    if listen is None and curve is None:
        return None
    values: dict[str, Any] = {}
    for table_name, table, keys in (
        ("listen", listen, ("requests", "events", "events_in")),
        ("curve", curve, ("server_secret_key", "authorized_keys")),
    ):
        if table is None:
            continue
        if not isinstance(table, dict):
            out.add((table_name,), "must be a table")
            continue
        for key, value in table.items():
            if key not in keys:
                out.add(
                    (table_name, key), f"unknown setting (known: {', '.join(keys)})"
                )
            elif not isinstance(value, str):
                out.add((table_name, key), f"must be a string, not {value!r}")
            else:
                values[key] = value
    for key in ("requests", "events", "events_in"):
        endpoint = values.get(key)
        if endpoint is None:
            continue
        match = _TCP.match(endpoint)
        if not match or int(match.group(2)) > 65535:
            out.add(
                ("listen", key),
                f"{endpoint!r} is not tcp://HOST:PORT (ipc sockets are always "
                "served, in the runtime directory)",
            )
    settings = ListenSettings(**values)
    if settings.tcp_configured:
        if "server_secret_key" not in values or "authorized_keys" not in values:
            out.add(
                ("listen",),
                "tcp:// endpoints are offered only with CURVE: add a [curve] table "
                "with server_secret_key and authorized_keys "
                "(see `encore keys generate`)",
            )
        import zmq

        if not zmq.has("curve"):
            out.add(("curve",), "this libzmq was built without CURVE support")
    for key, reader in (
        ("server_secret_key", read_key_pair),
        ("authorized_keys", read_authorized_keys),
    ):
        if key in values:
            try:
                reader(os.path.expanduser(values[key]))
            except (ValueError, OSError) as exc:
                out.add(("curve", key), str(exc))
    return settings
