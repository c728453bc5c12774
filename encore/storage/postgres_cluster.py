"""A private, throw-away PostgreSQL cluster for tests and benchmarks.

``PostgresCluster`` runs ``initdb`` into a temporary directory, starts the
server with ``pg_ctl`` listening only on a unix socket in that directory
(no TCP port), and stops it by the pid in ``postmaster.pid``, so that it
never touches a server it did not start. When the current user is root
the server binaries run as the ``postgres`` system user (PostgreSQL
refuses to run as root), through ``runuser``.

Only the standard library is used here; the store itself needs psycopg.

Example::

    with PostgresCluster() as cluster:
        store = PostgresStore(cluster.dsn)
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

__all__ = ["PostgresCluster", "find_pg_bin", "PostgresUnavailable"]

#: Where Debian and the upstream packages put the server binaries.
_BIN_GLOBS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/local/pgsql/bin",
    "/usr/local/bin",
    "/usr/bin",
)


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries (initdb, pg_ctl) are not installed."""


def find_pg_bin() -> str | None:
    """Return a directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    ``$PG_BIN`` wins when set; then the newest Debian version directory,
    then the usual prefixes. ``None`` when none has all three.
    """
    candidates = []
    if os.environ.get("PG_BIN"):
        candidates.append(os.environ["PG_BIN"])
    for pattern in _BIN_GLOBS:
        candidates.extend(sorted(glob.glob(pattern), reverse=True))
    for directory in candidates:
        if all(
            os.access(os.path.join(directory, name), os.X_OK)
            for name in ("initdb", "pg_ctl", "postgres")
        ):
            return directory
    return None


class PostgresCluster:
    """A private PostgreSQL server on a unix socket in a temporary directory.

    Parameters
    ----------
    settings : dict, optional
        Extra ``postgresql.conf`` settings (name -> value as text).
    bin_dir : str, optional
        Directory of the server binaries (default: ``find_pg_bin()``).

    Attributes
    ----------
    dsn : str
        A libpq connection string for the ``postgres`` database as the
        ``postgres`` superuser, over the unix socket.
    socket_dir, data_dir : str
        Where the socket and the data live.

    Raises
    ------
    PostgresUnavailable
        From ``start`` when the binaries are not installed.
    """

    def __init__(
        self, settings: dict[str, str] | None = None, bin_dir: str | None = None
    ) -> None:
        self.settings = dict(settings or {})
        self.bin_dir = bin_dir
        self.base: str | None = None
        self.data_dir = ""
        self.socket_dir = ""
        self.port = 5432
        self.pid: int | None = None
        self._as_postgres = os.geteuid() == 0

    # -- helpers -----------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 120.0) -> None:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}): "
                f"{result.stdout}{result.stderr}"
            )

    @property
    def dsn(self) -> str:
        """A connection string for the cluster's ``postgres`` database."""
        return f"host={self.socket_dir} port={self.port} dbname=postgres user=postgres"

    def read_pid(self) -> int | None:
        """The postmaster pid from ``postmaster.pid``, ``None`` if not running."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as handle:
                return int(handle.readline().strip())
        except (OSError, ValueError):
            return None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> PostgresCluster:
        """Create the cluster and start the server; return ``self``."""
        if self.bin_dir is None:
            self.bin_dir = find_pg_bin()
        if self.bin_dir is None:
            raise PostgresUnavailable(
                "PostgreSQL server binaries (initdb, pg_ctl) not found; install "
                "postgresql-15 or set PG_BIN"
            )
        # Short path: a unix socket path must fit in 107 bytes.
        self.base = tempfile.mkdtemp(prefix="encpg", dir="/tmp")
        os.chmod(self.base, 0o700)
        self.data_dir = os.path.join(self.base, "data")
        self.socket_dir = self.base
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        try:
            self._run(
                os.path.join(self.bin_dir, "initdb"),
                "-D",
                self.data_dir,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            )
            settings = {
                "listen_addresses": "''",
                "unix_socket_directories": f"'{self.socket_dir}'",
                "port": str(self.port),
                "max_connections": "60",
                "shared_buffers": "'64MB'",
                "logging_collector": "off",
            }
            settings.update(self.settings)
            with open(os.path.join(self.data_dir, "postgresql.conf"), "a") as conf:
                for name, value in settings.items():
                    conf.write(f"{name} = {value}\n")
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_server(self) -> None:
        self._run(
            os.path.join(self.bin_dir, "pg_ctl"),
            "-D",
            self.data_dir,
            "-l",
            os.path.join(self.base, "server.log"),
            "-w",
            "-t",
            "120",
            "start",
        )
        self.pid = self.read_pid()

    def restart(self) -> None:
        """Restart the server (``pg_ctl restart -m fast``): clients are cut off."""
        self._run(
            os.path.join(self.bin_dir, "pg_ctl"),
            "-D",
            self.data_dir,
            "-l",
            os.path.join(self.base, "server.log"),
            "-w",
            "-t",
            "120",
            "-m",
            "fast",
            "restart",
        )
        self.pid = self.read_pid()

    def stop(self) -> None:
        """Stop the server by its pid and remove every file of the cluster."""
        pid = self.read_pid() if self.data_dir else None
        if pid is not None:
            try:
                # SIGINT is PostgreSQL's "fast shutdown": no waiting on clients.
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pid = None
        if pid is not None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.pid = None
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers signal 0; the server is not our child
    # (pg_ctl daemonizes it), so this is the whole check.
    return True
