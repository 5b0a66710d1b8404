"""Quiet hours: no client message between 21:00 and 8:00 on the client's own clock.

The window is read on the wall clock of the client's zone, so it holds on the days
daylight-saving time starts and ends; a window may cross midnight or not; a firm
may switch it off; a zone name that is not a zone never stops a message.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casewatch.notify.models import MessagingPolicy
from casewatch.notify.quiet_hours import held_until, pick_zone

NEW_YORK = "America/New_York"


def policy(
    quiet_from: time = time(21), quiet_until: time = time(8), **fields: object
) -> MessagingPolicy:
    return MessagingPolicy(quiet_from=quiet_from, quiet_until=quiet_until, **fields)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_daytime_messages_go_at_once() -> None:
    assert held_until(utc(2026, 3, 2, 15, 0), NEW_YORK, policy()) is None  # 10:00 EST


def test_a_message_at_23_00_waits_until_08_00_the_next_morning() -> None:
    # 23:00 in Los Angeles on 2 March is 07:00 UTC on 3 March; 08:00 PST is 16:00 UTC.
    assert held_until(utc(2026, 3, 3, 7, 0), "America/Los_Angeles", policy()) == utc(
        2026, 3, 3, 16, 0
    )


def test_a_message_in_the_small_hours_waits_until_08_00_the_same_morning() -> None:
    assert held_until(utc(2026, 3, 2, 8, 0), NEW_YORK, policy()) == utc(2026, 3, 2, 13, 0)


def test_the_window_starts_at_quiet_from_and_ends_at_quiet_until() -> None:
    assert held_until(utc(2026, 3, 3, 2, 0), NEW_YORK, policy()) == utc(2026, 3, 3, 13, 0)
    assert held_until(utc(2026, 3, 3, 1, 59, 59), NEW_YORK, policy()) is None  # 20:59:59
    assert held_until(utc(2026, 3, 3, 13, 0), NEW_YORK, policy()) is None  # 08:00 sharp


def test_a_window_within_one_day_holds_only_inside_it() -> None:
    siesta = policy(time(13), time(15))
    madrid = "Europe/Madrid"
    assert held_until(utc(2026, 3, 2, 12, 30), madrid, siesta) == utc(2026, 3, 2, 14, 0)
    assert held_until(utc(2026, 3, 2, 11, 59), madrid, siesta) is None
    assert held_until(utc(2026, 3, 2, 22, 0), madrid, siesta) is None


def test_a_firm_that_switched_quiet_hours_off_is_never_held() -> None:
    assert held_until(utc(2026, 3, 3, 7, 0), NEW_YORK, policy(quiet_hours=False)) is None


def test_an_empty_window_holds_nothing() -> None:
    assert held_until(utc(2026, 3, 3, 7, 0), NEW_YORK, policy(time(8), time(8))) is None


def test_a_firm_without_settings_gets_21_to_8() -> None:
    assert held_until(utc(2026, 3, 3, 3, 0), NEW_YORK, None) == utc(2026, 3, 3, 13, 0)


# --- daylight-saving days ----------------------------------------------------------------


def test_spring_forward_night_releases_at_08_00_daylight_time() -> None:
    # 8 March 2026: New York skips 02:00-03:00. 01:30 EST is 06:30 UTC; 08:00 EDT is 12:00 UTC.
    assert held_until(utc(2026, 3, 8, 6, 30), NEW_YORK, policy()) == utc(2026, 3, 8, 12, 0)
    # From 23:00 EST the night before, too: a 7-hour wait, not 9.
    assert held_until(utc(2026, 3, 8, 4, 0), NEW_YORK, policy()) == utc(2026, 3, 8, 12, 0)
    # And 21:00 EDT that evening is quiet again, though 21:00 EST would be 02:00 UTC.
    assert held_until(utc(2026, 3, 9, 1, 0), NEW_YORK, policy()) == utc(2026, 3, 9, 12, 0)


def test_fall_back_night_releases_at_08_00_standard_time() -> None:
    # 1 November 2026: 01:00-02:00 happens twice. Both 01:30s wait until 08:00 EST (13:00 UTC).
    assert held_until(utc(2026, 11, 1, 5, 30), NEW_YORK, policy()) == utc(2026, 11, 1, 13, 0)
    assert held_until(utc(2026, 11, 1, 6, 30), NEW_YORK, policy()) == utc(2026, 11, 1, 13, 0)
    # 07:30 EST is still quiet, though 07:30 EDT would not be at that instant's UTC hour.
    assert held_until(utc(2026, 11, 1, 12, 30), NEW_YORK, policy()) == utc(2026, 11, 1, 13, 0)
    assert held_until(utc(2026, 11, 1, 13, 0), NEW_YORK, policy()) is None


def test_an_end_of_quiet_hours_that_the_clock_skips_comes_just_after_the_gap() -> None:
    night = policy(time(22), time(2, 30))
    # On 8 March 02:30 does not exist in New York: the message goes at 03:30 EDT (07:30 UTC).
    assert held_until(utc(2026, 3, 8, 4, 0), NEW_YORK, night) == utc(2026, 3, 8, 7, 30)


# --- zones that are not zones ------------------------------------------------------------


def test_a_zone_name_that_is_not_a_zone_falls_back_to_the_next_one_then_new_york() -> None:
    assert pick_zone("Mars/Olympus_Mons", "Europe/Madrid") == "Europe/Madrid"
    assert pick_zone("", "Asia/Manila") == "Asia/Manila"
    assert pick_zone("nowhere", "../../etc/passwd", "") == NEW_YORK
    assert pick_zone() == NEW_YORK


def test_quiet_hours_in_an_unknown_zone_are_new_yorks_rather_than_an_error() -> None:
    assert held_until(utc(2026, 3, 3, 3, 0), "Atlantis/Capital", policy()) == utc(2026, 3, 3, 13, 0)


def test_a_time_without_a_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        held_until(datetime(2026, 3, 3, 3, 0), NEW_YORK, policy())


# --- for any moment, any zone, any window ------------------------------------------------

ZONES = ["America/New_York", "America/Los_Angeles", "Europe/Madrid", "Asia/Manila", "UTC"]


@given(
    moment=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(ZONES),
    start=st.integers(0, 23),
    end=st.integers(0, 23),
)
def test_held_exactly_inside_the_window_and_released_at_its_end(
    moment: datetime, zone: str, start: int, end: int
) -> None:
    window = policy(time(start), time(end))
    released = held_until(moment, zone, window)
    local = moment.astimezone(ZoneInfo(zone))
    hour = local.hour
    inside = (start <= hour < end) if start < end else (hour >= start or hour < end)
    if start == end:
        inside = False
    assert (released is not None) == inside
    if released is not None:
        assert moment < released <= moment + timedelta(hours=25)
        at = released.astimezone(ZoneInfo(zone))
        assert at.minute == 0 and at.second == 0
        if at.hour == end:
            assert held_until(released, zone, window) is None
        else:  # `end` fell in a spring-forward gap: the message goes just after it
            assert at.hour == end + 1
