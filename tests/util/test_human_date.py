import datetime as dt

import pytest

from encore.util.human_date import (
    convertToHumanReadable,
    human_date,
    human_delta,
    makeEpochTime,
    makeFancyDatetime,
)

NOW = dt.datetime(2024, 6, 15, 12, 0, 0)


@pytest.mark.parametrize(
    "delta, text",
    [
        (dt.timedelta(days=3, hours=2, minutes=5), "3 days, 2 hours ago"),
        (dt.timedelta(days=1), "1 day ago"),
        (dt.timedelta(days=1, minutes=5), "1 day ago"),  # hours are zero
        (dt.timedelta(hours=1, minutes=1, seconds=30), "1 hour, 1 minute ago"),
        (dt.timedelta(minutes=2, seconds=7), "2 minutes, 7 seconds ago"),
        (dt.timedelta(seconds=45), "45 seconds ago"),
        (dt.timedelta(seconds=1), "1 second ago"),
        (dt.timedelta(days=400), "1 year, 1 month ago"),
        (dt.timedelta(days=370), "1 year ago"),
        (dt.timedelta(days=730, hours=3), "2 years ago"),
        (dt.timedelta(days=65), "2 months, 5 days ago"),
        (dt.timedelta(milliseconds=300), "just now"),
        (dt.timedelta(0), "just now"),
        (-dt.timedelta(days=2, hours=3), "in 2 days, 3 hours"),
    ],
)
def test_two_most_significant_units(delta, text):
    assert human_date(NOW - delta, now=NOW) == text


def test_units_can_be_chosen():
    when = NOW - dt.timedelta(days=3, hours=2, minutes=5, seconds=9)
    assert human_date(when, NOW, units=1) == "3 days ago"
    assert human_date(when, NOW, units=4) == "3 days, 2 hours, 5 minutes, 9 seconds ago"
    with pytest.raises(ValueError, match="units"):
        human_date(when, NOW, units=0)


def test_defaults_to_now_naive_and_aware():
    assert human_date(dt.datetime.now() - dt.timedelta(hours=5, minutes=30)) == (
        "5 hours, 30 minutes ago"
    )
    tz = dt.timezone(dt.timedelta(hours=-7))
    aware = dt.datetime.now(tz) - dt.timedelta(days=2, hours=1, seconds=5)
    assert human_date(aware) == "2 days, 1 hour ago"


def test_aware_datetimes_in_different_zones():
    when = dt.datetime(2024, 6, 15, 9, 0, tzinfo=dt.timezone.utc)
    now = dt.datetime(2024, 6, 15, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert human_date(when, now) == "3 hours, 30 minutes ago"


def test_dates_mean_midnight():
    assert human_date(dt.date(2024, 6, 12), NOW) == "3 days, 12 hours ago"


def test_bad_input_is_a_clear_error():
    with pytest.raises(TypeError, match="time zone"):
        human_date(dt.datetime.now(dt.timezone.utc), NOW)
    with pytest.raises(TypeError, match="datetime or date"):
        human_date("yesterday", NOW)
    with pytest.raises(TypeError, match="now must be"):
        human_date(NOW, now=12)
    with pytest.raises(TypeError, match="timedelta"):
        human_delta("long")


def test_human_delta():
    assert human_delta(90) == "1 minute, 30 seconds"
    assert human_delta(dt.timedelta(hours=-3)) == "3 hours"
    assert human_delta(0.2) == "0 seconds"


def test_compatibility_names():
    when = dt.datetime.now() - dt.timedelta(days=3, hours=2, minutes=1)
    assert convertToHumanReadable(when) == "3 days, 2 hours ago."
    utc_when = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(
        minutes=5, seconds=3
    )
    assert convertToHumanReadable(utc_when, utc=True) == "5 minutes, 3 seconds ago."
    assert makeEpochTime(dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)) == 1577836800
    fancy = makeFancyDatetime(when)
    assert fancy["fancy_datetime"] == "3 days, 2 hours ago."
    assert fancy["seconds_since_epoch"] == int(when.timestamp())
