"""``encored``: the encore daemon's command line entry point.

Usage::

    encored [--config FILE] [--runtime-dir DIR] [--log-level LEVEL]
    encored --check-config FILE

Exit status: 0 after a clean shutdown (SIGTERM, SIGINT) or a good
``--check-config``; 78 (``EX_CONFIG``) for an invalid configuration (the
text, or a store path the daemon cannot use: both run the same checks,
``_config_check``); 1 when
the daemon cannot start (another daemon holds the runtime directory, the
directory is unsafe, a socket cannot be bound).
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

import zmq

from ._config import ConfigError
from ._config_check import load_checked_config
from ._logging import configure_logging
from ._notify import notify
from ._publisher import DaemonEventManager
from ._runtime_dir import RuntimeDir, RuntimeDirError
from ._server import Daemon
from ._service import install_service
from .stores.wiring import start_store_service

EX_CONFIG = 78
logger = logging.getLogger("encored")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="encored",
        description="The encore daemon: one event bus and key-value store "
        "service for a user's processes.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML configuration file (default: the embedded default)",
    )
    parser.add_argument(
        "--runtime-dir",
        metavar="DIR",
        help="directory for the "
        "sockets (default: $ENCORE_RUNTIME_DIR, else "
        "$XDG_RUNTIME_DIR/encored, else /tmp/encored-<uid> "
        "when XDG_RUNTIME_DIR is unset)",
    )
    parser.add_argument(
        "--check-config",
        metavar="FILE",
        help="check FILE as the daemon's start does (the text, store paths "
        "and permissions), report every problem and exit: 0, or 78 as the "
        "daemon would",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the daemon (or check a configuration); return the exit status."""
    args = _parser().parse_args(argv)
    configure_logging(getattr(logging, args.log_level))
    if args.check_config is not None:
        try:
            load_checked_config(args.check_config)
        except ConfigError as exc:
            for line in exc.errors:
                print(line, file=sys.stderr)
            print(
                f"{args.check_config}: {len(exc.errors)} problem(s); "
                "encored would refuse to start",
                file=sys.stderr,
            )
            return EX_CONFIG
        print(f"{args.check_config}: configuration is valid")
        return 0
    try:
        config = load_checked_config(args.config)
    except ConfigError as exc:
        for line in exc.errors:
            logger.error("%s", line)
        logger.error(
            "invalid configuration (%d problem(s)); not starting", len(exc.errors)
        )
        return EX_CONFIG
    try:
        runtime_dir = RuntimeDir(args.runtime_dir or config.daemon.runtime_dir)
        runtime_dir.acquire()
    except (RuntimeDirError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    try:
        try:
            # The daemon's own manager class lets it publish clients'
            # events without rebuilding them when no listener here would
            # see them.
            event_manager, operations, stores = start_store_service(
                config, DaemonEventManager()
            )
        except Exception as exc:
            logger.error("%s", exc)
            return 1
        daemon = Daemon(config, runtime_dir, event_manager, operations)
        # Watchdog, SIGHUP reload, tcp with CURVE, status diagnostics.
        service = install_service(daemon, stores, args.config)

        def stop(signum: int, _frame: object) -> None:
            logger.info("received %s, shutting down", signal.Signals(signum).name)
            # Tell systemd at once that the stop has begun, then finish the
            # request in hand and publish what is queued before exiting.
            notify("STOPPING=1")
            daemon.request_stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            daemon.run(on_ready=lambda: notify("READY=1", "STATUS=serving"))
        except zmq.ZMQError as exc:
            logger.error("cannot serve on %s: %s", runtime_dir.path, exc)
            return 1
        finally:
            service.close()
            stores.close()
        logger.info("stopped")
        return 0
    finally:
        runtime_dir.release()


if __name__ == "__main__":
    sys.exit(main())
