"""``encore``: the command line of the encore daemon.

Commands::

    encore status              is the daemon up? (exit 0 if it answers)
    encore events              follow the bus, one line per event
    encore progress            live view of every operation in progress
    encore emit CLASS k=v ...  emit an event (CLASS: a dotted path, mod.Event)
    encore ls|get|put|rm|query|meta STORE ...
                               store commands (see encore_client._store_cli)
    encore keys generate|show  CURVE keys for tcp:// access (_keys_cli)

Global options: ``--runtime-dir DIR`` (default: the usual rule,
``ENCORE_RUNTIME_DIR`` first), ``--remote FILE`` (a daemon over tcp://
with CURVE, see ``encore_client._keys.load_remote``) and ``--timeout
SECONDS``.

Exit status: 0 on success (and when ``events``/``progress`` are stopped with
Ctrl-C), 1 when the daemon does not answer or refuses the request, 2 for a
usage error, 130 when Ctrl-C stops any other command, 141 when the reader of
the output went away (``| head``), as for tools that SIGPIPE ends.
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from encore.events.abstract_event_manager import BaseEvent

from . import _codec
from ._bus_bridge import BusBridge
from ._events import bus_info
from ._keys import load_remote
from ._keys_cli import KEYS_COMMANDS, add_keys_commands
from ._paths import endpoints, no_daemon_reason
from ._status_view import service_rows
from ._store_cli import STORE_COMMANDS, add_store_commands
from ._transport import ZmqTransport
from .wire.errors import DaemonUnavailableError, EncoreError
from .wire.operations import OP_EMIT, OP_STATUS

_KEY_RE = re.compile(r"^[A-Za-z]\w*(?:\.[A-Za-z]\w*)*$")


def _parse_assignment(text: str, allow_dotted: bool = False) -> tuple[str, Any]:
    """``k=v`` -> ``(k, v)``; ``v`` is JSON when it parses as JSON, else text."""
    key, sep, raw = text.partition("=")
    if not sep or not (
        _KEY_RE.match(key) if allow_dotted else re.match(r"^[A-Za-z]\w*$", key)
    ):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    text = " ".join(f"{n}{unit}" for n, unit in parts if n)
    return text or "0s"


# -- status -----------------------------------------------------------------------


def _cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    with ZmqTransport(args.runtime_dir, timeout=args.timeout) as transport:
        try:
            status = transport.request(OP_STATUS).result
        except DaemonUnavailableError:
            print(
                f"encored is not answering on {transport.endpoints.runtime_dir} "
                f"(no reply within {args.timeout:g} s)",
                file=sys.stderr,
            )
            return 1
        except EncoreError as exc:
            print(f"encored answered with an error: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True), file=out)
        return 0
    stores = ", ".join(f"{s['name']} ({s['type']})" for s in status["stores"]) or "none"
    print("encored is running", file=out)
    rows = [
        ("instance", status["instance"]),
        ("pid", status["pid"]),
        ("uptime", _duration(status["uptime"])),
        ("runtime dir", status["runtime_dir"]),
        ("config", status["config"]),
        ("stores", stores),
        ("subscribers", status["subscribers"]),
        (
            "events published",
            f"{status['events_published']} from {status.get('epochs', 0)} "
            f"emitters (replay buffer: last {status['event_buffer']})",
        ),
        ("", f"{status.get('malformed_events', 0)} malformed events seen"),
    ]
    rows += service_rows(status)  # watchdog, errors, reloads... (issue 8)
    for label, value in rows:
        print(f"  {label + ':' if label else '':<18}{value}", file=out)
    return 0


# -- events -----------------------------------------------------------------------


def _format_value(value: Any) -> str:
    text = repr(value) if not hasattr(value, "type_name") else str(value)
    return text if len(text) <= 200 else text[:197] + "..."


def format_event(event: BaseEvent) -> str:
    """One readable line for an event (as ``encore events`` prints it)."""
    info = bus_info(event)
    names = _codec.event_class_names(event)
    stamp = info.time if info is not None and info.time else time.time()
    when = datetime.fromtimestamp(stamp).strftime("%H:%M:%S.%f")[:-3]
    seq = f"#{info.seq}" if info is not None else "#-"
    attrs = " ".join(
        f"{key}={_format_value(value)}"
        for key, value in vars(event).items()
        if not key.startswith("_") and key != "source"
    )
    parts = [when, seq, names[0]]
    if attrs:
        parts.append(attrs)
    source = getattr(event, "source", None)
    if source is not None:
        parts.append(f"source={_format_value(source)}")
    if info is not None and info.origin:
        parts.append(f"from={info.origin}")
    if info is not None and info.replayed:
        parts.append("(replayed)")
    return " ".join(parts)


def _matches_class(event: BaseEvent, wanted: str) -> bool:
    for name in _codec.event_class_names(event):
        if name == wanted or name.rpartition(".")[2] == wanted:
            return True
    return False


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """Make SIGINT and SIGTERM end a following command cleanly.

    Python leaves SIGINT ignored when the shell started us in the background
    (``encore events &``); a command whose only way to stop is a signal
    takes it back, and treats SIGTERM the same way so it closes its bridge
    and draws its last frame instead of dying mid-line.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)


def _cmd_events(args: argparse.Namespace, out: TextIO) -> int:
    from encore.events.event_manager import EventManager

    manager = EventManager()
    done = threading.Event()
    printed = 0

    def show(event: BaseEvent) -> None:
        nonlocal printed
        if args.class_name and not _matches_class(event, args.class_name):
            return
        try:
            print(format_event(event), file=out, flush=True)
        except BrokenPipeError:
            done.set()
            return
        printed += 1
        if args.count and printed >= args.count:
            done.set()

    manager.connect(BaseEvent, show, filter=dict(args.filter) or None)
    try:
        bridge = BusBridge(
            manager, args.runtime_dir, timeout=args.timeout, strict=True
        ).start()
    except DaemonUnavailableError as exc:
        print(f"encore events: {exc}", file=sys.stderr)
        return 1
    try:
        _stop_on_signals()
        if args.ready_file:
            open(args.ready_file, "w").close()
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        bridge.close(flush_timeout=0)
    return 0


# -- progress ---------------------------------------------------------------------


def _cmd_progress(args: argparse.Namespace, out: TextIO) -> int:
    from encore.events.event_manager import EventManager

    try:
        from encore.terminal.progress_display import ProgressDisplay
    except ImportError as exc:  # pragma: no cover - a broken install
        print(f"encore progress: no progress display: {exc}", file=sys.stderr)
        return 1

    def operation_key(event: Any) -> Any:
        # Operation ids are chosen per process: two processes may both run
        # operation 1, so the emitting bridge is part of the key.
        info = bus_info(event)
        op_id = getattr(event, "operation_id", None)
        try:
            hash(op_id)
        except TypeError:
            op_id = repr(op_id)
        return (info.origin if info is not None else None, op_id)

    manager = EventManager()
    display = ProgressDisplay(event_manager=manager, stream=out, key=operation_key)
    try:
        bridge = BusBridge(
            manager, args.runtime_dir, timeout=args.timeout, strict=True
        ).start()
    except DaemonUnavailableError as exc:
        display.close()
        print(f"encore progress: {exc}", file=sys.stderr)
        return 1
    try:
        _stop_on_signals()
        if args.ready_file:
            open(args.ready_file, "w").close()
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        bridge.close(flush_timeout=0)
        display.close()
    return 0


# -- emit -------------------------------------------------------------------------


def _known_event_classes() -> dict[str, type]:
    """Event classes this command knows (the ones encore defines)."""
    import encore.events.api  # noqa: F401  (defines the progress events)

    try:
        import encore.storage.events  # noqa: F401
    except ImportError:
        pass
    registry = _codec.ClassRegistry()
    registry._walk()
    return dict(registry._known)


def _lookup(name: str, known: dict[str, type]) -> type | None:
    if name in known:
        return known[name]
    matches = [cls for full, cls in known.items() if full.rpartition(".")[2] == name]
    return matches[0] if len(matches) == 1 else None


def _cmd_emit(args: argparse.Namespace, out: TextIO) -> int:
    known = _known_event_classes()
    cls = _lookup(args.class_name, known)
    if cls is None:
        if not _codec._NAME_RE.match(args.class_name):
            print(f"encore emit: bad class name {args.class_name!r}", file=sys.stderr)
            return 2
        bases: list[str] = []
        for base in args.base:
            base_cls = _lookup(base, known)
            if base_cls is not None:
                bases.extend(_codec.event_class_names(base_cls))
            else:
                bases.append(base)
        bases.append(_codec.full_name(BaseEvent))
        cls = _codec.ClassRegistry().resolve(
            args.class_name, list(dict.fromkeys(bases))
        )
    event = cls.__new__(cls)
    BaseEvent.__init__(event, source=None)
    event.__dict__.update(dict(args.attributes))
    name, wire_bases = _codec.ClassRegistry().wire_names(cls)
    header = _codec.pack(
        {"class": name, "bases": wire_bases, "source": None, "time": time.time()}
    )
    with ZmqTransport(args.runtime_dir, timeout=args.timeout) as transport:
        try:
            reply = transport.request(
                OP_EMIT,
                frames=[_codec.pack_events([header, _codec.encode_attributes(event)])],
            )
        except DaemonUnavailableError as exc:
            print(f"encore emit: {exc}", file=sys.stderr)
            return 1
        except EncoreError as exc:
            print(f"encore emit: the daemon refused the event: {exc}", file=sys.stderr)
            return 1
    print(f"emitted {name} as #{reply.result['seqs'][0]}", file=out)
    return 0


# -- main -------------------------------------------------------------------------


class _IntermixedParser(argparse.ArgumentParser):
    """A command's parser that takes its options anywhere among its arguments.

    ``encore query STORE --keys author=me`` as well as ``encore query
    STORE author=me --keys``: plain argparse stops matching positionals at
    the first option.  Parsers with a nested command (``keys``) keep the
    plain rule, which intermixed parsing cannot handle.
    """

    _parsing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse with options anywhere (see the class)."""
        nested = any(
            action.nargs in (argparse.PARSER, argparse.REMAINDER)
            for action in self._get_positional_actions()
        )
        if nested or self._parsing:
            # Intermixed parsing calls this method again (Python < 3.13).
            return super().parse_known_args(args, namespace)
        self._parsing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing = False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="encore", description="Talk to the encore daemon (encored)."
    )
    parser.add_argument(
        "--runtime-dir",
        metavar="DIR",
        help="the daemon's runtime directory (default: $ENCORE_RUNTIME_DIR, "
        "else $XDG_RUNTIME_DIR/encored, else /tmp/encored-<uid> "
        "when XDG_RUNTIME_DIR is unset)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds to wait for the daemon (default 5)",
    )
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        parser_class=_IntermixedParser,
    )

    status = commands.add_parser("status", help="is the daemon up? (exit 0 if so)")
    status.add_argument("--json", action="store_true", help="print JSON")

    events = commands.add_parser("events", help="follow the bus, one line per event")
    events.add_argument(
        "--class",
        dest="class_name",
        metavar="NAME",
        help="only events of this class or of its subclasses (short or full name)",
    )
    events.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="K=V",
        type=lambda t: _parse_assignment(t, allow_dotted=True),
        help="only events whose attribute K equals V (JSON, else text); repeatable",
    )
    events.add_argument(
        "--count", type=int, default=0, metavar="N", help="exit after N events"
    )
    events.add_argument("--ready-file", help=argparse.SUPPRESS)

    progress = commands.add_parser(
        "progress", help="live view of every operation in progress on the bus"
    )
    progress.add_argument("--ready-file", help=argparse.SUPPRESS)

    emit = commands.add_parser(
        "emit",
        help="emit an event on the bus",
        description="Emit one event on the bus.  Event classes are named by "
        "their full dotted path, module and class, as the listening program "
        "defines them: a listener connected to FileEvent of module myevents "
        "receives `encore emit myevents.FileEvent` (or a class with --base "
        "myevents.FileEvent), not `--base FileEvent`.  A bare name is enough "
        "only for a class encore itself defines (ProgressStartEvent).",
    )
    emit.add_argument(
        "class_name",
        metavar="CLASS",
        help="the event's class: a dotted path (myevents.FileEvent), or the "
        "bare name of a class encore defines",
    )
    emit.add_argument(
        "attributes",
        nargs="*",
        default=[],  # without it argparse lists K=V as required
        metavar="K=V",
        type=_parse_assignment,
        help="attributes of the event (V is JSON when it parses, else text)",
    )
    emit.add_argument(
        "--base",
        action="append",
        default=[],
        metavar="CLASS",
        help="a base class, by dotted path (myevents.FileEvent), for a class "
        "this command does not know; listeners on the base receive the event; "
        "repeatable",
    )
    add_store_commands(commands)
    add_keys_commands(commands)
    parser.add_argument(
        "--remote",
        metavar="FILE",
        help="reach a daemon over tcp:// with CURVE, as FILE says (requests, "
        "events, server_key, client_key)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``encore`` command; return its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler = {
        "status": _cmd_status,
        "events": _cmd_events,
        "progress": _cmd_progress,
        "emit": _cmd_emit,
        **STORE_COMMANDS,
        **KEYS_COMMANDS,
    }[args.command]
    try:
        if args.remote:
            args.runtime_dir = load_remote(args.remote)
        if args.command not in KEYS_COMMANDS:
            # Say at once that no daemon is there, rather than after the
            # whole timeout (scripts poll `encore status` to wait for one).
            where = endpoints(args.runtime_dir)
            reason = no_daemon_reason(where)
            if reason is not None:
                print(
                    f"encore {args.command}: encored is not running on "
                    f"{where.runtime_dir}: {reason}",
                    file=sys.stderr,
                )
                return 1
        status = handler(args, sys.stdout)
        sys.stdout.flush()  # here, where a closed pipe is still caught
        return status
    except ValueError as exc:  # e.g. a runtime directory too long for ipc
        print(f"encore {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C in a transfer: one line, and the status of a command that
        # SIGINT ended (128 + 2), as shells report it.  What was half done
        # is undone on the way here (a get's partial file is removed, a
        # put's unfinished upload never becomes the key's value).
        print(f"encore {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # `encore ls S | head`: end quietly.  Whatever is still buffered
        # goes to /dev/null, or the interpreter's last flush fails again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass  # not a real stdout (called in-process)
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
