"""CURVE keys for reaching an encored over ``tcp://``, and remote endpoints.

A daemon offers ``tcp://`` only with CURVE (ZeroMQ's elliptic-curve
encryption and authentication): it has a key pair, and it accepts only the
clients whose public keys are in its list of authorised keys.  A client
needs the daemon's public key and a key pair of its own.

Keys are stored as ZeroMQ certificate files (the format of ``zcert`` and
``zmq.auth``): ``NAME.key`` holds the public key and may be shared;
``NAME.key_secret`` holds both keys and is written readable by its owner
only.  ``encore keys generate NAME`` writes a pair.

A client reaches a remote daemon through an :class:`Endpoints` carrying
the keys, made by :func:`remote_endpoints` or :func:`load_remote` (a small
TOML file, what ``encore --remote FILE`` reads); pass it wherever a
``runtime_dir`` is taken (``RemoteStore``, ``BusBridge``, ``ZmqTransport``).
"""

from __future__ import annotations

__all__ = [
    "CurveKeys",
    "generate_keys",
    "read_public_key",
    "read_key_pair",
    "remote_endpoints",
    "load_remote",
    "apply_curve",
    "is_z85_key",
]

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import zmq

from ._paths import Endpoints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_Z85_KEY = re.compile(rb"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")
_CERT_LINE = re.compile(r'^\s*(public|secret)-key\s*=\s*"([^"]*)"\s*$')


def is_z85_key(text: str | bytes) -> bool:
    """Whether ``text`` is a 40-character Z85 CURVE key."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    return bool(_Z85_KEY.match(data))


@dataclass(frozen=True)
class CurveKeys:
    """What a client needs for CURVE: the server's key and its own pair.

    All three are 40-character Z85 keys (bytes).  ``repr`` hides the
    secret key.
    """

    server_public: bytes
    public: bytes
    secret: bytes

    def __repr__(self) -> str:
        return (
            f"CurveKeys(server_public={self.server_public!r}, public={self.public!r},"
            " secret=<hidden>)"
        )


def _cert_keys(path: Path) -> dict[str, bytes]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read key file {path}: {exc}") from exc
    found: dict[str, bytes] = {}
    for line in text.splitlines():
        match = _CERT_LINE.match(line)
        if match:
            found[match.group(1)] = match.group(2).encode("ascii", "replace")
    for kind, key in found.items():
        if not is_z85_key(key):
            raise ValueError(f"{path}: the {kind} key is not a 40-character Z85 key")
    if "public" not in found:
        raise ValueError(
            f"{path} is not a CURVE certificate (no public-key line); "
            "make one with `encore keys generate`"
        )
    return found


def read_public_key(source: str | os.PathLike[str]) -> bytes:
    """A public key from a certificate file, or given as Z85 text.

    Raises ``ValueError`` saying what is wrong with the file or the text.
    """
    text = os.fspath(source)
    if is_z85_key(text) and not os.path.exists(text):
        return text.encode("ascii")
    return _cert_keys(Path(text))["public"]


def read_key_pair(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """``(public, secret)`` from a secret certificate file.

    Raises ``ValueError`` if the file holds no secret key, or if other
    users may read it (a secret key anyone can read is no secret).
    """
    path = Path(path)
    keys = _cert_keys(path)
    if "secret" not in keys:
        raise ValueError(
            f"{path} holds no secret key (give the .key_secret file, not the .key)"
        )
    mode = path.stat().st_mode
    if mode & 0o077:
        raise ValueError(
            f"{path} may be read by other users (mode {mode & 0o777:o}); "
            f"make it private: chmod 600 {path}"
        )
    return keys["public"], keys["secret"]


def generate_keys(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write a new key pair as ``NAME.key`` and ``NAME.key_secret``.

    The secret file is created with mode 0600.  Returns both paths.

    Raises
    ------
    ValueError
        If ``name`` is not a plain file name, or CURVE is not available.
    FileExistsError
        If either file exists already (keys are never overwritten).
    """
    if not re.match(r"^[A-Za-z0-9_.-]+$", name) or name.startswith("."):
        raise ValueError(f"key name {name!r}: use letters, digits, '_', '-', '.'")
    if not zmq.has("curve"):
        raise ValueError("this libzmq was built without CURVE support")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.curve_keypair()
    public_path = directory / f"{name}.key"
    secret_path = directory / f"{name}.key_secret"
    for path in (public_path, secret_path):
        if path.exists():
            raise FileExistsError(f"{path} exists already; keys are not overwritten")
    _write_cert(secret_path, public, secret, 0o600)
    _write_cert(public_path, public, None, 0o644)
    return public_path, secret_path


def _write_cert(path: Path, public: bytes, secret: bytes | None, mode: int) -> None:
    lines = [
        "#   encore CURVE "
        + ("secret certificate: keep it private" if secret else "public certificate"),
        "#   (ZeroMQ certificate format, readable by zmq.auth and zcert)",
        "metadata",
        "curve",
        f'    public-key = "{public.decode()}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, mode)  # the umask must not loosen or tighten it


def remote_endpoints(
    requests: str,
    events: str,
    server_key: str | os.PathLike[str],
    client_key: str | os.PathLike[str],
    events_in: str = "",
) -> Endpoints:
    """Endpoints of a daemon reached over ``tcp://`` with CURVE.

    ``server_key`` is the daemon's public certificate (or its Z85 text),
    ``client_key`` this client's secret certificate; ``events_in`` is
    where a bridge pushes its events (the daemon's ``[listen] events_in``;
    without it a bridge only receives).

    Raises ``ValueError`` for a non-tcp endpoint or an unusable key.
    """
    labelled = [("requests", requests), ("events", events)]
    if events_in:
        labelled.append(("events_in", events_in))
    for label, endpoint in labelled:
        if not isinstance(endpoint, str) or not endpoint.startswith("tcp://"):
            raise ValueError(f"{label} endpoint must be tcp://HOST:PORT: {endpoint!r}")
    public, secret = read_key_pair(client_key)
    keys = CurveKeys(read_public_key(server_key), public, secret)
    return Endpoints(
        runtime_dir=Path(f"(remote {requests})"),
        events=events,
        requests=requests,
        lock_file=Path(os.devnull),
        curve=keys,
        events_in=events_in,
    )


def load_remote(path: str | os.PathLike[str]) -> Endpoints:
    """Read a remote-daemon file and return its :func:`remote_endpoints`.

    The file is TOML with ``requests``, ``events`` and optionally
    ``events_in`` (``tcp://`` endpoints), ``server_key`` and ``client_key``
    (certificate paths, relative to the file's directory)::

        requests = "tcp://192.0.2.7:7700"
        events = "tcp://192.0.2.7:7701"
        events_in = "tcp://192.0.2.7:7702"
        server_key = "encored.key"
        client_key = "laptop.key_secret"

    Raises ``ValueError`` naming the file and what is wrong.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read remote file {path}: {exc}") from exc
    missing = [
        k for k in ("requests", "events", "server_key", "client_key") if k not in data
    ]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    base = path.parent

    def locate(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{path}: key paths are strings")
        if is_z85_key(value):
            return value
        return str(base / os.path.expanduser(value))

    try:
        return remote_endpoints(
            data["requests"],
            data["events"],
            locate(data["server_key"]),
            locate(data["client_key"]),
            data.get("events_in", ""),
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def apply_curve(sock: zmq.Socket, endpoints: Endpoints) -> None:
    """Make ``sock`` a CURVE client when ``endpoints`` carry keys.

    Call before ``connect``.  Does nothing for local (ipc) endpoints.
    """
    keys = getattr(endpoints, "curve", None)
    if keys is None:
        return
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
