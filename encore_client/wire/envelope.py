"""Request and reply envelopes: built and checked in one place for both ends.

A request is ``[envelope, *data frames]`` and a reply ``[envelope, *data
frames]``; the envelope is a msgpack map (``docs/protocol.md``,
"Requests" and "Replies").  The client builds requests and parses
replies, the daemon parses requests and builds replies, both with the
functions below, so the two ends cannot drift apart.  Nothing here
touches a socket.
"""

from __future__ import annotations

__all__ = [
    "Reply",
    "RequestRefused",
    "MAX_FRAMES",
    "build_request",
    "oversized_request",
    "parse_request",
    "peek_request_id",
    "build_reply",
    "build_error",
    "parse_reply",
]

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .. import _codec
from .errors import ErrorCode, ProtocolError, RequestTooLargeError, error_from_reply
from .limits import MAX_CLIENT_LENGTH, MAX_ENVELOPE, MAX_FRAMES, MAX_ID_LENGTH
from .version import PROTOCOL_VERSION

Pack = Callable[[Any], bytes]


# -- the client's half ---------------------------------------------------------


def build_request(
    client_id: str,
    request_id: int | str,
    op: str,
    args: dict[str, Any] | None,
    pack: Pack = _codec.pack,
) -> bytes:
    """Encode a request envelope.

    ``pack`` lets a caller reuse its own msgpack packer.  Raises
    :class:`RequestTooLargeError` for an envelope the daemon would refuse
    (over ``MAX_ENVELOPE`` bytes), naming the argument to blame, so the
    caller learns it without a round trip.
    """
    envelope = pack(
        {
            "v": PROTOCOL_VERSION,
            "id": request_id,
            "client": client_id,
            "op": op,
            "args": args if args is not None else {},
        }
    )
    if len(envelope) > MAX_ENVELOPE:
        raise RequestTooLargeError(oversized_request(op, args, len(envelope)))
    return envelope


def oversized_request(op: str, args: dict[str, Any] | None, size: int) -> str:
    """Say which argument makes a request envelope of ``size`` bytes too large."""
    message = f"{op!r} request of {size} bytes exceeds the {MAX_ENVELOPE}-byte limit"
    if not args:
        return message
    sizes = {name: len(_codec.pack(value)) for name, value in args.items()}
    name = max(sizes, key=sizes.__getitem__)
    value = args[name]
    if name == "key" and isinstance(value, str):
        return f"the key is too long ({len(value)} characters): {message}"
    if isinstance(value, (list, dict)):
        return f"{message}: {name!r} has {len(value)} entries ({sizes[name]} bytes)"
    return f"{message}: {name!r} is {sizes[name]} bytes"


@dataclass
class Reply:
    """A successful reply: the ``result`` value and any extra frames."""

    result: Any
    frames: list[bytes] = field(default_factory=list)


def parse_reply(frames: list[bytes]) -> tuple[Any, Reply | Exception]:
    """Decode a reply message into ``(request id, Reply or exception)``.

    Raises :class:`ProtocolError` if the message is not a reply at all.
    """
    if not frames:
        raise ProtocolError("empty reply")
    envelope = _codec.unpack(frames[0])
    if not isinstance(envelope, dict) or "id" not in envelope:
        raise ProtocolError("reply envelope is not a map with an id")
    version = envelope.get("v")
    if version != PROTOCOL_VERSION:
        # Read no further: the rest of the reply may mean something else.
        return envelope["id"], ProtocolError(
            f"the daemon answered in protocol version {version!r}; "
            f"this client speaks {PROTOCOL_VERSION} (upgrade one of the two)"
        )
    if envelope.get("ok") is True:
        return envelope["id"], Reply(envelope.get("result"), list(frames[1:]))
    error = envelope.get("error")
    if not isinstance(error, dict):
        return envelope["id"], ProtocolError("error reply without an error")
    return envelope["id"], error_from_reply(error.get("code"), error.get("message"))


# -- the daemon's half ---------------------------------------------------------


#: The checked envelope of one request: ``(id, client, op, args)``.  A
#: plain tuple: building a named one costs more than the checks together.
RequestHead = tuple[int | str, str, str, dict[str, Any]]


class RequestRefused(Exception):
    """A request the daemon answers with an error before any operation runs.

    ``request_id`` is the id to answer with (``None`` when none could be
    read) and ``complaint`` what to log about the sender, without its name.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        request_id: int | str | None,
        complaint: str | None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.complaint = complaint


def _valid_id(rid: object) -> bool:
    # msgpack gives exact ints and strs, never bools posing as ints: exact
    # type checks suffice and cost less than isinstance.
    kind = type(rid)
    return kind is int or (kind is str and len(rid) <= MAX_ID_LENGTH)  # type: ignore[arg-type]


def peek_request_id(head: bytes) -> int | str | None:
    """The ``id`` of an envelope too large to decode, or ``None``.

    Only the map's keys and the id are decoded; every other value is
    skipped unread, so an oversized request costs no more than its bytes
    and its sender still gets an answer it can match.
    """
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(head))
    unpacker.feed(head)
    try:
        for _ in range(min(unpacker.read_map_header(), 8)):
            if unpacker.unpack() != "id":
                unpacker.skip()
                continue
            rid = unpacker.unpack()
            return rid if _valid_id(rid) else None
    except Exception:  # any malformation: no id to answer with
        return None
    return None


def parse_request(
    head: bytes, size: int, frame_count: int, max_size: int
) -> RequestHead:
    """Check a request's envelope ``head`` and return what it asks for.

    ``size`` is the whole request's bytes and ``frame_count`` its frames,
    envelope included.  Raises :class:`RequestRefused` with the error to
    answer, in the order a sender can act on: too large first, then
    malformed, then a version this daemon does not speak.
    """
    if len(head) > MAX_ENVELOPE:
        raise RequestRefused(
            ErrorCode.TOO_LARGE,
            f"request envelope of {len(head)} bytes exceeds the limit of "
            f"{MAX_ENVELOPE} (a key, metadata or list of keys too long)",
            peek_request_id(head),
            f"sent a request envelope of {len(head)} bytes (limit {MAX_ENVELOPE})",
        )
    try:
        envelope = _codec.unpack(head)
    except _codec.DecodeError:
        envelope = None
    request_id = None
    if type(envelope) is dict:
        rid = envelope.get("id")
        kind = type(rid)  # _valid_id inlined: this runs for every request
        if kind is int or (kind is str and len(rid) <= MAX_ID_LENGTH):
            request_id = rid
    if size > max_size:
        raise RequestRefused(
            ErrorCode.TOO_LARGE,
            f"request of {size} bytes exceeds the limit of {max_size}",
            request_id,
            f"sent {size} bytes (limit {max_size})",
        )
    if frame_count > MAX_FRAMES:
        raise RequestRefused(ErrorCode.BAD_MESSAGE, "too many frames", request_id, None)
    if type(envelope) is not dict:
        raise RequestRefused(
            ErrorCode.BAD_MESSAGE,
            "request envelope is not a msgpack map",
            None,
            "sent a malformed request",
        )
    version = envelope.get("v")
    if version != PROTOCOL_VERSION:
        raise RequestRefused(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {version!r} is not supported "
            f"(this daemon speaks {PROTOCOL_VERSION})",
            request_id,
            None,
        )
    op = envelope.get("op")
    args = envelope.get("args", {})
    client = envelope.get("client", "")
    if (
        request_id is None
        or type(op) is not str
        or type(args) is not dict
        or type(client) is not str
        or len(client) > MAX_CLIENT_LENGTH
    ):
        raise RequestRefused(
            ErrorCode.BAD_MESSAGE,
            "request envelope needs 'id' (int or str), 'op' (str), "
            "'args' (map) and 'client' (str)",
            request_id,
            "sent a malformed request envelope",
        )
    return request_id, client, op, args


def build_reply(request_id: Any, result: Any, pack: Pack = _codec.pack) -> bytes:
    """Encode the envelope of a successful reply."""
    return pack({"v": PROTOCOL_VERSION, "id": request_id, "ok": True, "result": result})


def build_error(request_id: Any, code: ErrorCode, message: str) -> bytes:
    """Encode the envelope of an error reply."""
    return _codec.pack(
        {
            "v": PROTOCOL_VERSION,
            "id": request_id,
            "ok": False,
            "error": {"code": int(code), "name": code.name, "message": message},
        }
    )
