"""Describe a moment relative to now: ``"3 days, 2 hours ago"``.

`human_date` gives the two most significant units of the difference
between a datetime and now (or a given reference), with months counted as
30 days and years as 365 days: at that precision calendar details do not
matter.  The second unit is the next smaller one and is left out when it
is zero, so the text never claims more precision than it shows
(``"1 year ago"`` rather than ``"1 year, 5 days ago"``).

The camel-case functions keep the names the module had in earlier
encore releases.
"""

from __future__ import annotations

import datetime as _dt

__all__ = [
    "convertToHumanReadable",
    "human_date",
    "human_delta",
    "makeEpochTime",
    "makeFancyDatetime",
]

_UNITS = (
    ("year", 365 * 86400),
    ("month", 30 * 86400),
    ("day", 86400),
    ("hour", 3600),
    ("minute", 60),
    ("second", 1),
)


def human_delta(delta: _dt.timedelta | float, units: int = 2) -> str:
    """Describe a duration with its `units` most significant units.

    ``human_delta(timedelta(days=3, hours=2, minutes=5))`` is
    ``"3 days, 2 hours"``.  The sign is ignored; durations under one second
    are ``"0 seconds"``.  Smaller units are cut off, not rounded.

    Raises
    ------
    ValueError
        If `units` is less than 1.
    TypeError
        If `delta` is neither a timedelta nor a number of seconds.
    """
    if units < 1:
        raise ValueError(f"units must be at least 1, not {units!r}")
    if isinstance(delta, _dt.timedelta):
        seconds = abs(delta.total_seconds())
    elif isinstance(delta, (int, float)) and not isinstance(delta, bool):
        seconds = abs(float(delta))
    else:
        raise TypeError(f"expected a timedelta or seconds, not {delta!r}")
    remaining = int(seconds)
    parts: list[str] = []
    for index, (name, size) in enumerate(_UNITS):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} {name}{'' if count == 1 else 's'}")
            for next_name, next_size in _UNITS[index + 1 : index + units]:
                count, remaining = divmod(remaining, next_size)
                if not count:
                    break
                parts.append(f"{count} {next_name}{'' if count == 1 else 's'}")
            break
    return ", ".join(parts) if parts else "0 seconds"


def human_date(
    when: _dt.datetime | _dt.date,
    now: _dt.datetime | None = None,
    units: int = 2,
) -> str:
    """Describe `when` relative to `now`: ``"3 days, 2 hours ago"``.

    Parameters
    ----------
    when : datetime or date
        The moment to describe; a date means its midnight.
    now : datetime, optional
        The reference; defaults to the current time, in `when`'s time zone
        when `when` is aware.
    units : int
        How many units to show at most (default 2).

    Returns
    -------
    str
        ``"<duration> ago"`` for the past, ``"in <duration>"`` for the
        future, ``"just now"`` within a second of `now`.

    Raises
    ------
    TypeError
        If `when` is not a date or datetime, or if one of `when` and `now`
        has a time zone and the other does not (they cannot be compared).
    ValueError
        If `units` is less than 1.
    """
    if not isinstance(when, _dt.datetime):
        if not isinstance(when, _dt.date):
            raise TypeError(f"expected a datetime or date, not {when!r}")
        when = _dt.datetime.combine(when, _dt.time())
    if now is None:
        now = _dt.datetime.now(when.tzinfo) if when.tzinfo else _dt.datetime.now()
    elif not isinstance(now, _dt.datetime):
        raise TypeError(f"now must be a datetime, not {now!r}")
    if (when.utcoffset() is None) != (now.utcoffset() is None):
        raise TypeError(
            "cannot compare a datetime that has a time zone with one that has "
            f"none: {when!r} and {now!r}"
        )
    delta = now - when
    if abs(delta) < _dt.timedelta(seconds=1):
        return "just now"
    text = human_delta(delta, units)
    return f"{text} ago" if delta > _dt.timedelta(0) else f"in {text}"


def convertToHumanReadable(date_time: _dt.datetime, utc: bool = False) -> str:
    """Earlier name of `human_date`, with a trailing full stop.

    With `utc`, a naive `date_time` is taken as UTC rather than local time.
    """
    now = None
    if utc and date_time.tzinfo is None:
        now = _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
    return human_date(date_time, now) + "."


def makeEpochTime(date_time: _dt.datetime) -> int:
    """Whole seconds since the epoch (a naive datetime is local time)."""
    return int(date_time.timestamp())


def makeFancyDatetime(req_datetime: _dt.datetime) -> dict[str, object]:
    """Both of the above in a JSON-friendly dict.

    Keys ``fancy_datetime`` and ``seconds_since_epoch``.
    """
    return {
        "fancy_datetime": convertToHumanReadable(req_datetime),
        "seconds_since_epoch": makeEpochTime(req_datetime),
    }
