"""The service part of ``encore status``: rows an operator can act on.

The daemon's ``status`` reply carries a ``service`` map (memory, error
counts with the latest message of each kind, replay misses, how the
previous daemon ended, watchdog, reloads, tcp endpoints, postgres
stores' connections); this module
turns it into the labelled rows the command prints under the bus rows.
"""

from __future__ import annotations

__all__ = ["service_rows"]

from typing import Any


def _mib(value: Any) -> str:
    return f"{value / 2**20:.1f} MiB" if isinstance(value, int | float) else "?"


def _errors(errors: dict[str, Any]) -> list[tuple[str, str]]:
    if not errors:
        return [("error replies", "none")]
    rows = []
    for index, (code, entry) in enumerate(
        sorted(errors.items(), key=lambda item: -item[1].get("count", 0))
    ):
        last = entry.get("last") or ""
        ago = entry.get("ago")
        when = f", {ago:g} s ago" if isinstance(ago, int | float) else ""
        rows.append(
            (
                "error replies" if index == 0 else "",
                f"{code} x{entry.get('count', 0)} (last{when}: {last})",
            )
        )
    return rows


def service_rows(status: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows ``(label, text)`` for the ``service`` part of a status reply.

    An old daemon without that part gives no rows.
    """
    service = status.get("service")
    if not isinstance(service, dict):
        return []
    rows: list[tuple[str, str]] = []
    memory = service.get("memory") or {}
    rows.append(
        (
            "memory",
            f"{_mib(memory.get('rss'))} resident (peak {_mib(memory.get('rss_peak'))}),"
            f" {service.get('threads', '?')} threads",
        )
    )
    previous = service.get("previous_exit")
    if previous is None:
        text = "no record (first start here)"
    elif previous.get("clean"):
        text = f"clean (pid {previous.get('pid')})"
    else:
        text = (
            f"NOT CLEAN: pid {previous.get('pid')} was killed or crashed "
            "(see the journal)"
        )
    rows.append(("previous exit", text))
    watchdog = service.get("watchdog")
    rows.append(
        (
            "watchdog",
            "off (not run by systemd with WatchdogSec=)"
            if not watchdog
            else f"ping every {watchdog['interval']:g} s, {watchdog['pings']} sent",
        )
    )
    replays = service.get("replays") or {}
    gone = replays.get("gone", 0)
    text = (
        f"{replays.get('requests', 0)} requests, {replays.get('events', 0)} "
        f"events replayed, {gone} asked for but gone"
    )
    if gone:
        text += " (a subscriber fell further behind than the replay buffer)"
    rows.append(("replays", text))
    rows.extend(_errors(service.get("errors") or {}))
    transfers = service.get("transfers")
    if transfers:
        text = (
            f"{transfers['downloads']} downloads, {transfers['uploads']} "
            f"uploads open, {transfers['sessions']} store sessions"
        )
        if "finished_downloads" in transfers:  # older daemons do not say
            text += (
                f"; {transfers['finished_downloads']} finished downloads keep "
                f"{transfers['finished_bytes'] / 2**20:.1f} MiB for repeated reads"
            )
        rows.append(("transfers", text))
    reload = service.get("reload")
    if reload:
        text = f"{reload['reloads']} applied, {reload['failures']} rejected"
        if reload.get("last_error"):
            text += " (last rejected: " + "; ".join(reload["last_error"])[:300] + ")"
        rows.append(("reloads", text))
    for name, entry in sorted((service.get("postgres") or {}).items()):
        state = entry.get("state", "?")
        text = str(state)
        if state == "reconnecting":
            text += " (PostgreSQL lost; changes meanwhile are not heard)"
        lost = entry.get("reconnections", 0)
        if lost:
            text += f", connection lost {lost} time(s) so far"
        rows.append((f"store {name}", f"postgres {text}"))
    listen = service.get("listen")
    if listen:
        rows.append(
            (
                "tcp (CURVE)",
                f"requests {listen.get('requests')}, events {listen.get('events')}, "
                f"{listen.get('authorized_keys', 0)} authorised client keys, "
                f"{listen.get('refused', 0)} refused handshakes",
            )
        )
    return rows
