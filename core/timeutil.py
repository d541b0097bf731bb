"""Time helpers: store UTC (aware), show in ``PACSDESK_TIMEZONE``."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import overload
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context
from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator

from core.forms import FieldError


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def local_tz() -> tzinfo:
    """Return the configured display time zone (UTC outside an app)."""
    if has_app_context():
        return ZoneInfo(current_app.config["PACSDESK_TIMEZONE"])
    return UTC


@overload
def to_local(value: datetime) -> datetime: ...
@overload
def to_local(value: None) -> None: ...
@overload
def to_local(value: datetime | None) -> datetime | None: ...


def to_local(value: datetime | None) -> datetime | None:
    """Convert an aware datetime to the configured local time zone."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(local_tz())


def format_local(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Format a datetime in local time (a time of day followed by its zone: ``01:30 EST``); '' for None.

    The zone's abbreviation (or its offset, where the zone has none) keeps the repeated hour of
    a daylight-saving change unambiguous.
    """
    local = to_local(value)
    if local is None:
        return ""
    if "%H" in fmt and "%Z" not in fmt and "%z" not in fmt:
        fmt += " %Z"
    return local.strftime(fmt)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always returned timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        """Refuse naive datetimes and normalise to UTC before storing."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC time is required")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        """Return stored values as aware UTC datetimes."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


MIN_YEAR = 1900
MAX_YEAR = 2999


class DateOutOfRange(FieldError):
    """A date outside the years PACS Desk accepts; ``field`` names the form field at fault."""


def check_day(day: date, field: str, label: str) -> date:
    """Return ``day`` if its year is within MIN_YEAR..MAX_YEAR, else raise DateOutOfRange naming the field."""
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise DateOutOfRange(f"{label}: {day.isoformat()} is out of range; give a date between "
                             f"{MIN_YEAR} and {MAX_YEAR}.", field)
    return day


def local_day_start(day: date) -> datetime:
    """Midnight of a local calendar day as an aware datetime (the day must pass ``check_day``)."""
    return datetime.combine(day, time.min, tzinfo=local_tz())


def local_day_bounds(start: date | None, end: date | None, fields: tuple[str, str] = ("date_from", "date_to"),
                     labels: tuple[str, str] = ("From", "To")) -> tuple[datetime | None, datetime | None]:
    """UTC instants [start of the first local day, start of the day after the last), checked first."""
    lower = upper = None
    if start is not None:
        lower = local_day_start(check_day(start, fields[0], labels[0])).astimezone(UTC)
    if end is not None:
        after = check_day(end, fields[1], labels[1]) + timedelta(days=1)
        upper = local_day_start(after).astimezone(UTC)
    return lower, upper
