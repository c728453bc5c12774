"""``encore keys``: make and show CURVE keys for tcp:// access.

::

    encore keys generate NAME [--dir DIR]   write NAME.key and NAME.key_secret
    encore keys show FILE                   print the public key of a certificate

The daemon's pair goes in its ``[curve] server_secret_key``; each
client's public key (the line ``generate`` prints) goes in the daemon's
``authorized_keys`` file, and the client keeps its ``.key_secret``.
Exit status 0, or 1 with a one-line reason.
"""

from __future__ import annotations

__all__ = ["add_keys_commands", "KEYS_COMMANDS"]

import argparse
import sys
from collections.abc import Callable
from typing import Any, TextIO

from ._keys import generate_keys, read_public_key


def _cmd_keys(args: argparse.Namespace, out: TextIO) -> int:
    try:
        if args.keys_command == "generate":
            public, secret = generate_keys(args.dir, args.name)
            key = read_public_key(public).decode()
            print(f"public key:  {public}", file=out)
            print(f"secret key:  {secret} (mode 0600: keep it private)", file=out)
            print("line for the daemon's authorized_keys file:", file=out)
            print(f"{key} {args.name}", file=out)
        else:
            print(read_public_key(args.file).decode(), file=out)
    except (ValueError, OSError) as exc:
        print(f"encore keys: {exc}", file=sys.stderr)
        return 1
    return 0


def add_keys_commands(commands: Any) -> None:
    """Add ``keys`` to the ``encore`` subcommand parsers."""
    keys = commands.add_parser("keys", help="make and show CURVE keys (tcp access)")
    sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    generate = sub.add_parser("generate", help="write a new key pair")
    generate.add_argument("name", metavar="NAME", help="file name stem of the pair")
    generate.add_argument(
        "--dir", default=".", metavar="DIR", help="where to write (default: here)"
    )
    show = sub.add_parser("show", help="print the public key of a certificate")
    show.add_argument("file", metavar="FILE")


KEYS_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "keys": _cmd_keys
}
