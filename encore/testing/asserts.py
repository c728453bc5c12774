"""Assertions that run code in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["assert_python_ok", "run_python"]

#: Seconds a child interpreter may run before it is killed and the
#: assertion fails.
DEFAULT_TIMEOUT = 120.0


def run_python(
    *args: str, timeout: float = DEFAULT_TIMEOUT, **env_vars: str
) -> tuple[int, bytes, bytes]:
    """Run a fresh interpreter with `args`; return (returncode, out, err).

    The child runs ``sys.executable`` with `args`.  Without `env_vars` it
    is started with ``-E`` (ignore ``PYTHON*`` variables such as
    PYTHONPATH) so the parent's settings cannot leak in; with `env_vars`
    the child gets the parent's environment updated with them and no
    ``-E``, so that a variable such as ``PYTHONPATH`` given on purpose
    takes effect.

    Raises
    ------
    AssertionError
        If the child is still running after `timeout` seconds (it is
        killed first).
    """
    cmd = [sys.executable]
    if not env_vars:
        cmd.append("-E")
    cmd.extend(args)
    env = dict(os.environ)
    env.update(env_vars)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"{cmd!r} did not finish within {timeout} s\n"
            f"stdout:\n{_text(exc.stdout)}\nstderr:\n{_text(exc.stderr)}"
        ) from None
    return proc.returncode, proc.stdout, proc.stderr


def assert_python_ok(*args: str, **env_vars: str) -> tuple[int, bytes, bytes]:
    """Run a fresh interpreter with `args`; fail unless it exits with 0.

    Used to test what only a new process shows, such as interpreter
    shutdown.  Keyword arguments become environment variables of the
    child (see `run_python` for how the environment and ``-E`` are
    chosen); the keyword ``__timeout`` (seconds) overrides the default
    time limit.

    Returns
    -------
    (returncode, stdout, stderr)
        The exit status (always 0) and the child's raw output.

    Raises
    ------
    AssertionError
        If the child exits with another status or runs past the time
        limit; the message holds the command and both outputs.
    """
    timeout = float(env_vars.pop("__timeout", DEFAULT_TIMEOUT))
    returncode, out, err = run_python(*args, timeout=timeout, **env_vars)
    if returncode != 0:
        raise AssertionError(
            f"Python exited with status {returncode}\n"
            f"command: {[sys.executable, *args]!r}\n"
            f"stdout:\n{_text(out)}\nstderr:\n{_text(err)}"
        )
    return returncode, out, err


def _text(data: bytes | None) -> str:
    return "" if not data else data.decode("utf-8", "replace")
