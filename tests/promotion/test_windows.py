"""Promotion windows: the window maths (RRULE + IANA zone, DST, absolute windows, next opening),
the ``windows.yaml`` policy (deny wins, defaults, every problem reported), break glass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringward.core.common import windows as w
from ringward.core.errors import (
    ApprovalBindingError,
    ApprovalConsumedError,
    ConfigError,
    InputError,
    PromotionWindowError,
)
from ringward.core.promotion import windows_policy as wp
from ringward.operations.promotion import windows as ops
from ringward.store import Store

NY = "America/New_York"
BERLIN = "Europe/Berlin"


def z(text: str) -> datetime:
    """An aware UTC instant from ``2026-03-09T13:00``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def weekdays(zone: str = NY, start: str = "2026-01-05T09:00", duration: str = "8h", name: str = "weekdays") -> Any:
    return w.recurring_window(name, rrule="FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", start=start, duration=duration,
                              timezone=zone)


def policy(**doc: Any) -> wp.WindowsPolicy:
    return wp.WindowsPolicy.model_validate({"schema_version": wp.SCHEMA_VERSION, **doc})


PRODUCTION_WINDOW = {"name": "prod-weekdays", "targets": ["ring:production"], "timezone": NY,
                     "start": "2026-01-05T09:00", "duration": "8h", "rrule": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"}
YEAR_END = {"name": "year-end", "targets": ["*"], "reason": "Year-end change freeze",
            "start_at": "2026-12-18T17:00:00-05:00", "end_at": "2027-01-04T09:00:00-05:00", "timezone": NY}


# --- recurring windows and DST ------------------------------------------------------------------------


def test_weekday_window_open_and_closed() -> None:
    win = weekdays()
    hit = w.is_open([win], z("2026-02-04T15:00"))  # Wednesday 10:00 EST
    assert hit is not None and hit.name == "weekdays"
    assert (hit.start, hit.end) == (z("2026-02-04T14:00"), z("2026-02-04T22:00"))
    assert w.is_open([win], z("2026-02-04T13:59:59")) is None  # 08:59:59 local
    assert w.is_open([win], z("2026-02-04T22:00")) is None  # end is exclusive (17:00 local)
    assert w.is_open([win], z("2026-02-07T15:00")) is None  # Saturday


@pytest.mark.parametrize(
    ("zone", "before", "after"),
    [
        # New York: EST (-5) until Sunday 2026-03-08, then EDT (-4)
        (NY, ("2026-03-06T14:00", "2026-03-06T22:00"), ("2026-03-09T13:00", "2026-03-09T21:00")),
        # Berlin: CET (+1) until Sunday 2026-03-29, then CEST (+2)
        (BERLIN, ("2026-03-27T08:00", "2026-03-27T16:00"), ("2026-03-30T07:00", "2026-03-30T15:00")),
    ],
)
def test_business_hours_stay_local_across_spring_forward(
    zone: str, before: tuple[str, str], after: tuple[str, str]
) -> None:
    win = weekdays(zone)
    for start, end in (before, after):
        hit = w.is_open([win], z(start))
        assert hit is not None and (hit.start, hit.end) == (z(start), z(end))
        local = hit.start.astimezone(ZoneInfo(zone))
        assert (local.hour, local.minute) == (9, 0)
        assert (hit.end.astimezone(ZoneInfo(zone)).hour) == 17


@pytest.mark.parametrize(
    ("zone", "before", "after"),
    [
        # New York back to EST on Sunday 2026-11-01
        (NY, ("2026-10-30T13:00", "2026-10-30T21:00"), ("2026-11-02T14:00", "2026-11-02T22:00")),
        # Berlin back to CET on Sunday 2026-10-25
        (BERLIN, ("2026-10-23T07:00", "2026-10-23T15:00"), ("2026-10-26T08:00", "2026-10-26T16:00")),
    ],
)
def test_business_hours_stay_local_across_fall_back(zone: str, before: tuple[str, str], after: tuple[str, str]) -> None:
    win = weekdays(zone)
    for start, end in (before, after):
        hit = w.is_open([win], z(start))
        assert hit is not None and (hit.start, hit.end) == (z(start), z(end))
    # the weekend in between is closed and the next opening is Monday 09:00 local
    assert w.next_opening([win], z(before[1])) == z(after[0])


@pytest.mark.parametrize(
    ("zone", "day", "expected_start"),
    [
        # 02:30 does not exist on the spring-forward day: read with the offset before the gap
        # (RFC 5545 §3.3.5), i.e. shifted forward by the gap: 02:30 EST = 07:30Z = 03:30 EDT
        (NY, "2026-03-08", "2026-03-08T07:30"),
        # Berlin: 02:30 CET = 01:30Z = 03:30 CEST
        (BERLIN, "2026-03-29", "2026-03-29T01:30"),
    ],
)
def test_start_in_the_spring_forward_gap_shifts_forward(zone: str, day: str, expected_start: str) -> None:
    win = w.recurring_window("nightly", rrule="FREQ=DAILY", start="2026-03-01T02:30", duration="1h", timezone=zone)
    (hit,) = w.occurrences(win, z(f"{day}T00:00"), z(f"{day}T12:00"))
    assert hit.start == z(expected_start)
    assert hit.end == hit.start + timedelta(hours=1)  # hours are exact
    local = hit.start.astimezone(ZoneInfo(zone))
    assert (local.hour, local.minute) == (3, 30)
    # the day before and after keep 02:30 local
    for other in (-1, 1):
        moment = z(f"{day}T00:00") + timedelta(days=other)
        (hit,) = w.occurrences(win, moment, moment + timedelta(hours=12))
        assert hit.start.astimezone(ZoneInfo(zone)).strftime("%H:%M") == "02:30"


@pytest.mark.parametrize(
    ("zone", "start", "first_instant"),
    [
        # 01:30 happens twice in New York on 2026-11-01: the first (EDT, -4) is taken
        (NY, "2026-11-01T01:30", "2026-11-01T05:30"),
        # 02:30 happens twice in Berlin on 2026-10-25: the first (CEST, +2) is taken
        (BERLIN, "2026-10-25T02:30", "2026-10-25T00:30"),
    ],
)
def test_ambiguous_fall_back_time_is_its_first_occurrence(zone: str, start: str, first_instant: str) -> None:
    win = w.recurring_window("once", rrule="FREQ=DAILY;COUNT=1", start=start, duration="30m", timezone=zone)
    (hit,) = w.occurrences(win, z("2026-10-20T00:00"), z("2026-11-05T00:00"))
    assert hit.start == z(first_instant)
    assert hit.start.astimezone(ZoneInfo(zone)).fold == 0
    assert w.is_open([win], hit.start + timedelta(minutes=29)) is not None
    assert w.is_open([win], hit.start + timedelta(minutes=30)) is None


def test_days_are_nominal_and_hours_exact_across_dst() -> None:
    day = w.recurring_window("sat", rrule="FREQ=WEEKLY;BYDAY=SA", start="2026-03-07T12:00", duration="1d", timezone=NY)
    (hit,) = w.occurrences(day, z("2026-03-07T00:00"), z("2026-03-08T00:00"))
    assert hit.end - hit.start == timedelta(hours=23)  # Saturday noon to Sunday noon, one hour lost
    assert hit.end.astimezone(ZoneInfo(NY)).hour == 12
    hours = w.recurring_window("sat", rrule="FREQ=WEEKLY;BYDAY=SA", start="2026-03-07T12:00", duration="24h",
                               timezone=NY)
    (hit,) = w.occurrences(hours, z("2026-03-07T00:00"), z("2026-03-08T00:00"))
    assert hit.end - hit.start == timedelta(hours=24)
    assert hit.end.astimezone(ZoneInfo(NY)).hour == 13


def test_next_opening_across_a_weekend_and_next_change() -> None:
    win = weekdays()
    friday_evening = z("2026-02-06T23:00")  # 18:00 EST Friday
    assert w.next_opening([win], friday_evening) == z("2026-02-09T14:00")  # Monday 09:00 EST
    assert w.next_change([win], friday_evening) == z("2026-02-09T14:00")
    inside = z("2026-02-09T15:00")
    assert w.next_opening([win], inside) == inside  # open now
    assert w.next_change([win], inside) == z("2026-02-09T22:00")  # closes at 17:00
    # nothing opens within a horizon shorter than the weekend; the horizon's last instant counts
    assert w.next_opening([win], friday_evening, timedelta(days=1)) is None
    exact = z("2026-02-09T14:00") - friday_evening
    assert w.next_opening([win], friday_evening, exact) == z("2026-02-09T14:00")
    assert w.next_opening([win], friday_evening, exact - timedelta(seconds=1)) is None


def test_back_to_back_windows_merge_in_next_change() -> None:
    morning = w.recurring_window("am", rrule="FREQ=DAILY", start="2026-01-01T08:00", duration="4h", timezone="UTC")
    afternoon = w.recurring_window("pm", rrule="FREQ=DAILY", start="2026-01-01T12:00", duration="4h", timezone="UTC")
    assert w.next_change([morning, afternoon], z("2026-02-01T09:00")) == z("2026-02-01T16:00")
    assert [h.name for h in w.active_at([morning, afternoon], z("2026-02-01T12:00"))] == ["pm"]


def test_absolute_window() -> None:
    win = w.absolute_window("freeze", start_at=datetime.fromisoformat("2026-12-18T17:00:00-05:00"),
                            end_at=datetime.fromisoformat("2027-01-04T09:00:00-05:00"))
    assert w.is_open([win], z("2026-12-18T21:59:59")) is None
    assert w.is_open([win], z("2026-12-18T22:00")) is not None
    assert w.is_open([win], z("2027-01-04T14:00")) is None
    assert w.next_change([win], z("2026-12-20T00:00")) == z("2027-01-04T14:00")
    with pytest.raises(ConfigError, match="end_at"):
        w.absolute_window("x", start_at=z("2026-01-02T00:00"), end_at=z("2026-01-01T00:00"))


def test_monthly_and_count_and_until() -> None:
    last_friday = w.recurring_window("lf", rrule="FREQ=MONTHLY;BYDAY=FR;BYSETPOS=-1", start="2026-01-30T09:00",
                                     duration="2h", timezone=NY)
    assert w.next_opening([last_friday], z("2026-02-01T00:00")) == z("2026-02-27T14:00")
    counted = w.recurring_window("c", rrule="FREQ=DAILY;COUNT=3", start="2026-01-01T09:00", duration="1h",
                                 timezone="UTC")
    assert w.is_open([counted], z("2026-01-03T09:30")) is not None
    assert w.is_open([counted], z("2026-01-04T09:30")) is None
    assert w.next_opening([counted], z("2026-01-03T12:00")) is None
    until_day = w.recurring_window("u", rrule="FREQ=DAILY;UNTIL=20260103", start="2026-01-01T09:00", duration="1h",
                                   timezone=NY)
    assert w.is_open([until_day], z("2026-01-03T14:30")) is not None  # a DATE includes that local day
    assert w.is_open([until_day], z("2026-01-04T14:30")) is None
    until_utc = w.recurring_window("u", rrule="RRULE:FREQ=DAILY;UNTIL=20260103T140000Z", start="2026-01-01T09:00",
                                   duration="1h", timezone=NY)
    assert w.is_open([until_utc], z("2026-01-03T14:30")) is not None  # 09:00 EST == 14:00Z, inclusive
    assert w.is_open([until_utc], z("2026-01-04T14:30")) is None


@pytest.mark.parametrize(
    ("field", "kwargs", "message"),
    [
        ("timezone", {"timezone": "Mars/Base"}, "unknown IANA time zone 'Mars/Base'"),
        ("timezone", {"timezone": "localtime"}, "expected an IANA time zone name"),
        ("timezone", {"timezone": "../etc/passwd"}, "expected an IANA time zone name"),
        ("start", {"start": "2026-01-05T09:00-05:00"}, "drop the offset"),
        ("start", {"start": "tomorrow"}, "expected a local date and time"),
        ("duration", {"duration": "0h"}, "above 0"),
        ("duration", {"duration": "400d"}, "at most 366 days"),
        ("duration", {"duration": "soon"}, "expected a duration"),
        ("rrule", {"rrule": "FREQ=SECONDLY"}, "FREQ=SECONDLY is not supported"),
        ("rrule", {"rrule": "FREQ=MINUTELY;INTERVAL=5"}, "FREQ=MINUTELY is not supported"),
        ("rrule", {"rrule": "FREQ=DAILY;BYMINUTE=0,30"}, "BYMINUTE is not supported"),
        ("rrule", {"rrule": "FREQ=DAILY;COUNT=100000"}, "COUNT=100000 is not supported"),
        ("rrule", {"rrule": "FREQ=DAILY;INTERVAL=5000"}, "INTERVAL=5000 is not supported"),
        ("rrule", {"rrule": "DTSTART:20260101T090000\nRRULE:FREQ=DAILY"}, "DTSTART comes from the window's start"),
        ("rrule", {"rrule": "DTSTART=20260101T090000;FREQ=DAILY"}, "DTSTART is not allowed"),
        ("rrule", {"rrule": "FREQ=DAILY;BYEASTER=0"}, "BYEASTER is not a supported RRULE part"),
        ("rrule", {"rrule": "FREQ=DAILY;COUNT=2;UNTIL=20270101"}, "COUNT and UNTIL"),
        ("rrule", {"rrule": "FREQ=WEEKLY;BYDAY=1MO"}, "numbered weekdays need FREQ=MONTHLY or YEARLY"),
        ("rrule", {"rrule": "FREQ=DAILY;BYDAY=XX"}, "not a weekday"),
        ("rrule", {"rrule": "BYDAY=MO"}, "FREQ is required"),
        ("rrule", {"rrule": "FREQ=FORTNIGHTLY"}, "not an RFC 5545 frequency"),
        ("rrule", {"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}, "never occurs"),
        ("rrule", {"rrule": "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"}, "never occurs"),
        ("rrule", {"rrule": "FREQ=YEARLY;INTERVAL=4;BYMONTH=2;BYMONTHDAY=29"}, "never occurs"),  # 2026+4k: never leap
        ("rrule", {"rrule": "FREQ=DAILY;UNTIL=20250101"}, "before the first occurrence"),
    ],
)
def test_bad_window_fields_are_refused_naming_the_field(field: str, kwargs: dict[str, str], message: str) -> None:
    args = {"rrule": "FREQ=DAILY", "start": "2026-01-05T09:00", "duration": "1h", "timezone": NY, **kwargs}
    with pytest.raises(ConfigError) as caught:
        w.recurring_window("x", **args)
    assert caught.value.message.startswith(f"{field}: ")
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_impossible_rules_are_refused_quickly() -> None:
    import time

    started = time.monotonic()
    for rule in ("FREQ=HOURLY;BYMONTH=2;BYMONTHDAY=30", "FREQ=DAILY;INTERVAL=7;BYMONTH=4;BYMONTHDAY=31"):
        with pytest.raises(ConfigError, match="never occurs"):
            w.recurring_window("x", rrule=rule, start="2026-01-05T09:00", duration="1h", timezone=NY)
    assert time.monotonic() - started < 5  # dateutil alone walks to year 9999 (10+ s)


def test_naive_times_are_refused() -> None:
    win = weekdays()
    naive = datetime(2026, 3, 9, 12, 0)
    for call in (lambda: w.is_open([win], naive), lambda: w.next_opening([win], naive),
                 lambda: wp.evaluate_window(None, ["ring:production"], naive)):
        with pytest.raises(InputError, match="no UTC offset"):
            call()
    with pytest.raises(InputError, match="horizon"):
        w.next_opening([win], z("2026-03-09T12:00"), timedelta(days=5000))


# --- property: windowed evaluation == brute-force enumeration -----------------------------------------

ZONES = ["UTC", NY, BERLIN, "Australia/Lord_Howe", "Asia/Kolkata", "America/Sao_Paulo", "Pacific/Apia"]
DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]


@st.composite
def rules(draw: st.DrawFn) -> tuple[str, datetime, str, str]:
    freq = draw(st.sampled_from(["DAILY", "WEEKLY", "MONTHLY", "HOURLY"]))
    parts = [f"FREQ={freq}"]
    if freq == "HOURLY":
        parts.append(f"INTERVAL={draw(st.integers(3, 13))}")
    elif draw(st.booleans()):
        parts.append(f"INTERVAL={draw(st.integers(1, 3))}")
    if freq in ("DAILY", "WEEKLY") and draw(st.booleans()):
        parts.append("BYDAY=" + ",".join(draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True))))
    if freq == "MONTHLY":
        parts.append(draw(st.sampled_from(["BYMONTHDAY=1,15", "BYDAY=2SA", "BYDAY=MO;BYSETPOS=-1", "BYMONTHDAY=-1"])))
    if freq == "DAILY" and draw(st.booleans()):
        parts.append("BYHOUR=" + ",".join(str(h) for h in draw(st.lists(st.integers(0, 23), min_size=1, max_size=3,
                                                                                unique=True))))
    if draw(st.booleans()):
        parts.append(f"COUNT={draw(st.integers(1, 60))}")
    start = datetime(2026, 1, 1) + timedelta(minutes=30 * draw(st.integers(0, 2 * 24 * 365)))
    duration = draw(st.sampled_from(["30m", "1h", "2h30m", "8h", "1d", "1d2h", "3d"]))
    return ";".join(parts), start, duration, draw(st.sampled_from(ZONES))


def brute_force(text: str, start: datetime, duration: str, zone_name: str, until: datetime) -> list[tuple[datetime,
                                                                                                         datetime]]:
    """Every occurrence from DTSTART on, converted one by one (no search windows, no slack)."""
    zone = ZoneInfo(zone_name)
    length = w.check_duration(duration)
    out = []
    for local in rrulestr(text, dtstart=start):
        begin = local.replace(tzinfo=zone).astimezone(UTC)
        if begin > until:
            break
        nominal_end = (local + timedelta(days=length.days)).replace(tzinfo=zone).astimezone(UTC)
        out.append((begin, nominal_end + length.exact))
    return out


#: DST transitions of the zones above in 2026/2027 (UTC), where evaluation is most fragile
TRANSITIONS = [z(t) for t in ("2026-03-08T07:00", "2026-11-01T06:00", "2026-03-29T01:00", "2026-10-25T01:00",
                              "2026-04-04T15:00", "2026-10-03T15:30", "2027-03-14T07:00", "2027-03-28T01:00")]


@st.composite
def instants(draw: st.DrawFn, start: datetime) -> datetime:
    if draw(st.booleans()):
        base = draw(st.sampled_from(TRANSITIONS))
        moment = base + timedelta(minutes=draw(st.integers(-36 * 60, 36 * 60)))
    else:
        moment = start.replace(tzinfo=UTC) + timedelta(minutes=draw(st.integers(-3 * 24 * 60, 420 * 24 * 60)))
    return moment + timedelta(seconds=draw(st.integers(0, 59)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=rules(), data=st.data())
def test_is_open_agrees_with_brute_force_enumeration(rule: tuple[str, datetime, str, str], data: st.DataObject) -> None:
    text, start, duration, zone = rule
    win = w.recurring_window("p", rrule=text, start=start, duration=duration, timezone=zone)
    at = data.draw(instants(start))
    intervals = brute_force(text, start, duration, zone, at + timedelta(days=40))
    covering = [(b, e) for b, e in intervals if b <= at < e]
    hit = w.is_open([win], at)
    assert (hit is not None) == bool(covering), (text, start, duration, zone, at, covering)
    if hit is not None:
        assert (hit.start, hit.end) in covering
        assert hit.end == max(e for _, e in covering)
    # the next opening within 30 days is the earliest occurrence start after `at` (or `at` itself)
    upcoming = [b for b, e in intervals if b > at and b <= at + timedelta(days=30)]
    expected = at if covering else (min(upcoming) if upcoming else None)
    assert w.next_opening([win], at, timedelta(days=30)) == expected


# --- the policy file ---------------------------------------------------------------------------------


def test_example_policy_is_valid() -> None:
    loaded = ops.load_windows_policy(Path(__file__).resolve().parents[2] / "examples" / "windows.yaml")
    assert loaded.default == "allow"
    assert {e.name for e in loaded.allow} >= {"production-weekday-changes"}
    assert {"year-end-2026", "stable-quarter-close"} <= {e.name for e in loaded.freezes}
    decision = wp.evaluate_window(loaded, ["ring:production", "channel:stable"], z("2026-12-22T16:00"))
    assert not decision.allowed and "year-end-2026" in decision.freezes


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "windows.yaml"
    path.write_text(text)
    return path


def test_every_schema_problem_is_reported_with_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
schema_version: {wp.SCHEMA_VERSION}
default: maybe
allow:
  - name: a
    targets: [ring:production]
    timezone: Mars/Base
    start: "2026-01-05T09:00"
    duration: 8h
    rrule: FREQ=WEEKLY;BYDAY=MO
  - name: b
    targets: [rings:production]
    timezone: {NY}
    start: "2026-01-05T09:00"
    duration: 8h
    rrule: FREQ=SECONDLY
freezes:
  - name: c
    targets: ["*"]
    start_at: 2026-12-18T17:00:00
    end_at: "2027-01-04T09:00:00-05:00"
    reason: naive start
  - name: d
    targets: ["*"]
    start_at: "2026-12-18T17:00:00-05:00"
    end_at: "2027-01-04T09:00:00-05:00"
  - name: e
    targets: ["*"]
    reason: both kinds
    rrule: FREQ=DAILY
    start_at: "2026-12-18T17:00:00-05:00"
    end_at: "2027-01-04T09:00:00-05:00"
    colour: red
""")
    with pytest.raises(wp.WindowsPolicyError) as caught:
        ops.load_windows_policy(path)
    problems = caught.value.problems
    joined = "\n".join(problems)
    assert "default: " in joined
    assert "allow[0].timezone: unknown IANA time zone 'Mars/Base'" in joined
    assert "allow[1].targets: expected ring:<name>" in joined
    assert "allow[1].rrule: FREQ=SECONDLY is not supported" in joined
    assert "freezes[0].start_at: expected a date and time with a UTC offset" in joined
    assert "freezes[1].reason: required field is missing" in joined
    assert "freezes[2].colour: unknown field" in joined
    assert caught.value.message.startswith(f"{path}: {len(problems)} problems: ")
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("allow: [unclosed", "invalid YAML"),
        ("schema_version: cavra.windows.v1\n", "schema_version: expected 'ringward.promotion-windows.v1'"),
        ("", "found an empty file"),
        ("- a\n- b\n", "found list"),
        (f"schema_version: {wp.SCHEMA_VERSION}\nallow: []\nallow: []\n", "duplicate key 'allow'"),
    ],
)
def test_unusable_policy_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(wp.WindowsPolicyError, match=message):
        ops.load_windows_policy(write(tmp_path, text))


def test_policy_size_cap_and_duplicate_names(tmp_path: Path) -> None:
    big = write(tmp_path, "#" * (wp.MAX_POLICY_BYTES + 1))
    with pytest.raises(InputError, match="expected at most"):
        ops.load_windows_policy(big)
    import json

    doc = {"schema_version": wp.SCHEMA_VERSION, "allow": [PRODUCTION_WINDOW],
           "freezes": [{**YEAR_END, "name": "Prod-Weekdays"}]}
    with pytest.raises(wp.WindowsPolicyError) as caught:
        wp.parse_windows_policy(json.dumps(doc).encode(), source="w.json")
    assert caught.value.problems == ("freezes[0].name: duplicate window name 'Prod-Weekdays' (also allow[0])",)


# --- decisions ----------------------------------------------------------------------------------------


def test_inside_an_allow_window_is_open() -> None:
    decision = wp.evaluate_window(policy(allow=[PRODUCTION_WINDOW]), ["ring:production"], z("2026-03-09T15:00"))
    assert decision.allowed and decision.windows == ("prod-weekdays",)
    assert decision.open_until == z("2026-03-09T21:00")
    assert decision.targets[0].state == "open"


def test_outside_every_allow_window_is_closed_with_next_opening() -> None:
    decision = wp.evaluate_window(policy(allow=[PRODUCTION_WINDOW]), ["ring:production"], z("2026-03-06T23:00"))
    assert not decision.allowed and decision.target == "ring:production"
    assert decision.targets[0].state == "closed" and decision.windows == ("prod-weekdays",)
    assert decision.next_opening == z("2026-03-09T13:00")  # Monday 09:00 EDT, after the DST change
    assert decision.next_opening_zone == NY
    assert "next opening 2026-03-09T13:00:00Z (2026-03-09T09:00:00-04:00 America/New_York)" in decision.reason


def test_freeze_overlapping_an_allow_window_denies() -> None:
    rules = policy(allow=[PRODUCTION_WINDOW], freezes=[YEAR_END])
    at = z("2026-12-21T15:00")  # Monday 10:00 EST: inside the allow window and the freeze
    decision = wp.evaluate_window(rules, ["ring:production"], at)
    assert not decision.allowed
    assert decision.targets[0].state == "frozen" and decision.freezes == ("year-end",)
    assert decision.targets[0].open_windows == ("prod-weekdays",)
    # next opening: the first allow window after the freeze ends (Mon 2027-01-04 09:00 EST, the
    # freeze ends at exactly that instant)
    assert decision.next_opening == z("2027-01-04T14:00")
    assert "year-end" in decision.reason and "Year-end change freeze" in decision.reason
    # the same policy without the freeze allows it (the freeze is what denies)
    assert wp.evaluate_window(policy(allow=[PRODUCTION_WINDOW]), ["ring:production"], at).allowed


def test_next_opening_across_a_freeze_and_weekend() -> None:
    freeze = {**YEAR_END, "end_at": "2027-01-02T12:00:00-05:00"}  # ends on a Saturday
    decision = wp.evaluate_window(policy(allow=[PRODUCTION_WINDOW], freezes=[freeze]), ["ring:production"],
                                  z("2026-12-24T15:00"))
    assert decision.next_opening == z("2027-01-04T14:00")  # Monday 09:00 EST, not the freeze's end


def test_deny_wins_across_targets() -> None:
    channel_freeze = {"name": "stable-freeze", "targets": ["channel:stable"], "reason": "quarter close",
                      "start_at": "2026-03-25T00:00:00-04:00", "end_at": "2026-04-01T00:00:00-04:00"}
    rules = policy(allow=[PRODUCTION_WINDOW], freezes=[channel_freeze])
    at = z("2026-03-26T15:00")
    assert wp.evaluate_window(rules, ["ring:production"], at).allowed
    decision = wp.evaluate_window(rules, ["ring:production", "channel:stable"], at)
    assert not decision.allowed and decision.target == "channel:stable"
    assert decision.denied_targets == ("channel:stable",)
    assert decision.next_opening == z("2026-04-01T13:00")  # the freeze ends at midnight; the ring opens at 09:00
    assert decision.next_opening_zone == NY


def test_targets_without_allow_windows_follow_the_default() -> None:
    at = z("2026-03-07T03:00")  # Saturday night: the production window is closed
    assert wp.evaluate_window(policy(allow=[PRODUCTION_WINDOW]), ["ring:pilot"], at).targets[0].state == "default-allow"
    denied = wp.evaluate_window(policy(default="deny", allow=[PRODUCTION_WINDOW]), ["ring:pilot"], at)
    assert not denied.allowed and denied.targets[0].state == "default-deny"
    assert denied.next_opening is None and "no opening within 400 days" in denied.reason
    # a freeze still applies to a target without allow windows
    frozen = wp.evaluate_window(policy(freezes=[YEAR_END]), ["ring:pilot"], z("2026-12-25T00:00"))
    assert frozen.targets[0].state == "frozen" and frozen.next_opening == z("2027-01-04T14:00")
    assert frozen.next_opening_zone == NY  # the zone of the freeze that ends then


def test_wildcards_and_case_insensitive_targets() -> None:
    kind_freeze = {**YEAR_END, "targets": ["ring:*"]}
    rules = policy(freezes=[kind_freeze])
    at = z("2026-12-25T00:00")
    assert not wp.evaluate_window(rules, ["ring:anything"], at).allowed
    assert wp.evaluate_window(rules, ["channel:stable"], at).allowed
    rules = policy(freezes=[{**YEAR_END, "targets": ["ring:production"]}])
    assert not wp.evaluate_window(rules, ["ring:Production"], at).allowed


@pytest.mark.parametrize("target", ["production", "ring:", "ring:*", "*", "cluster:a", "ring:a b"])
def test_bad_targets_are_input_errors(target: str) -> None:
    with pytest.raises(InputError, match="--target"):
        wp.evaluate_window(None, [target], z("2026-03-09T15:00"))


def test_require_open_raises_one_line_with_next_opening() -> None:
    rules = policy(allow=[PRODUCTION_WINDOW], freezes=[YEAR_END])
    with pytest.raises(wp.WindowClosedError) as caught:
        wp.require_open(rules, ["ring:production"], z("2026-12-21T15:00"), action="rollout promotion")
    message = caught.value.message
    assert isinstance(caught.value, PromotionWindowError) and caught.value.exit_code == 1
    assert message.startswith("rollout promotion refused by promotion windows: ring:production is frozen by")
    assert "next opening 2027-01-04T14:00:00Z (2027-01-04T09:00:00-05:00 America/New_York)" in message
    assert "\n" not in message
    assert caught.value.decision.next_opening == z("2027-01-04T14:00")
    assert wp.require_open(rules, ["ring:production"], z("2026-03-09T15:00")).allowed


def test_decision_document_is_plain_json() -> None:
    import json

    decision = wp.evaluate_window(policy(allow=[PRODUCTION_WINDOW], freezes=[YEAR_END]), ["ring:production"],
                                  z("2026-12-21T15:00"))
    doc = decision.to_document()
    assert json.loads(json.dumps(doc)) == doc
    assert doc["schema_version"] == "ringward.promotion-window-decision.v1"
    assert doc["next_opening"] == "2027-01-04T14:00:00Z"
    assert doc["next_opening_local"] == "2027-01-04T09:00:00-05:00"
    assert doc["targets"][0]["until"] == "2027-01-04T14:00:00Z"


# --- operations: files, env default, enforce ----------------------------------------------------------


def test_enforce_window_with_no_policy_is_open_and_with_a_policy_refuses(tmp_path: Path) -> None:
    decision = ops.enforce_window(None, ["ring:production"], z("2026-12-25T00:00"))
    assert decision.allowed and not decision.policy_configured
    path = write(tmp_path, f"schema_version: {wp.SCHEMA_VERSION}\nfreezes:\n  - name: year-end\n"
                           f"    targets: ['*']\n    reason: Year-end\n"
                           f"    start_at: '2026-12-18T17:00:00-05:00'\n    end_at: '2027-01-04T09:00:00-05:00'\n")
    with pytest.raises(PromotionWindowError, match="ring:production is frozen by 'year-end'"):
        ops.enforce_window(path, ["ring:production"], z("2026-12-25T00:00"))
    assert ops.check_window(path, ["ring:production"], z("2026-12-25T00:00")).allowed is False
    assert ops.enforce_window(path, ["ring:production"], z("2027-01-05T00:00")).allowed


def test_windows_env_default() -> None:
    assert ops.windows_policy_path(None, environ={}) is None
    assert ops.windows_policy_path(None, environ={"RINGWARD_WINDOWS": " "}) is None
    assert ops.windows_policy_path(None, environ={"RINGWARD_WINDOWS": "/etc/w.yaml"}) == Path("/etc/w.yaml")
    assert ops.windows_policy_path(Path("x.yaml"), environ={"RINGWARD_WINDOWS": "/etc/w.yaml"}) == Path("x.yaml")


# --- break glass -----------------------------------------------------------------------------------------


def frozen_decision(targets: list[str]) -> wp.WindowDecision:
    return wp.evaluate_window(policy(freezes=[YEAR_END]), targets, z("2026-12-25T00:00"))


def test_break_glass_binding_is_stable_and_specific() -> None:
    one = wp.break_glass_binding(["ring:production", "environment:prod"], subject="rpr_0123abcd")
    two = wp.break_glass_binding(["environment:Prod", "ring:production"], subject="rpr_0123abcd",
                                 at=z("2026-12-25T00:00"))
    assert one == two and one.action == wp.BREAK_GLASS_ACTION == "break_glass"
    assert one.target == "rollout:rpr_0123abcd"
    assert one.subject_digest.startswith("sha256:") and len(one.subject_digest) == 71
    subject, target = one  # unpacks as (subject_digest, target)
    assert (subject, target) == (one.subject_digest, one.target)
    assert wp.break_glass_binding(["ring:production"], subject="rpr_0123abcd") != one  # other targets
    assert wp.break_glass_binding(["ring:production", "environment:prod"], subject="rpr_other") != one
    assert wp.break_glass_binding(frozen_decision(["ring:production", "environment:prod"]),
                                  subject="rpr_0123abcd") == one
    export = wp.break_glass_binding(["ring:production"], subject="rpr_0123abcd", overridden_action="export")
    assert export.target == "export:rpr_0123abcd"


def test_break_glass_refuses_an_open_decision_and_bad_subjects() -> None:
    open_decision = wp.evaluate_window(None, ["ring:production"], z("2026-12-25T00:00"))
    with pytest.raises(InputError, match="nothing to override"):
        wp.break_glass_binding(open_decision, subject="rpr_1")
    with pytest.raises(InputError, match="subject"):
        wp.break_glass_binding(["ring:production"], subject="has space")


def test_consume_break_glass_needs_its_own_approved_approval(store: Store) -> None:
    from ringward.core.approvals.rules import Decision
    from ringward.operations.approvals.approval_ops import decide_approval, request_approval

    now = z("2026-12-25T00:00")
    decision = frozen_decision(["ring:production"])
    binding = wp.break_glass_binding(decision, subject="rpr_0123abcd")
    # a promotion approval for the same execution is not a break-glass approval
    promotion = request_approval(store, action="promote-ring", subject_digest=binding.subject_digest,
                                 target=binding.target, requester="alice", now=now)
    decide_approval(store, promotion.approval_id, decision=Decision.APPROVE, actor="bob", reason="ok", now=now)
    with pytest.raises(ApprovalBindingError, match="action"):
        ops.consume_break_glass(store, promotion.approval_id, decision=decision, subject="rpr_0123abcd",
                                actor="carol", now=now)
    glass = request_approval(store, action=binding.action, subject_digest=binding.subject_digest,
                             target=binding.target, requester="alice", now=now, note="P1 incident INC-42")
    decide_approval(store, glass.approval_id, decision=Decision.APPROVE, actor="bob", reason="incident", now=now)
    # bound to this execution: another subject does not match
    with pytest.raises(ApprovalBindingError):
        ops.consume_break_glass(store, glass.approval_id, decision=decision, subject="rpr_other", actor="carol",
                                now=now)
    approval, used = ops.consume_break_glass(store, glass.approval_id, decision=decision, subject="rpr_0123abcd",
                                             actor="carol", now=now, execution_ref="rpe_1")
    assert used == binding and approval.consumed_at is not None
    with pytest.raises(ApprovalConsumedError):
        ops.consume_break_glass(store, glass.approval_id, decision=decision, subject="rpr_0123abcd",
                                actor="carol", now=now)
    marked = wp.break_glass_evidence(decision, glass.approval_id)
    assert marked["break_glass"] is True and marked["window"]["allowed"] is False


def test_record_window_decision_appends_evidence(store: Store) -> None:
    decision = frozen_decision(["ring:production", "channel:stable"])
    record = ops.record_window_decision(store, decision, actor="release-manager", action="window-check",
                                        policy_path=Path("windows.yaml"))
    assert record.kind == wp.KIND_WINDOW_DECISION
    assert record.subject.ring == "production" and record.subject.channel == "stable"
    assert record.subject.status == "closed"
    assert record.payload["freezes"] == ["year-end"] and record.payload["policy"] == "windows.yaml"
