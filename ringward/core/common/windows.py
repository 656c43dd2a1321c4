"""Time windows: recurring (RFC 5545 RRULE in an IANA time zone) and absolute, and the maths over them.

Used by promotion windows and freezes (``windows.yaml``) and meant for maintenance windows and
business hours elsewhere. Pure: time is always a parameter and naive datetimes are refused.

A **recurring window** is an RRULE (RFC 5545 §3.3.10, the value only: ``FREQ=WEEKLY;BYDAY=MO,TU``),
a DTSTART given by the window's ``start`` field as *local wall-clock time* in ``timezone``, and a
``duration``. Occurrences are expanded in local wall-clock time, so "weekdays 09:00 for 8h in
Europe/Berlin" starts at 09:00 local on both sides of a DST change. Each local start is then
turned into an instant:

- a local time that does not exist (it falls in a spring-forward gap, e.g. 02:30 on the day New
  York moves from 02:00 EST to 03:00 EDT) is read with the UTC offset *before* the gap, as
  RFC 5545 §3.3.5 says: 02:30 becomes 07:30Z = 03:30 EDT (shifted forward by the gap);
- a local time that exists twice (fall-back, 01:30 on the day New York moves back to EST) is its
  *first* occurrence (``fold=0``, the earlier instant, still on daylight time).

``duration`` follows RFC 5545 §3.3.6: weeks and days are *nominal* (``1d`` ends at the same local
wall-clock time the next day, 23 or 25 hours later across a DST change) and hours, minutes and
seconds are *exact* (``8h`` is eight elapsed hours). Write it compactly (``8h``, ``1d12h``,
``2w``, ``90m``) or as an ISO 8601 duration (``PT8H``, ``P1DT12H``).

An **absolute window** is ``[start_at, end_at)`` between two aware instants.

Every occurrence is a half-open interval ``[start, end)`` in UTC: a window ending at 17:00 is
closed at 17:00, and back-to-back windows leave no gap.

What the evaluation refuses (so that it always terminates quickly):

- ``FREQ=SECONDLY`` and ``FREQ=MINUTELY`` (a window recurs at most hourly), ``BYSECOND`` and
  ``BYMINUTE`` (the minute comes from ``start``), ``BYEASTER`` and any part RFC 5545 does not
  define; ``DTSTART`` / ``RDATE`` / ``EXDATE`` / ``EXRULE`` inside the rule (DTSTART is the
  window's ``start`` field, nothing else);
- ``COUNT`` above :data:`MAX_COUNT`, ``INTERVAL`` above :data:`MAX_INTERVAL`, ``COUNT`` together
  with ``UNTIL`` (RFC 5545 forbids it), part combinations RFC 5545 forbids (``BYWEEKNO`` outside
  YEARLY, numbered ``BYDAY`` outside MONTHLY/YEARLY, ...);
- a rule that never occurs (``FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30``). The Gregorian calendar
  repeats every 400 years (146097 days, a whole number of weeks), so a rule's occurrences repeat
  with a period of at most ``400 * INTERVAL`` years; the check looks at one such period, placed
  late in the calendar so that an empty rule is found empty after a bounded number of steps,
  and a rule that occurs once occurs in every period. Searches are bounded by a horizon
  (:data:`DEFAULT_HORIZON`, at most :data:`MAX_HORIZON`) and :data:`MAX_OCCURRENCES`.

``UNTIL`` may be a local date (inclusive: the whole day in ``timezone``), a local date-time
(``20261231T170000``) or a UTC instant (``20261231T220000Z``).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import DAILY, HOURLY, MONTHLY, WEEKLY, YEARLY, rrule, rrulestr
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ringward.core.errors import ConfigError, InputError

#: longest accepted RRULE text
MAX_RULE_CHARS = 512
#: largest COUNT (every occurrence of a counted rule may have to be walked)
MAX_COUNT = 10_000
#: largest INTERVAL
MAX_INTERVAL = 1_000
#: longest duration of one occurrence of a recurring window
MAX_DURATION = timedelta(days=366)
#: default and largest look-ahead of :func:`next_opening` / :func:`next_change`
DEFAULT_HORIZON = timedelta(days=400)
MAX_HORIZON = timedelta(days=3660)
#: occurrences one window may contribute to one search before it is refused as too dense
MAX_OCCURRENCES = 100_000
#: earliest and latest year of a window's DTSTART (``start``)
MIN_START_YEAR = 1970
MAX_START_YEAR = 9000

#: a window name: letters, digits and ``._-``, at most 128 characters
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+){0,3}$")
#: names zoneinfo resolves to files that are not IANA zones (or depend on the machine)
_NOT_ZONES = frozenset({"localtime", "posixrules", "factory", "posix", "right"})

_FREQS: dict[str, int] = {"YEARLY": YEARLY, "MONTHLY": MONTHLY, "WEEKLY": WEEKLY, "DAILY": DAILY, "HOURLY": HOURLY}
_RFC_FREQS = frozenset({"SECONDLY", "MINUTELY", *_FREQS})
#: RRULE parts in the order the normalised text lists them
_PARTS = (
    "FREQ",
    "INTERVAL",
    "COUNT",
    "UNTIL",
    "BYMONTH",
    "BYWEEKNO",
    "BYYEARDAY",
    "BYMONTHDAY",
    "BYDAY",
    "BYHOUR",
    "BYSETPOS",
    "WKST",
)
#: units of one 400-year Gregorian cycle, per frequency
_CYCLE_UNITS: dict[str, int] = {
    "YEARLY": 400,
    "MONTHLY": 4800,
    "WEEKLY": 20871,
    "DAILY": 146097,
    "HOURLY": 146097 * 24,
}
_WEEKDAY = r"(?:MO|TU|WE|TH|FR|SA|SU)"
_BYDAY_ITEM = re.compile(rf"^([+-]?\d{{1,2}})?{_WEEKDAY}$")
_INT_LIST = re.compile(r"^[+-]?\d{1,3}(?:,[+-]?\d{1,3})*$")
_UNTIL = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z)?)?$")
_COMPACT_DURATION = re.compile(r"^(?:(\d{1,6})w)?(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,6})s)?$")
_ISO_DURATION = re.compile(r"^P(?:(\d{1,6})W)?(?:(\d{1,6})D)?(?:T(?:(\d{1,6})H)?(?:(\d{1,6})M)?(?:(\d{1,6})S)?)?$")
_LOCAL_START = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?$")


# --- instants -------------------------------------------------------------------------------------


def require_aware(value: datetime, *, what: str = "at") -> datetime:
    """``value`` in UTC; a naive datetime is refused (its meaning depends on the machine).

    Raises:
        InputError: naive.
    """
    if not isinstance(value, datetime):
        raise InputError(f"{what}: expected an aware datetime, found {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InputError(f"{what}: {value.isoformat()} has no UTC offset; naive times are refused")
    return value.astimezone(UTC)


def check_horizon(horizon: timedelta) -> timedelta:
    """A search horizon between one minute and :data:`MAX_HORIZON`.

    Raises:
        InputError: out of range.
    """
    if not timedelta(minutes=1) <= horizon <= MAX_HORIZON:
        raise InputError(f"horizon: expected between 1 minute and {MAX_HORIZON.days} days, found {horizon}")
    return horizon


def iso_utc(value: datetime) -> str:
    """``2026-03-09T13:00:00Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def format_instant(value: datetime, timezone: str | None) -> str:
    """``2026-03-09T13:00:00Z (2026-03-09T09:00:00-04:00 America/New_York)``; UTC alone when the
    zone is UTC or unknown."""
    utc = iso_utc(value)
    if timezone is None or timezone in ("UTC", "Etc/UTC"):
        return utc
    return f"{utc} ({value.astimezone(zone_of(timezone)).isoformat()} {timezone})"


# --- fields: zone, local start, duration, rule ----------------------------------------------------


@lru_cache(maxsize=512)
def zone_of(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (validated by :func:`check_zone`)."""
    return ZoneInfo(check_zone(name))


def check_zone(name: object) -> str:
    """An IANA time zone name zoneinfo knows (``America/New_York``, ``UTC``).

    Raises:
        ValueError: not a string, not a zone name, or unknown.
    """
    if not isinstance(name, str):
        raise ValueError(f"expected an IANA time zone name such as Europe/Berlin, found {type(name).__name__}")
    if (
        len(name) > 64
        or not _ZONE_NAME.match(name)
        or name.casefold() in _NOT_ZONES
        or name.split("/", 1)[0].casefold() in _NOT_ZONES
    ):
        raise ValueError(f"expected an IANA time zone name such as Europe/Berlin, found {name!r}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown IANA time zone {name!r}") from None
    return name


def check_local_start(value: object) -> datetime:
    """A window's DTSTART: a local date and time without offset (``2026-01-05T09:00``), as text
    or as a naive datetime (YAML reads an unquoted ``2026-01-05T09:00:00`` as one).

    Raises:
        ValueError: an offset, a bare date, microseconds, a year out of range, or not a time.
    """
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError(
                f"expected local wall-clock time in the window's timezone without an offset, found {value.isoformat()}"
            )
        parsed = value
    elif isinstance(value, date):
        raise ValueError(f"expected a local date and time such as 2026-01-05T09:00, found the date {value}")
    elif isinstance(value, str):
        match = _LOCAL_START.match(value.strip())
        if match is None:
            hint = (
                " (drop the offset: start is local time in the window's timezone)"
                if re.search(r"(Z|[+-]\d{2}:?\d{2})$", value.strip())
                else ""
            )
            raise ValueError(f"expected a local date and time such as 2026-01-05T09:00, found {value!r}{hint}")
        y, mo, d, h, mi, s = (int(g) if g else 0 for g in match.groups())
        try:
            parsed = datetime(y, mo, d, h, mi, s)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid date and time: {exc}") from None
    else:
        raise ValueError(f"expected a local date and time such as 2026-01-05T09:00, found {type(value).__name__}")
    if parsed.microsecond:
        raise ValueError(f"expected whole seconds, found {parsed.isoformat()}")
    if not MIN_START_YEAR <= parsed.year <= MAX_START_YEAR:
        raise ValueError(f"expected a year between {MIN_START_YEAR} and {MAX_START_YEAR}, found {parsed.year}")
    return parsed


@dataclass(frozen=True)
class WindowDuration:
    """How long one occurrence lasts: ``days`` nominal (wall-clock) plus ``exact`` elapsed time."""

    days: int
    exact: timedelta
    text: str

    def end(self, local_start: datetime, zone: ZoneInfo) -> datetime:
        """The UTC end of an occurrence that starts at naive ``local_start`` in ``zone``."""
        if self.days:
            return resolve_local(local_start + timedelta(days=self.days), zone) + self.exact
        return resolve_local(local_start, zone) + self.exact

    @property
    def span(self) -> timedelta:
        """The nominal length (a DST change moves the real one by at most a day)."""
        return timedelta(days=self.days) + self.exact


def check_duration(value: object) -> WindowDuration:
    """``8h``, ``1d12h``, ``2w``, ``90m`` or ISO 8601 ``PT8H`` / ``P1DT12H``; positive, at most
    :data:`MAX_DURATION`.

    Raises:
        ValueError: anything else.
    """
    hint = "expected a duration such as 8h, 1d12h, 90m or PT8H"
    if not isinstance(value, str):
        raise ValueError(f"{hint}, found {type(value).__name__} {value!r}")
    text = value.strip()
    match = _COMPACT_DURATION.match(text.lower()) or _ISO_DURATION.match(text.upper())
    if match is None or not any(match.groups()) or text.upper() in ("P", "PT"):
        raise ValueError(f"{hint}, found {value!r}")
    weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    nominal = weeks * 7 + days
    exact = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    total = timedelta(days=nominal) + exact
    if total <= timedelta(0) or total > MAX_DURATION:
        raise ValueError(f"expected a duration above 0 and at most {MAX_DURATION.days} days, found {value!r}")
    return WindowDuration(days=nominal, exact=exact, text=text)


def resolve_local(local: datetime, zone: ZoneInfo) -> datetime:
    """Naive local wall-clock time -> UTC instant: a time in a spring-forward gap is read with the
    offset before the gap (shifted forward, RFC 5545 §3.3.5); an ambiguous fall-back time is its
    first occurrence (``fold=0``)."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def to_local(instant: datetime, zone: ZoneInfo) -> datetime:
    """UTC instant -> naive local wall-clock time in ``zone``."""
    return instant.astimezone(zone).replace(tzinfo=None)


@dataclass(frozen=True)
class RecurrenceRule:
    """A validated RRULE bound to its DTSTART (local wall-clock time)."""

    #: the normalised RRULE value that is evaluated (UNTIL in local time)
    text: str
    freq: str
    start: datetime
    count: int | None
    #: last local time an occurrence may start (UNTIL), if any
    until: datetime | None
    #: first occurrence (local); a rule without one is refused
    first: datetime
    _rule: rrule = field(compare=False, repr=False)

    def starts(self, lo: datetime, hi: datetime) -> list[datetime]:
        """Local occurrence starts ``s`` with ``lo <= s <= hi`` (naive local times).

        Raises:
            InputError: more than :data:`MAX_OCCURRENCES` in the span.
        """
        if hi < self.first or (self.until is not None and lo > self.until):
            return []
        out: list[datetime] = []
        for start in self._rule.xafter(max(lo, self.first), inc=True):
            if start > hi:
                break
            out.append(start)
            if len(out) > MAX_OCCURRENCES:
                raise InputError(
                    f"rrule {self.text!r}: more than {MAX_OCCURRENCES} occurrences in "
                    f"{lo.isoformat()}..{hi.isoformat()}; use a shorter horizon or a sparser rule"
                )
        return out


def _int_in(value: str, part: str, low: int, high: int) -> int:
    if not re.fullmatch(r"\d{1,6}", value) or not low <= int(value) <= high:
        raise ValueError(f"{part}={value} is not supported: expected a whole number from {low} to {high}")
    return int(value)


def _until_local(value: str, zone: ZoneInfo) -> datetime:
    match = _UNTIL.match(value)
    if match is None:
        raise ValueError(f"UNTIL={value} is not an RFC 5545 date or date-time (20261231, 20261231T170000[Z])")
    y, mo, d, h, mi, s, z = match.groups()
    try:
        if h is None:  # a date: the whole local day is included
            return datetime(int(y), int(mo), int(d), 23, 59, 59)
        moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s))
    except ValueError as exc:
        raise ValueError(f"UNTIL={value} is not a valid date: {exc}") from None
    if z:
        return to_local(moment.replace(tzinfo=UTC), zone)
    return moment


def _split_rule(text: object) -> dict[str, str]:
    if not isinstance(text, str):
        raise ValueError(f"expected an RFC 5545 RRULE such as FREQ=WEEKLY;BYDAY=MO,TU, found {type(text).__name__}")
    if len(text) > MAX_RULE_CHARS:
        raise ValueError(f"expected at most {MAX_RULE_CHARS} characters, found {len(text)}")
    body = text.strip()
    if "\n" in body or "\r" in body:
        raise ValueError(
            "expected one RRULE value; DTSTART comes from the window's start field and RDATE, EXDATE "
            "and EXRULE are not supported"
        )
    if body.upper().startswith("RRULE:"):
        body = body[len("RRULE:") :]
    if not body:
        raise ValueError("expected an RFC 5545 RRULE such as FREQ=WEEKLY;BYDAY=MO,TU, found an empty rule")
    parts: dict[str, str] = {}
    for item in body.split(";"):
        key, sep, value = item.partition("=")
        key = key.strip().upper()
        value = value.strip().upper()
        if key in ("DTSTART", "TZID", "RDATE", "EXDATE", "EXRULE") or key.startswith("DTSTART"):
            raise ValueError(f"{key} is not allowed in the rule; DTSTART comes from the window's start field")
        if not sep or not key or not value:
            raise ValueError(f"expected NAME=VALUE parts separated by ';', found {item!r}")
        if key in ("BYSECOND", "BYMINUTE"):
            raise ValueError(f"{key} is not supported: the window's start gives the minute and second")
        if key not in _PARTS:
            raise ValueError(f"{key} is not a supported RRULE part (supported: {', '.join(_PARTS)})")
        if key in parts:
            raise ValueError(f"{key} is given twice")
        parts[key] = value
    return parts


def _check_parts(parts: dict[str, str]) -> str:
    freq = parts.get("FREQ")
    if freq is None:
        raise ValueError("FREQ is required (HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY)")
    if freq in ("SECONDLY", "MINUTELY"):
        raise ValueError(f"FREQ={freq} is not supported: windows recur at most HOURLY")
    if freq not in _RFC_FREQS:
        raise ValueError(f"FREQ={freq} is not an RFC 5545 frequency")
    if "COUNT" in parts and "UNTIL" in parts:
        raise ValueError("COUNT and UNTIL must not both be given (RFC 5545)")
    for part in ("BYMONTH", "BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYHOUR", "BYSETPOS"):
        if part in parts and not _INT_LIST.match(parts[part]):
            raise ValueError(f"{part}={parts[part]} is not a comma-separated list of numbers")
    if "BYDAY" in parts:
        items = parts["BYDAY"].split(",")
        for item in items:
            match = _BYDAY_ITEM.match(item)
            if match is None:
                raise ValueError(f"BYDAY={parts['BYDAY']}: {item!r} is not a weekday such as MO or 1MO")
            if match.group(1) and freq not in ("MONTHLY", "YEARLY"):
                raise ValueError(f"BYDAY={parts['BYDAY']}: numbered weekdays need FREQ=MONTHLY or YEARLY (RFC 5545)")
    if "BYWEEKNO" in parts and freq != "YEARLY":
        raise ValueError("BYWEEKNO needs FREQ=YEARLY (RFC 5545)")
    if "BYYEARDAY" in parts and freq in ("DAILY", "WEEKLY", "MONTHLY"):
        raise ValueError(f"BYYEARDAY is not allowed with FREQ={freq} (RFC 5545)")
    if "BYMONTHDAY" in parts and freq == "WEEKLY":
        raise ValueError("BYMONTHDAY is not allowed with FREQ=WEEKLY (RFC 5545)")
    if "BYSETPOS" in parts and not any(p.startswith("BY") and p != "BYSETPOS" for p in parts):
        raise ValueError("BYSETPOS needs another BYxxx part (RFC 5545)")
    if "WKST" in parts and not re.fullmatch(_WEEKDAY, parts["WKST"]):
        raise ValueError(f"WKST={parts['WKST']} is not a weekday")
    return freq


def _build(parts: dict[str, str], start: datetime) -> rrule:
    text = ";".join(f"{key}={parts[key]}" for key in _PARTS if key in parts)
    try:
        built = rrulestr(text, dtstart=start)
    except (ValueError, TypeError, OverflowError, KeyError, IndexError) as exc:
        raise ValueError(f"not a valid RFC 5545 RRULE ({exc})") from None
    if not isinstance(built, rrule):  # pragma: no cover - one RRULE value always gives an rrule
        raise ValueError("expected a single RRULE")
    return built


def _first_occurrence(parts: dict[str, str], freq: str, interval: int, start: datetime) -> datetime | None:
    """The first occurrence of the pattern (COUNT and UNTIL ignored), found in bounded time.

    The pattern repeats every ``P = lcm(cycle, INTERVAL)`` units (one cycle = 400 Gregorian
    years), so if it occurs at all it occurs within one period after any aligned start. First
    probe from a start shifted late into the calendar by a multiple of ``P`` (dateutil stops at
    year 9999, so an empty pattern ends after about one period of steps); only a pattern that
    occurs there is then walked from the real start, where its first occurrence is less than
    one period away.
    """
    pattern = {k: v for k, v in parts.items() if k not in ("COUNT", "UNTIL")}
    cycle = _CYCLE_UNITS[freq]
    period_years = 400 * (interval // math.gcd(cycle, interval))
    shifts = (9998 - start.year) // period_years - 1
    if shifts > 0:
        shifted = start.replace(year=start.year + shifts * period_years)
        try:
            probe = _build(pattern, shifted).after(shifted, inc=True)
        except (OverflowError, ValueError):  # pragma: no cover - dateutil at the calendar's end
            probe = None
        if probe is None:
            return None
    try:
        return _build(pattern, start).after(start, inc=True)
    except (OverflowError, ValueError):  # pragma: no cover
        return None


@lru_cache(maxsize=1024)
def compile_rule(text: str, start: datetime, timezone: str) -> RecurrenceRule:
    """Validate ``text`` (see the module docstring) and bind it to local DTSTART ``start`` in
    ``timezone``.

    Raises:
        ValueError: the rule is malformed, unsupported, unbounded or never occurs.
    """
    zone = zone_of(timezone)
    parts = _split_rule(text)
    freq = _check_parts(parts)
    interval = _int_in(parts["INTERVAL"], "INTERVAL", 1, MAX_INTERVAL) if "INTERVAL" in parts else 1
    count = _int_in(parts["COUNT"], "COUNT", 1, MAX_COUNT) if "COUNT" in parts else None
    until = _until_local(parts["UNTIL"], zone) if "UNTIL" in parts else None
    if until is not None:
        parts["UNTIL"] = until.strftime("%Y%m%dT%H%M%S")
    built = _build(parts, start)  # syntax errors of the lists first
    first = _first_occurrence(parts, freq, interval, start)
    if first is None:
        raise ValueError(f"{text.strip()!r} never occurs (no date matches every BYxxx part before year 9999)")
    if until is not None and first > until:
        raise ValueError(f"UNTIL {until.isoformat()} is before the first occurrence {first.isoformat()}")
    normalised = ";".join(f"{key}={parts[key]}" for key in _PARTS if key in parts)
    return RecurrenceRule(text=normalised, freq=freq, start=start, count=count, until=until, first=first, _rule=built)


# --- windows --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecurringWindow:
    """A named RRULE window in an IANA zone (see the module docstring)."""

    name: str
    rule: RecurrenceRule
    duration: WindowDuration
    timezone: str
    kind: Literal["recurring"] = "recurring"

    @property
    def zone(self) -> ZoneInfo:
        return zone_of(self.timezone)

    @property
    def start(self) -> datetime:
        """DTSTART, local wall-clock time."""
        return self.rule.start

    def describe(self) -> str:
        return f"{self.rule.text} from {self.start.isoformat()} for {self.duration.text} ({self.timezone})"


@dataclass(frozen=True)
class AbsoluteWindow:
    """A named window ``[start_at, end_at)``; ``timezone`` (optional) is only for display."""

    name: str
    start_at: datetime
    end_at: datetime
    timezone: str | None = None
    kind: Literal["absolute"] = "absolute"

    def describe(self) -> str:
        return f"{iso_utc(self.start_at)}..{iso_utc(self.end_at)}"


Window = RecurringWindow | AbsoluteWindow


def recurring_window(name: str, *, rrule: str, start: object, duration: object, timezone: str) -> RecurringWindow:
    """Build a recurring window, checking each field.

    Raises:
        ConfigError: ``<field>: <problem>`` for the first bad field (``timezone``, ``start``,
        ``duration``, ``rrule``).
    """
    try:
        zone_name = check_zone(timezone)
    except ValueError as exc:
        raise ConfigError(f"timezone: {exc}") from None
    try:
        local = check_local_start(start)
    except ValueError as exc:
        raise ConfigError(f"start: {exc}") from None
    try:
        length = check_duration(duration)
    except ValueError as exc:
        raise ConfigError(f"duration: {exc}") from None
    try:
        rule = compile_rule(rrule, local, zone_name)
    except ValueError as exc:
        raise ConfigError(f"rrule: {exc}") from None
    return RecurringWindow(name=name, rule=rule, duration=length, timezone=zone_name)


def absolute_window(name: str, *, start_at: datetime, end_at: datetime, timezone: str | None = None) -> AbsoluteWindow:
    """Build an absolute window ``[start_at, end_at)``.

    Raises:
        ConfigError: naive instants, ``end_at`` not after ``start_at``, unknown zone.
    """
    for label, value in (("start_at", start_at), ("end_at", end_at)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ConfigError(f"{label}: {value.isoformat()} has no UTC offset")
    if end_at <= start_at:
        raise ConfigError(f"end_at: {end_at.isoformat()} is not after start_at {start_at.isoformat()}")
    if timezone is not None:
        try:
            check_zone(timezone)
        except ValueError as exc:
            raise ConfigError(f"timezone: {exc}") from None
    return AbsoluteWindow(
        name=name, start_at=start_at.astimezone(UTC), end_at=end_at.astimezone(UTC), timezone=timezone
    )


@dataclass(frozen=True)
class WindowHit:
    """One occurrence of a window: ``[start, end)`` in UTC."""

    window: Window
    start: datetime
    end: datetime

    @property
    def name(self) -> str:
        return self.window.name

    @property
    def timezone(self) -> str:
        return self.window.timezone or "UTC"

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


def occurrences(window: Window, start: datetime, end: datetime) -> list[WindowHit]:
    """Occurrences of ``window`` overlapping ``[start, end)``, by start time.

    Raises:
        InputError: naive bounds, or a window too dense for the span.
    """
    lo, hi = require_aware(start, what="start"), require_aware(end, what="end")
    if hi <= lo:
        return []
    if isinstance(window, AbsoluteWindow):
        if window.start_at < hi and window.end_at > lo:
            return [WindowHit(window, window.start_at, window.end_at)]
        return []
    zone = window.zone
    # local starts that can reach into [lo, hi): two days of slack cover any UTC-offset change
    slack = timedelta(days=2)
    local_lo = to_local(lo, zone) - window.duration.span - slack
    local_hi = to_local(hi, zone) + slack
    hits: list[WindowHit] = []
    for local_start in window.rule.starts(local_lo, local_hi):
        begin = resolve_local(local_start, zone)
        finish = window.duration.end(local_start, zone)
        if finish <= begin:  # pragma: no cover - a positive duration always ends later
            continue
        if begin < hi and finish > lo:
            hits.append(WindowHit(window, begin, finish))
    hits.sort(key=lambda hit: (hit.start, hit.end))
    return hits


class Timeline:
    """Every occurrence of ``windows`` overlapping ``[start, end]``, for repeated questions about
    instants in that span (what is active at ``t``, where does anything start or end)."""

    def __init__(self, windows: Sequence[Window], start: datetime, end: datetime) -> None:
        self.windows = tuple(windows)
        self.start = require_aware(start, what="start")
        self.end = require_aware(end, what="end")
        # an occurrence starting exactly at ``end`` still counts (the horizon is inclusive)
        self._hits = [occurrences(w, self.start, self.end + timedelta(microseconds=1)) for w in self.windows]
        self._starts = [[h.start for h in hits] for hits in self._hits]
        self._longest = [max((h.end - h.start for h in hits), default=timedelta(0)) for hits in self._hits]

    def hits_of(self, index: int, at: datetime) -> list[WindowHit]:
        """Occurrences of window ``index`` that contain ``at``."""
        hits, starts = self._hits[index], self._starts[index]
        found: list[WindowHit] = []
        n = bisect.bisect_right(starts, at) - 1
        earliest = at - self._longest[index]
        while n >= 0 and starts[n] >= earliest:
            if hits[n].end > at:
                found.append(hits[n])
            n -= 1
        found.reverse()
        return found

    def active(self, at: datetime) -> list[tuple[int, WindowHit]]:
        """``(window index, occurrence)`` for every occurrence containing ``at``, in window order."""
        moment = require_aware(at)
        return [(i, hit) for i in range(len(self.windows)) for hit in self.hits_of(i, moment)]

    def change_points(self) -> list[datetime]:
        """Every occurrence start or end strictly after ``start`` and at most ``end``, sorted."""
        points = {
            moment
            for hits in self._hits
            for hit in hits
            for moment in (hit.start, hit.end)
            if self.start < moment <= self.end
        }
        return sorted(points)

    def first(self, predicate: Callable[[datetime], bool]) -> datetime | None:
        """The earliest instant in ``[start, end]`` at which ``predicate`` holds, checking
        ``start`` and each change point (the state between change points is constant)."""
        for moment in self._candidates():
            if predicate(moment):
                return moment
        return None

    def _candidates(self) -> Iterator[datetime]:
        yield self.start
        yield from self.change_points()


def _latest(hits: Sequence[WindowHit]) -> WindowHit | None:
    best: WindowHit | None = None
    for hit in hits:
        if best is None or hit.end > best.end:
            best = hit
    return best


def active_at(windows: Sequence[Window], at: datetime) -> tuple[WindowHit, ...]:
    """Every occurrence of ``windows`` that contains ``at`` (window order)."""
    moment = require_aware(at)
    timeline = Timeline(windows, moment, moment + timedelta(microseconds=1))
    return tuple(hit for _, hit in timeline.active(moment))


def is_open(windows: Sequence[Window], at: datetime) -> WindowHit | None:
    """The occurrence containing ``at`` that lasts longest (ties: the earlier window), or None."""
    return _latest(active_at(windows, at))


def next_opening(windows: Sequence[Window], after: datetime, horizon: timedelta = DEFAULT_HORIZON) -> datetime | None:
    """The earliest instant ``t >= after`` (within ``horizon``) at which one of ``windows`` is
    open: ``after`` itself when open now; None when nothing opens within the horizon."""
    moment = require_aware(after, what="after")
    timeline = Timeline(windows, moment, moment + check_horizon(horizon))
    return timeline.first(lambda t: bool(timeline.active(t)))


def next_change(windows: Sequence[Window], after: datetime, horizon: timedelta = DEFAULT_HORIZON) -> datetime | None:
    """The earliest instant ``t > after`` (within ``horizon``) at which "one of ``windows`` is
    open" flips: the closing time when open at ``after`` (overlapping and back-to-back
    occurrences merged), the next opening when closed; None when nothing changes."""
    moment = require_aware(after, what="after")
    timeline = Timeline(windows, moment, moment + check_horizon(horizon))
    now_open = bool(timeline.active(moment))
    for point in timeline.change_points():
        if bool(timeline.active(point)) != now_open:
            return point
    return None


# --- the file model ---------------------------------------------------------------------------------


class WindowSpec(BaseModel):
    """One window as written in a policy file: recurring (``rrule``, ``start``, ``duration``,
    ``timezone``) or absolute (``start_at``, ``end_at`` with UTC offsets; optional ``timezone``
    for display). Subclass it to add scoping fields (targets, owners, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    timezone: str | None = None
    start: datetime | None = None
    duration: str | None = None
    rrule: str | None = None
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None

    _window: Window | None = PrivateAttr(default=None)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: Any) -> Any:
        return None if value is None else check_local_start(value)

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is not None:
            check_duration(value)
        return value

    @field_validator("rrule", mode="before")
    @classmethod
    def _rrule(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        parts = _split_rule(value)
        _check_parts(parts)
        start, zone = info.data.get("start"), info.data.get("timezone")
        if isinstance(start, datetime) and isinstance(zone, str):
            compile_rule(value, start, zone)
        return value

    @model_validator(mode="after")
    def _shape(self) -> WindowSpec:
        recurring = {"rrule": self.rrule, "start": self.start, "duration": self.duration, "timezone": self.timezone}
        if self.start_at is not None or self.end_at is not None:
            extra = [k for k in ("rrule", "start", "duration") if recurring[k] is not None]
            if extra:
                raise ValueError(
                    f"give either rrule/start/duration/timezone (recurring) or start_at/end_at (absolute), "
                    f"not both (found {', '.join(extra)} with start_at/end_at)"
                )
            if self.start_at is None or self.end_at is None:
                absent = "start_at" if self.start_at is None else "end_at"
                raise ValueError(f"an absolute window needs start_at and end_at; {absent} is missing")
            try:
                self._window = absolute_window(
                    self.name, start_at=self.start_at, end_at=self.end_at, timezone=self.timezone
                )
            except ConfigError as exc:
                raise ValueError(exc.message) from None
            return self
        missing = [k for k, v in recurring.items() if v is None]
        if len(missing) == len(recurring):
            raise ValueError(
                "a window needs rrule, start, duration and timezone (recurring) or start_at and end_at (absolute)"
            )
        if missing:
            raise ValueError(
                f"a recurring window needs rrule, start, duration and timezone; missing {', '.join(missing)}"
            )
        try:
            self._window = recurring_window(
                self.name,
                rrule=str(self.rrule),
                start=self.start,
                duration=self.duration,
                timezone=str(self.timezone),
            )
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return self

    @property
    def window(self) -> Window:
        """The compiled window."""
        assert self._window is not None  # set by validation
        return self._window
