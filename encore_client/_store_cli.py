"""The store commands of the ``encore`` command line.

Commands::

    encore ls STORE [GLOB]                 keys (matching GLOB), one a line
    encore get STORE KEY [-o FILE]         data to FILE (or standard output;
                                           binary data only with -o - when
                                           that is a terminal)
    encore put STORE KEY FILE [--meta K=V ...]
                                           data from FILE ('-': standard input);
                                           with --meta the metadata is replaced
                                           by the given names, without it kept
    encore rm STORE KEY [KEY ...]          delete keys
    encore query STORE [K=V ...] [--keys]  keys and metadata matching all K=V
    encore meta STORE KEY                  metadata as JSON

Values in ``K=V`` are JSON when they parse as JSON, else text.  Transfers
longer than a few megabytes draw a progress bar on standard error when it
is a terminal (``--progress`` forces it, ``--no-progress`` hides it).
Exit status 1 with a one-line message for a missing key or store, a
daemon that does not answer, a refused write or an unreadable file.
"""

from __future__ import annotations

__all__ = ["add_store_commands", "STORE_COMMANDS"]

import argparse
import io
import json
import os
import select
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from encore.storage.abstract_store import StoreError
from encore.terminal.progress_display import format_size

from ._remote_store import RemoteStore
from .wire.errors import DaemonUnavailableError, EncoreError

#: Transfers at least this long get a progress bar.
PROGRESS_MIN = 4 * 1024 * 1024
_COPY = 1024 * 1024


def _assignment(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


class ProgressBar:
    """A one-line transfer bar on a terminal stream (a no-op when hidden)."""

    def __init__(
        self, stream: TextIO, total: int | None, label: str, show: bool
    ) -> None:
        self.stream = stream
        self.total = total
        self.label = label
        self.show = show
        self.start = time.monotonic()
        self.last = 0.0
        self.done = 0

    def update(self, done: int) -> None:
        """Redraw for ``done`` bytes (at most 10 times a second)."""
        self.done = done
        now = time.monotonic()
        if not self.show or now - self.last < 0.1:
            return
        self.last = now
        self._draw(now)

    def _draw(self, now: float) -> None:
        rate = format_size(int(self.done / max(now - self.start, 1e-6))) + "/s"
        done = format_size(self.done)
        if self.total:
            part = min(self.done, self.total)
            filled = part * 30 // self.total
            bar = "#" * filled + "-" * (30 - filled)
            # Rounded down in integers: 100% only once everything is there.
            percent = part * 100 // self.total
            text = (
                f"\r{self.label} [{bar}] {percent:3d}% "
                f"{done}/{format_size(self.total)} {rate}"
            )
        else:
            # Unknown length (put from a pipe): the bytes so far, as a size.
            text = f"\r{self.label} {done} {rate}"
        self.stream.write(text)
        self.stream.flush()

    def abort(self) -> None:
        """End a drawn line, so that a message after it starts on its own."""
        if self.show and self.last:
            self.stream.write("\n")
            self.stream.flush()

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self.show:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()


class _StdinReader(io.RawIOBase):
    """Standard input for ``put -``, read so that Ctrl-C stops a wait for more.

    A signal is handled by whichever thread the kernel picks; when that is
    one of ZeroMQ's, a plain ``read`` of an idle pipe in the main thread is
    never interrupted and Ctrl-C would wait for the writer.  Waiting in
    short ``select`` slices lets the main thread see the signal at once.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Read what is there (at most ``len(buffer)`` bytes); 0 at the end."""
        while not select.select([self._fd], [], [], 0.1)[0]:
            pass
        data = os.read(self._fd, len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _looks_binary(sample: bytes) -> bool:
    """Whether data is not text: a NUL byte, or not UTF-8 (the test curl uses
    is the NUL; UTF-8 catches images and archives that happen to have none).
    """
    sample = sample[:8192]
    if b"\0" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A character cut by the end of the sample is still text.
        return not (exc.reason == "unexpected end of data" and exc.end == len(sample))
    return False


def _want_progress(args: argparse.Namespace, size: int | None) -> bool:
    if args.progress is not None:
        return bool(args.progress)
    return (size is None or size >= PROGRESS_MIN) and sys.stderr.isatty()


def _store(args: argparse.Namespace) -> RemoteStore:
    return RemoteStore(args.store, args.runtime_dir, timeout=args.timeout)


def _no_key(command: str, key: object, store: str) -> None:
    print(f"encore {command}: no key {key!r} in store {store!r}", file=sys.stderr)


def _run(
    command: str, body: Callable[[RemoteStore], int], args: argparse.Namespace
) -> int:
    """Run a store command, turning every expected failure into one line."""
    store = _store(args)
    try:
        return body(store)
    except DaemonUnavailableError:
        print(
            f"encore {command}: encored did not answer within {args.timeout:g} s "
            "(is it running? `encore status` checks; a long call may need a "
            "larger --timeout)",
            file=sys.stderr,
        )
    except KeyError as exc:
        _no_key(command, exc.args[0] if exc.args else "?", args.store)
    except (StoreError, EncoreError, ValueError, TypeError, NotImplementedError) as exc:
        print(f"encore {command}: {exc}", file=sys.stderr)
    except BrokenPipeError:
        raise  # the reader of our output left: encore_client.cli ends quietly
    except OSError as exc:
        print(f"encore {command}: {exc}", file=sys.stderr)
    finally:
        store.disconnect()
    return 1


# -- commands ------------------------------------------------------------------


def _cmd_ls(args: argparse.Namespace, out: TextIO) -> int:
    def body(store: RemoteStore) -> int:
        keys = store.glob(args.glob) if args.glob else store.query_keys()
        for key in sorted(keys):
            out.write(f"{key}\n")
        return 0

    return _run("ls", body, args)


def _cmd_get(args: argparse.Namespace, out: TextIO) -> int:
    def body(store: RemoteStore) -> int:
        value = store.get(args.key)
        bar = ProgressBar(
            sys.stderr, value.size, args.key, _want_progress(args, value.size)
        )
        target: Any
        part = None
        if args.output and args.output != "-":
            part = f"{args.output}.part-{os.getpid()}"
            try:
                target = open(part, "wb")
            except OSError as exc:  # name the file asked for, not our temp
                raise OSError(exc.errno, exc.strerror, args.output) from None
        else:
            target = getattr(out, "buffer", out)
        to_terminal = not args.output and _is_terminal(out)
        try:
            done = 0
            with value.data as stream:
                chunk = stream.read(_COPY)
                if to_terminal and _looks_binary(chunk):
                    # As curl does: binary bytes can garble the terminal.
                    print(
                        f"encore get: {args.key!r} holds binary data; not "
                        "writing it to the terminal (use -o FILE, or -o - "
                        "to write it here anyway)",
                        file=sys.stderr,
                    )
                    return 1
                while chunk:
                    target.write(chunk)
                    done += len(chunk)
                    bar.update(done)
                    chunk = stream.read(_COPY)
            bar.finish()
            if part is not None:
                target.close()
                os.replace(part, args.output)
                part = None
            else:
                target.flush()
        except KeyboardInterrupt:
            bar.abort()
            raise
        finally:
            if part is not None:
                target.close()
                os.unlink(part)
        return 0

    return _run("get", body, args)


def _cmd_put(args: argparse.Namespace, out: TextIO) -> int:
    def body(store: RemoteStore) -> int:
        if args.file == "-":
            source: Any = _StdinReader(sys.stdin.fileno())
            size = None
        else:
            source = open(args.file, "rb")
            size = os.fstat(source.fileno()).st_size
        bar = ProgressBar(sys.stderr, size, args.key, _want_progress(args, size))
        try:
            if args.meta:
                metadata = dict(args.meta)
                store.set(args.key, (source, metadata), progress=bar.update)
            else:
                store.set_data(args.key, source, progress=bar.update)
            bar.finish()
        except KeyboardInterrupt:
            bar.abort()
            raise
        finally:
            source.close()  # a _StdinReader leaves the descriptor open
        return 0

    return _run("put", body, args)


def _cmd_rm(args: argparse.Namespace, out: TextIO) -> int:
    def body(store: RemoteStore) -> int:
        # As rm(1): a missing key is reported (unless --force) and the
        # other keys are still deleted.
        status = 0
        for key in args.keys:
            try:
                store.delete(key)
            except KeyError:
                if not args.force:
                    _no_key("rm", key, args.store)
                    status = 1
        return status

    return _run("rm", body, args)


def _cmd_query(args: argparse.Namespace, out: TextIO) -> int:
    def body(store: RemoteStore) -> int:
        criteria = dict(args.criteria)
        if args.keys:
            for key in sorted(store.query_keys(**criteria)):
                out.write(f"{key}\n")
        else:
            for key, metadata in sorted(store.query(**criteria)):
                out.write(f"{key}\t{json.dumps(metadata, sort_keys=True)}\n")
        return 0

    return _run("query", body, args)


def _cmd_meta(args: argparse.Namespace, out: TextIO) -> int:
    def body(store: RemoteStore) -> int:
        out.write(json.dumps(store.get_metadata(args.key), indent=2, sort_keys=True))
        out.write("\n")
        return 0

    return _run("meta", body, args)


#: Command name -> handler ``(args, out) -> exit status``.
STORE_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "ls": _cmd_ls,
    "get": _cmd_get,
    "put": _cmd_put,
    "rm": _cmd_rm,
    "query": _cmd_query,
    "meta": _cmd_meta,
}


def _progress_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="always draw the progress bar",
    )
    group.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="never draw the progress bar",
    )


def add_store_commands(commands: Any) -> None:
    """Add the store commands to the ``encore`` subcommand parsers."""
    ls = commands.add_parser("ls", help="list the keys of a store")
    ls.add_argument("store", metavar="STORE")
    ls.add_argument("glob", metavar="GLOB", nargs="?", help="only keys matching it")

    get = commands.add_parser("get", help="write a key's data to a file or stdout")
    get.add_argument("store", metavar="STORE")
    get.add_argument("key", metavar="KEY")
    get.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="file to write (default: stdout, which refuses binary data when "
        "it is a terminal; '-': stdout in any case)",
    )
    _progress_options(get)

    put = commands.add_parser("put", help="store a file's bytes at a key")
    put.add_argument("store", metavar="STORE")
    put.add_argument("key", metavar="KEY")
    put.add_argument("file", metavar="FILE", help="file to read ('-': stdin)")
    put.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="K=V",
        type=_assignment,
        help="metadata (replaces the key's metadata); repeatable",
    )
    _progress_options(put)

    rm = commands.add_parser("rm", help="delete keys")
    rm.add_argument("store", metavar="STORE")
    rm.add_argument("keys", metavar="KEY", nargs="+")
    rm.add_argument(
        "-f", "--force", action="store_true", help="ignore keys that do not exist"
    )

    query = commands.add_parser("query", help="keys whose metadata matches")
    query.add_argument("store", metavar="STORE")
    query.add_argument(
        "criteria", metavar="K=V", nargs="*", default=[], type=_assignment
    )
    query.add_argument("--keys", action="store_true", help="print only the keys")

    meta = commands.add_parser("meta", help="print a key's metadata as JSON")
    meta.add_argument("store", metavar="STORE")
    meta.add_argument("key", metavar="KEY")
