"""File names of ``FileSystemStore`` keys: the reversible key <-> name encoding.

A key ``k`` is stored as ``<stem>.data`` and ``<stem>.metadata``. This
module holds the mapping both ways: ``key_to_stem`` (plain keys as they
are, others ``%``-encoded, stems longer than ``MAX_STEM`` replaced by a
SHA-256 whose key is kept in ``<stem>.key``) and ``filename_to_key``, which
accepts a name only if it maps back exactly. The rules are documented in
the "Key encoding" section of ``encore.storage.filesystem_store``, which
re-exports the public names: import them from there.
"""

from __future__ import annotations

import hashlib
import os
import re

__all__ = [
    "key_to_stem",
    "filename_to_key",
    "DATA_SUFFIX",
    "METADATA_SUFFIX",
    "KEY_SUFFIX",
    "MAX_STEM",
]

DATA_SUFFIX = ".data"
METADATA_SUFFIX = ".metadata"
KEY_SUFFIX = ".key"
MAX_STEM = 200

_PLAIN = re.compile(
    r"[A-Za-z0-9_\-+=,@~!#&'()\[\]{};^][A-Za-z0-9_\-+=,@~!#&'()\[\]{};^ .]*\Z"
)
_DEVICE = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])(\..*)?\Z", re.IGNORECASE)
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_-.")
_ENCODED = re.compile(r"%(?:[a-z0-9_.\-]|%[0-9a-f]{2})*\Z")
_HASHED = re.compile(r"%~[0-9a-f]{64}\Z")


def _is_plain(key: str, case_insensitive: bool = False) -> bool:
    return (
        len(key) <= MAX_STEM
        and _PLAIN.match(key) is not None
        and not key.endswith(" ")
        and _DEVICE.match(key) is None
        and not (case_insensitive and key != key.lower())
    )


def key_to_stem(key: str, case_insensitive: bool = False) -> str:
    """Return the file name stem of ``key`` (see the module docstring).

    Raises
    ------
    TypeError
        If ``key`` is not a str.
    """
    if type(key) is not str:
        raise TypeError(f"keys are str, not {type(key).__name__}")
    if _is_plain(key, case_insensitive):
        return key
    raw = key.encode("utf-8", "surrogatepass")
    stem = "%" + "".join(chr(b) if b in _SAFE else f"%{b:02x}" for b in raw)
    if len(stem) > MAX_STEM:
        return "%~" + hashlib.sha256(raw).hexdigest()
    return stem


def _stem_to_key(stem: str, case_insensitive: bool = False) -> str | None:
    """The key of a (non-hashed) stem, or None if it is not canonical."""
    if stem.startswith("%"):
        if not _ENCODED.match(stem):
            return None
        raw = bytearray()
        i = 1
        while i < len(stem):
            if stem[i] == "%":
                raw.append(int(stem[i + 1 : i + 3], 16))
                i += 3
            else:
                raw.append(ord(stem[i]))
                i += 1
        try:
            key = bytes(raw).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return None
        return key if key_to_stem(key, case_insensitive) == stem else None
    return stem if _is_plain(stem, case_insensitive) else None


def _split(name: str) -> tuple[str, str] | None:
    """Split a file name into (stem, suffix) if it may belong to a key."""
    if name.startswith("."):
        return None
    if name.endswith(DATA_SUFFIX):
        return name[: -len(DATA_SUFFIX)], DATA_SUFFIX
    if name.endswith(METADATA_SUFFIX):
        return name[: -len(METADATA_SUFFIX)], METADATA_SUFFIX
    return None


def filename_to_key(
    name: str, directory: str | None = None, case_insensitive: bool = False
) -> str | None:
    """Return the key a file name of a store directory belongs to, or None.

    ``name`` is a bare file name (``<stem>.data`` or ``<stem>.metadata``).
    Hashed stems of long keys need ``directory`` to read ``<stem>.key``.
    Hidden names, temporary files and non-canonical names give None.
    """
    split = _split(name)
    if split is None:
        return None
    stem = split[0]
    if _HASHED.match(stem):
        if directory is None:
            return None
        try:
            with open(os.path.join(directory, stem + KEY_SUFFIX), "rb") as f:
                key = f.read().decode("utf-8", "surrogatepass")
        except (OSError, UnicodeDecodeError):
            return None
        return key if key_to_stem(key, case_insensitive) == stem else None
    return _stem_to_key(stem, case_insensitive)
