"""Turning events into msgpack frames and back, without trusting the wire.

Encoding takes a live event and produces an *event header* (class name,
base names, source descriptor, time) and an *attributes* frame.  Decoding
reverses it: the class is looked up among the event classes this process
already has (subclasses of ``BaseEvent`` that are imported, and classes
registered with an event manager) and is never imported by the name the
wire gives; an unknown class becomes a dynamic subclass of
:class:`~encore_client.RemoteEvent` and of its nearest known bases.

Values: msgpack types travel as they are; ``tuple``, ``uuid.UUID``,
``datetime``, ``set``/``frozenset`` use extension types and come back as
themselves; path-like objects become ``str``; anything else becomes a
:class:`~encore_client.RemoteObject` (type name and ``repr``).  The exact
format is in ``docs/protocol.md``.
"""

from __future__ import annotations

__all__ = [
    "ClassRegistry",
    "DecodeError",
    "pack",
    "unpack",
    "encode_attributes",
    "decode_attributes",
    "encode_source",
    "decode_source",
    "register_source_adapter",
    "full_name",
    "event_class_names",
    "check_header",
    "EVENT_PREFIX",
    "parse_prefix",
    "decode_header",
    "header_head",
    "encode_header",
    "clean_header",
    "decode_client_header",
    "decode_event_header",
    "event_frame",
]

import datetime
import logging
import os
import re
import struct
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgpack

from encore.events.abstract_event_manager import BaseEvent

from ._events import RemoteEvent, RemoteObject, RemoteSource
from .wire.errors import ProtocolError
from .wire.limits import MAX_BASES, MAX_NAME_LENGTH, MAX_PACKED_EVENTS
from .wire.version import PROTOCOL_VERSION

logger = logging.getLogger(__name__)

# Extension type codes (documented in docs/protocol.md).
EXT_UUID = 1
EXT_TUPLE = 2
EXT_DATETIME = 3
EXT_FROZENSET = 4
EXT_OBJECT = 5

#: Full class names as Python writes them: dotted identifiers, with the
#: ``<locals>`` part that classes defined inside functions carry.
_NAME_RE = re.compile(r"^(?:[A-Za-z_]\w*|<locals>)(?:\.(?:[A-Za-z_]\w*|<locals>))*$")
_ATTR_RE = re.compile(r"^[A-Za-z]\w*$")
_REPR_LIMIT = 200


class DecodeError(ProtocolError):
    """A frame from the wire is not a valid message."""


# -- values --------------------------------------------------------------------


def _short_repr(obj: object) -> str:
    try:
        text = repr(obj)
    except Exception as exc:  # a broken __repr__ must not break an emit
        text = f"<repr failed: {type(exc).__name__}>"
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 3] + "..."
    return text


def _default(obj: object) -> Any:
    """msgpack fallback for values outside its strict type set."""
    if isinstance(obj, RemoteObject):  # forwarded as it came
        return msgpack.ExtType(EXT_OBJECT, _packb([obj.type_name, obj.repr]))
    if isinstance(obj, tuple):
        return msgpack.ExtType(EXT_TUPLE, _packb(list(obj)))
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):  # IntEnum, IntFlag and other int subclasses
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj)
    if isinstance(obj, dict):
        return dict(obj)
    if isinstance(obj, list):
        return list(obj)
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(EXT_UUID, obj.bytes)
    if isinstance(obj, datetime.datetime):  # before date: it is a subclass
        return msgpack.ExtType(EXT_DATETIME, b"T" + obj.isoformat().encode())
    if isinstance(obj, datetime.date):
        return msgpack.ExtType(EXT_DATETIME, b"D" + obj.isoformat().encode())
    if isinstance(obj, datetime.time):
        return msgpack.ExtType(EXT_DATETIME, b"t" + obj.isoformat().encode())
    if isinstance(obj, set | frozenset):
        return msgpack.ExtType(EXT_FROZENSET, _packb(list(obj)))
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return msgpack.ExtType(EXT_OBJECT, _packb([full_name(type(obj)), _short_repr(obj)]))


def _ext_hook(code: int, data: bytes) -> Any:
    try:
        if code == EXT_UUID:
            return uuid.UUID(bytes=data)
        if code == EXT_TUPLE:
            return tuple(_unpackb(data))
        if code == EXT_DATETIME:
            text = data.decode()
            kind, iso = text[0], text[1:]
            if kind == "T":
                return datetime.datetime.fromisoformat(iso)
            if kind == "D":
                return datetime.date.fromisoformat(iso)
            if kind == "t":
                return datetime.time.fromisoformat(iso)
        elif code == EXT_FROZENSET:
            return frozenset(_unpackb(data))
        elif code == EXT_OBJECT:
            type_name, text = _unpackb(data)
            return RemoteObject(str(type_name), str(text))
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise DecodeError(f"bad extension value (type {code}): {exc}") from exc
    # Unknown extension types are kept opaque rather than rejected, so that
    # a newer sender's extra types do not break older receivers.
    return msgpack.ExtType(code, data)


def _new_packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, strict_types=True, default=_default)


#: One reusable Packer per thread: building a Packer costs more than packing
#: a small event with it.  Taken out of the slot while in use, because
#: ``_default`` (and a ``repr`` it calls, which may emit an event) can pack
#: again on the same thread while the outer pack is still running.
_packers = threading.local()


def _packb(obj: Any) -> bytes:
    packer = _packers.__dict__.pop("p", None)
    if packer is None:
        packer = _new_packer()
    try:
        return packer.pack(obj)
    except BaseException:
        packer.reset()  # a failed pack may leave a partial buffer behind
        raise
    finally:
        _packers.p = packer


def _unpackb(data: bytes) -> Any:
    return msgpack.unpackb(
        data, raw=False, ext_hook=_ext_hook, strict_map_key=False, use_list=True
    )


#: One reusable plain Packer per thread for :func:`pack` (``packb`` builds
#: a new Packer, with its buffer, per call); taken out of its slot while in
#: use, as ``_packers``.
_plain_packers = threading.local()


def pack(obj: Any) -> bytes:
    """Encode a value (a request, a reply, a header) as msgpack.

    Raises ``TypeError`` or ``ValueError`` when the value has no encoding
    (only event attributes get the lenient :class:`RemoteObject` fallback).
    """
    packer = _plain_packers.__dict__.pop("p", None)
    if packer is None:
        packer = msgpack.Packer(use_bin_type=True)
    try:
        return packer.pack(obj)
    except BaseException:
        packer.reset()  # a failed pack may leave a partial buffer behind
        raise
    finally:
        _plain_packers.p = packer


def unpack(data: bytes, max_size: int | None = None) -> Any:
    """Decode one msgpack value from the wire.

    Raises
    ------
    DecodeError
        If the bytes are not exactly one valid msgpack value, or exceed
        ``max_size``.
    """
    if max_size is not None and len(data) > max_size:
        raise DecodeError(f"frame of {len(data)} bytes exceeds {max_size}")
    try:
        return msgpack.unpackb(
            data, raw=False, ext_hook=_ext_hook, strict_map_key=False
        )
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types
        raise DecodeError(f"not a msgpack value: {exc}") from exc


# -- attributes ----------------------------------------------------------------

#: Names kept off the wire: the source travels in the header, and private
#: names are process-local state (the bridge's own bookkeeping included).
_SKIPPED_ATTRS = frozenset({"source"})


#: Per tuple of an instance's attribute names, the names to leave out.
#: Copying the instance dict and deleting a few names costs a quarter of
#: filtering it name by name.  Bounded: events may carry ad-hoc names.
_DROPPED: dict[tuple[str, ...], tuple[str, ...]] = {}


def _public_attrs(event: object) -> dict[str, Any]:
    attrs = vars(event)
    names = tuple(attrs)
    dropped = _DROPPED.get(names)
    if dropped is None:
        if len(_DROPPED) > 1024:
            _DROPPED.clear()
        dropped = _DROPPED[names] = tuple(
            k for k in names if k.startswith("_") or k in _SKIPPED_ATTRS
        )
    attrs = attrs.copy()
    for name in dropped:
        del attrs[name]
    return attrs


def encode_attributes(event: object) -> bytes:
    """Encode the public attributes of an event as one msgpack map.

    Never fails because of a value: one that cannot be encoded is sent as a
    :class:`RemoteObject` and a warning is logged.
    """
    attrs = _public_attrs(event)
    try:
        return _packb(attrs)
    except (TypeError, ValueError, OverflowError):
        pass
    safe: dict[str, Any] = {}
    for key, value in attrs.items():
        try:
            _packb(value)
        except (TypeError, ValueError, OverflowError) as exc:
            logger.warning(
                "event %s: attribute %r cannot be encoded (%s); sending its repr",
                type(event).__name__,
                key,
                exc,
            )
            value = RemoteObject(full_name(type(value)), _short_repr(value))
        safe[key] = value
    return _packb(safe)


#: Per class, the attribute names already found safe to set from the wire
#: (checking each name of each event again is the costliest part of a
#: decode).  Bounded: names come from the wire.
_SAFE_NAMES: dict[type | None, set[str]] = {}
_MAX_SAFE_NAMES = 10000


def _safe_names(cls: type | None) -> set[str]:
    names = _SAFE_NAMES.get(cls)
    if names is None:
        if len(_SAFE_NAMES) > 4096:
            _SAFE_NAMES.clear()
        names = _SAFE_NAMES.setdefault(cls, set())
    return names


def _safe_name(name: object, cls: type | None, safe: set[str]) -> bool:
    if not isinstance(name, str) or not _ATTR_RE.match(name) or name in _SKIPPED_ATTRS:
        return False
    if cls is not None:
        value = getattr(cls, name, None)
        if callable(value) or isinstance(value, property):
            return False
    if len(safe) < _MAX_SAFE_NAMES:
        safe.add(name)
    return True


def decode_attributes(data: bytes, cls: type | None = None) -> dict[str, Any]:
    """Decode an attributes frame, dropping names that must not be set.

    Private names (leading underscore) and names that would shadow a method
    or property of ``cls`` are dropped with a warning: the wire never
    decides what code runs.

    Raises
    ------
    DecodeError
        If the frame is not a msgpack map with string keys.
    """
    try:
        attrs = _unpackb(data)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"attributes are not msgpack: {exc}") from exc
    if not isinstance(attrs, dict):
        raise DecodeError("attributes frame is not a map")
    safe = _safe_names(cls)
    if attrs.keys() <= safe:
        return attrs  # the usual case: every name already checked
    bad = [k for k in attrs if k not in safe and not _safe_name(k, cls, safe)]
    if bad:
        logger.warning("dropping attributes that may not be set from the wire: %r", bad)
        for k in bad:
            del attrs[k]
    return attrs


# -- source --------------------------------------------------------------------

_SourceEncoder = Callable[[object], "dict[str, Any] | None"]
_SourceDecoder = Callable[[dict[str, Any]], object]
_source_encoders: list[_SourceEncoder] = []
_source_decoders: dict[str, _SourceDecoder] = {}


def register_source_adapter(
    kind: str, encode: _SourceEncoder, decode: _SourceDecoder
) -> None:
    """Teach the codec to send some kind of ``source`` and rebuild it.

    ``encode(obj)`` returns a descriptor (a msgpack-able dict) for sources
    it handles, or ``None``; ``decode(descriptor)`` builds the receiving
    side's object.  The store client registers one so that a store event's
    source arrives as a ``RemoteStore``.  Adapters tried in registration
    order; the generic :class:`RemoteSource` is the fallback.
    """
    _source_encoders.append(encode)
    _source_decoders[kind] = decode


def encode_source(source: object) -> dict[str, Any] | None:
    """Describe an event's source for the wire (``None`` stays ``None``)."""
    if source is None:
        return None
    if isinstance(source, RemoteSource):
        return dict(source.data)
    for encoder in _source_encoders:
        try:
            descriptor = encoder(source)
        except Exception:
            logger.exception("source adapter failed on %r", type(source))
            continue
        if descriptor is not None:
            return descriptor
    return {
        "kind": "object",
        "type": full_name(type(source)),
        "repr": _short_repr(source),
        "pid": os.getpid(),
    }


def decode_source(descriptor: object) -> object:
    """Rebuild an event's source from its descriptor (see ``encode_source``).

    A malformed descriptor gives a :class:`RemoteSource` that says so rather
    than failing the whole event.
    """
    if descriptor is None:
        return None
    if not isinstance(descriptor, dict):
        return RemoteSource("<malformed>", _short_repr(descriptor))
    decoder = _source_decoders.get(descriptor.get("kind"))  # type: ignore[arg-type]
    if decoder is not None:
        try:
            return decoder(descriptor)
        except Exception:
            logger.exception("source adapter failed on %r", descriptor.get("kind"))
    pid = descriptor.get("pid")
    return RemoteSource(
        type_name=str(descriptor.get("type", "<unknown>")),
        repr=str(descriptor.get("repr", "")),
        pid=pid if isinstance(pid, int) else None,
        data=descriptor,
    )


# -- classes -------------------------------------------------------------------


def full_name(cls: type) -> str:
    """``module.QualName`` of a class: the name classes have on the wire."""
    return f"{cls.__module__}.{cls.__qualname__}"


def event_class_names(event_or_cls: object) -> tuple[str, ...]:
    """Wire names of an event's class and its bases, most derived first.

    For an event rebuilt from an unknown class these are the sender's names,
    so ``encore events --class`` can match on names this process never saw.
    """
    cls = event_or_cls if isinstance(event_or_cls, type) else type(event_or_cls)
    wire = cls.__dict__.get("_encore_wire")
    if wire is not None:
        return (wire[0], *wire[1])
    return tuple(full_name(c) for c in cls.__mro__ if c is not object)


#: Class/base name combinations already validated (regexes per event are
#: a noticeable cost); bounded because names come from the wire.
_CHECKED_NAMES: set[tuple[Any, ...]] = set()


def _check_names(name: object, bases: object) -> None:
    if (
        not isinstance(name, str)
        or len(name) > MAX_NAME_LENGTH
        or not _NAME_RE.match(name)
    ):
        raise DecodeError(f"bad event class name {_short_repr(name)}")
    if not isinstance(bases, list) or len(bases) > MAX_BASES:
        raise DecodeError("event bases must be a list of at most 64 names")
    for base in bases:
        if (
            not isinstance(base, str)
            or len(base) > MAX_NAME_LENGTH
            or not _NAME_RE.match(base)
        ):
            raise DecodeError(f"bad event base name {_short_repr(base)}")


def check_header(header: object) -> dict[str, Any]:
    """Validate the class fields of a decoded event header.

    Returns the header; raises :class:`DecodeError` on a missing or
    malformed ``class``/``bases``/``time`` field.
    """
    if not isinstance(header, dict):
        raise DecodeError("event header is not a map")
    name = header.get("class")
    bases = header.get("bases")
    if isinstance(bases, list) and isinstance(name, str):
        key = (name, *bases)
        if key not in _CHECKED_NAMES:
            _check_names(name, bases)
            if len(_CHECKED_NAMES) > 4096:
                _CHECKED_NAMES.clear()
            try:
                _CHECKED_NAMES.add(key)
            except TypeError:  # an unhashable base: _check_names raised
                pass
    else:
        _check_names(name, bases)
    stamp = header.get("time")
    if stamp is not None and not isinstance(stamp, int | float):
        raise DecodeError("event time must be a number")
    return header


# -- event headers ----------------------------------------------------------------

#: Format of a published event's header frame (protocol version 2): a fixed
#: binary prefix, then the origin, then the msgpack header map.  The prefix
#: holds what a subscriber's I/O thread needs for every event (format,
#: sequence number, time, daemon instance, origin length), so it tracks
#: sequence numbers and skips its own echoes without decoding msgpack.
EVENT_PREFIX = struct.Struct(">BQd16sH")
EVENT_FORMAT = PROTOCOL_VERSION
_HEADER_KEYS = frozenset({"class", "bases", "source", "time"})
_NIL = b"\xc0"
_TIME_KEY = msgpack.packb("time") + b"\xcb"  # then a big-endian float64
_pack_f64 = struct.Struct(">d").pack
_unpack_f64 = struct.Struct(">d").unpack_from
_TIME_TAIL = len(_TIME_KEY) + 8
#: Header maps already decoded and checked, by their bytes up to the time
#: value, for events without a source (then those bytes only depend on the
#: class): one dict lookup instead of a decode and a check per event.
#: Bounded: the bytes come from the wire.
_HEADERS: dict[bytes, tuple[str, tuple[str, ...]]] = {}


def header_head(name: str, bases: list[str]) -> bytes:
    """The constant start of a class's header map, up to the source value.

    :func:`encode_header` appends the source and the time: building the map
    from bytes cached per class costs a fraction of packing a dict.
    """
    return (
        b"\x84"
        + msgpack.packb("class")
        + msgpack.packb(name)
        + msgpack.packb("bases")
        + msgpack.packb(bases)
        + msgpack.packb("source")
    )


def encode_header(head: bytes, source: dict[str, Any] | None, stamp: float) -> bytes:
    """An event header map ``{class, bases, source, time}`` as msgpack.

    ``head`` comes from :func:`header_head`; ``source`` is a descriptor
    (see :func:`encode_source`).  Raises ``TypeError`` if the descriptor
    cannot be encoded.
    """
    return (
        head
        + (_NIL if source is None else pack(source))
        + _TIME_KEY
        + _pack_f64(float(stamp))
    )


def decode_client_header(data: bytes) -> dict[str, Any]:
    """Decode and check an event header map ``{class, bases, source, time}``.

    Raises
    ------
    DecodeError
        If it is not a msgpack map or its fields are malformed (see
        :func:`check_header`).
    """
    key = None
    if data[-_TIME_TAIL - 1 : -8] == _NIL + _TIME_KEY:
        key = data[:-8]
        names = _HEADERS.get(key)
        if names is not None:
            return {
                "class": names[0],
                "bases": list(names[1]),
                "source": None,
                "time": _unpack_f64(data, len(data) - 8)[0],
            }
    header = unpack(data)
    if not isinstance(header, dict):
        raise DecodeError("event header is not a map")
    check_header(header)
    if (
        key is not None
        and len(header) == 4
        and header.keys() == _HEADER_KEYS
        and header["source"] is None
        and type(header["time"]) is float
    ):
        if len(_HEADERS) >= 4096:
            _HEADERS.clear()
        _HEADERS[key] = (header["class"], tuple(header["bases"]))
    return header


def header_key(frame: bytes) -> bytes | None:
    """The bytes that identify a checked header, whatever its time.

    For a header frame without a source that :func:`decode_client_header`
    has already checked, the frame without its last 8 bytes (the time);
    every frame that starts with those bytes and is 8 bytes longer is the
    same valid header at another time.  ``None`` for any other frame.
    """
    key = frame[:-8]
    return key if key in _HEADERS else None


def header_time(frame: bytes) -> float:
    """The time of a header frame that :func:`header_key` identified."""
    return _unpack_f64(frame, len(frame) - 8)[0]


def clean_header(header: dict[str, Any], frame: bytes) -> bytes:
    """A client's checked header map as it will be published.

    The frame as it came when it holds only the known keys (the common
    case: nothing to re-encode), otherwise a re-encoding of the known keys.
    """
    if header.keys() <= _HEADER_KEYS:
        return frame
    return pack({k: header[k] for k in _HEADER_KEYS if k in header})


def pack_events(parts: list[bytes]) -> bytes:
    """Pack events, given as ``[header, attributes, header, ...]``, in one frame.

    The frame is a msgpack array of bin values.  One frame per batch
    instead of two per event: each ZeroMQ frame costs more than packing
    and unpacking an event's bytes in C.
    """
    return msgpack.packb(parts, use_bin_type=True)


def unpack_events(data: bytes) -> list[bytes]:
    """Read a frame of :func:`pack_events` back as ``[header, attributes, ...]``.

    Raises
    ------
    DecodeError
        If it is not a msgpack array of an even number (2 to
        ``2 * MAX_PACKED_EVENTS``) of bin values.
    """
    try:
        parts = msgpack.unpackb(
            data,
            max_array_len=2 * MAX_PACKED_EVENTS,
            max_map_len=0,
            max_str_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types
        raise DecodeError(
            f"not a packed list of events: {exc or type(exc).__name__}"
        ) from None
    if type(parts) is not list or not parts or len(parts) % 2:
        raise DecodeError(
            f"a packed list of events holds 1 to {MAX_PACKED_EVENTS} pairs "
            "of header and attributes"
        )
    for part in parts:
        if type(part) is not bytes:
            raise DecodeError("a packed list of events holds only bin values")
    return parts


def event_frame(
    seq: int, stamp: float, instance: bytes, origin: bytes, header: bytes
) -> bytes:
    """The header frame of a published event (see ``docs/protocol.md``).

    ``instance`` is the daemon's 16-byte instance id, ``origin`` the UTF-8
    client id (empty for the daemon's own events), ``header`` the msgpack
    header map.
    """
    return EVENT_PREFIX.pack(EVENT_FORMAT, seq, stamp, instance, len(origin)) + (
        origin + header
    )


def parse_prefix(frame: bytes) -> tuple[int, float, bytes, bytes]:
    """Read ``(seq, time, instance, origin)`` from an event's header frame.

    ``instance`` is 16 bytes, ``origin`` the UTF-8 client id (empty for
    the daemon's own events).

    Raises
    ------
    DecodeError
        If the frame is too short or of another format.
    """
    try:
        version, seq, stamp, instance, length = EVENT_PREFIX.unpack_from(frame)
    except struct.error as exc:
        raise DecodeError(f"bad event header prefix: {exc}") from None
    if version != EVENT_FORMAT:
        raise DecodeError(f"event header format {version} is not {EVENT_FORMAT}")
    end = EVENT_PREFIX.size + length
    if len(frame) < end:
        raise DecodeError("event header shorter than its origin")
    return seq, stamp, instance, frame[EVENT_PREFIX.size : end]


#: Decoded header fields (origin, class, bases) by the bytes of a published
#: header frame from the origin length up to the time value, for events
#: without a source.  Bounded: the bytes come from the wire.
_EVENT_HEADERS: dict[bytes, tuple[str | None, str, tuple[str, ...]]] = {}


def decode_event_header(
    frame: bytes,
) -> tuple[int, float, str, str | None, str, Any, Any]:
    """Decode a published event's header frame into its fields.

    Returns ``(seq, time, instance, origin, class name, bases, source
    descriptor)``; the same checks as :func:`decode_header`, done once per
    distinct header for events without a source.

    Raises
    ------
    DecodeError
        If the prefix or the map is malformed.
    """
    try:
        version, seq, stamp, instance, _length = EVENT_PREFIX.unpack_from(frame)
    except struct.error as exc:
        raise DecodeError(f"bad event header prefix: {exc}") from None
    # The key starts at the origin length, so that the same bytes always
    # split into the same origin and map.
    key = frame[EVENT_PREFIX.size - 2 : -8]
    cached = _EVENT_HEADERS.get(key)
    if cached is not None and version == EVENT_FORMAT:
        return seq, stamp, instance.hex(), cached[0], cached[1], cached[2], None
    header = decode_header(frame)
    if header["source"] is None and key.endswith(_NIL + _TIME_KEY):
        if len(_EVENT_HEADERS) >= 4096:
            _EVENT_HEADERS.clear()
        _EVENT_HEADERS[key] = (
            header["origin"],
            header["class"],
            tuple(header["bases"]),
        )
    return (
        seq,
        stamp,
        header["instance"],
        header["origin"],
        header["class"],
        header["bases"],
        header.get("source"),
    )


def decode_header(frame: bytes) -> dict[str, Any]:
    """Decode a published event's whole header frame into one checked map.

    Returns the header map (``class``, ``bases``, ``source``) with ``seq``,
    ``time``, ``instance`` (32 hex digits) and ``origin`` (``None`` for the
    daemon's own events) from the prefix.

    Raises
    ------
    DecodeError
        If the prefix or the map is malformed (see :func:`check_header`).
    """
    seq, stamp, instance, origin = parse_prefix(frame)
    header = decode_client_header(frame[EVENT_PREFIX.size + len(origin) :])
    try:
        header["origin"] = origin.decode() if origin else None
    except UnicodeDecodeError as exc:
        raise DecodeError(f"bad event origin: {exc}") from None
    header["seq"] = seq
    header["time"] = stamp
    header["instance"] = instance.hex()
    return header


class ClassRegistry:
    """Maps wire class names to local classes, building stand-ins if needed.

    Known classes are the subclasses of ``BaseEvent`` that are already
    imported (found by walking ``__subclasses__``) plus those registered with
    ``event_manager`` (``get_event()``).  Modules are never imported.  An
    unknown name is rebuilt as a dynamic class deriving from
    :class:`RemoteEvent` and from the most derived known classes among its
    bases; such classes are cached, and re-checked against the known classes
    at most once a second so that a class defined later is picked up.

    Thread-safe.
    """

    #: Bound on cached stand-in classes (names from the wire are
    #: attacker-chosen; the cache must not grow without limit).
    MAX_DYNAMIC = 4096
    RECHECK_INTERVAL = 1.0

    def __init__(self, event_manager: object = None) -> None:
        self._event_manager = event_manager
        self._lock = threading.Lock()
        self._known: dict[str, type] = {}
        self._dynamic: dict[tuple[str, tuple[str, ...]], tuple[type, float]] = {}
        self._wire_names: dict[type, tuple[str, list[str]]] = {}
        self._wire_heads: dict[type, bytes] = {}

    # Sending side --------------------------------------------------------------

    def wire_names(self, cls: type) -> tuple[str, list[str]]:
        """Return ``(class name, base names)`` for sending an event of ``cls``."""
        names = self._wire_names.get(cls)
        if names is None:
            wire = cls.__dict__.get("_encore_wire")
            if wire is not None:
                names = (wire[0], list(wire[1]))
            else:
                mro = [c for c in cls.__mro__[1:] if c is not object]
                names = (full_name(cls), [full_name(c) for c in mro])
            self._wire_names[cls] = names
        return names

    def wire_head(self, cls: type) -> bytes:
        """Return the cached :func:`header_head` of ``cls``."""
        head = self._wire_heads.get(cls)
        if head is None:
            head = self._wire_heads[cls] = header_head(*self.wire_names(cls))
        return head

    # Receiving side ------------------------------------------------------------

    def _walk(self) -> None:
        known: dict[str, type] = {}
        stack = [BaseEvent]
        seen: set[type] = set()
        while stack:
            cls = stack.pop()
            if cls in seen:
                continue
            seen.add(cls)
            if "_encore_wire" not in cls.__dict__:
                known[full_name(cls)] = cls
            stack.extend(cls.__subclasses__())
        get_event = getattr(self._event_manager, "get_event", None)
        if get_event is not None:
            try:
                registered = list(get_event())
            except Exception:
                registered = []
            for cls in registered:
                if isinstance(cls, type) and "_encore_wire" not in cls.__dict__:
                    known.setdefault(full_name(cls), cls)
        self._known = known

    def resolve(self, name: str, bases: list[str]) -> type:
        """Return the local class for an event named ``name`` with ``bases``."""
        cls = self._known.get(name)
        if cls is not None:
            return cls
        key = (name, tuple(bases))
        with self._lock:
            cached = self._dynamic.get(key)
            now = time.monotonic()
            if cached is not None and now - cached[1] < self.RECHECK_INTERVAL:
                return cached[0]
            self._walk()
            cls = self._known.get(name)
            if cls is not None:
                self._dynamic.pop(key, None)
                return cls
            if cached is not None:
                self._dynamic[key] = (cached[0], now)
                return cached[0]
            dyn = self._make_dynamic(name, bases)
            if len(self._dynamic) >= self.MAX_DYNAMIC:
                self._dynamic.pop(next(iter(self._dynamic)))
            self._dynamic[key] = (dyn, now)
            return dyn

    def _make_dynamic(self, name: str, bases: list[str]) -> type:
        known = [self._known[b] for b in bases if b in self._known]
        # Keep only the most derived known bases: FileEvent, not also
        # BaseEvent, so that the new class has a consistent MRO.
        nearest = [
            k for k in known if not any(o is not k and issubclass(o, k) for o in known)
        ]
        nearest = [k for k in nearest if not issubclass(RemoteEvent, k)]
        namespace = {
            "_encore_wire": (name, tuple(bases)),
            "remote_class_name": name,
            "remote_bases": tuple(bases),
            "__module__": name.rpartition(".")[0] or "encore_client.remote",
            "__qualname__": name.rpartition(".")[2],
            "__doc__": f"Stand-in for remote event class {name}.",
        }
        short = name.rpartition(".")[2]
        # Try with every nearest known base, then fewer: unusual hierarchies
        # (metaclass conflicts, orders that cannot be linearised) must still
        # produce an event rather than lose it.
        for count in range(len(nearest), -1, -1):
            try:
                return type(short, (RemoteEvent, *nearest[:count]), namespace)
            except TypeError:
                continue
        return type(short, (RemoteEvent,), namespace)  # pragma: no cover
