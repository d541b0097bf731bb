"""Local wall-clock time of a UTC column, computed inside SQL on PostgreSQL and SQLite.

PostgreSQL converts with ``AT TIME ZONE``. SQLite has no time zone database, so the
period is cut at every UTC-offset change (found with ``zoneinfo``) and each piece adds its
own constant offset: exact across daylight-saving changes, still one SQL expression that
GROUP BY and WHERE can use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, SQLColumnExpression, and_, case, cast, func, literal_column, not_
from sqlalchemy.sql.elements import ColumnElement

SAFE_TZ = re.compile(r"^[A-Za-z0-9_+\-/]+$")
DAYS_CHARTED_BY_DAY = 92    # a longer period is charted per month


def _sql_text(value: str) -> ColumnElement:
    """A quoted SQL string literal (inline, so GROUP BY sees identical expressions)."""
    return literal_column("'" + value.replace("'", "''") + "'")


def offset_segments(tz: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """(segment start UTC, offset seconds) pieces covering [start, end) with a constant offset."""
    def offset(at: datetime) -> int:
        shift = at.astimezone(tz).utcoffset()
        assert shift is not None  # an aware datetime always has one
        return int(shift.total_seconds())

    segments = [(start, offset(start))]
    step = timedelta(hours=12)
    cursor = start
    while cursor < end:
        nxt = min(cursor + step, end)
        if offset(nxt) != segments[-1][1]:
            low, high = cursor, nxt
            while high - low > timedelta(seconds=1):
                mid = low + (high - low) / 2
                if offset(mid) == segments[-1][1]:
                    low = mid
                else:
                    high = mid
            boundary = high.replace(microsecond=0)
            segments.append((boundary, offset(boundary)))
        cursor = nxt
    return segments


@dataclass(frozen=True)
class PeriodBuckets:
    """A chart's buckets over a period: local days, or local months for a long period."""

    column: ColumnElement   # each row's bucket key ('YYYY-MM-DD' or 'YYYY-MM'), labelled "bucket"
    keys: list[str]         # every bucket of the period in order, empty ones included
    unit: str               # "day" or "month"

    @property
    def labels(self) -> list[str]:
        """The keys as the chart shows them (days without their year)."""
        return self.keys if self.unit == "month" else [k[5:] for k in self.keys]


@dataclass(frozen=True)
class LocalClock:
    """SQL expressions for the local date, weekday and minute of day of a UTC timestamp column."""

    dialect: str
    tz_name: str
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if not SAFE_TZ.match(self.tz_name):
            raise ValueError(f"unexpected time zone name {self.tz_name!r}")

    def local(self, column: SQLColumnExpression[Any]) -> ColumnElement:
        """The local timestamp (PostgreSQL: timestamp; SQLite: 'YYYY-MM-DD HH:MM:SS' text)."""
        if self.dialect == "postgresql":
            return func.timezone(_sql_text(self.tz_name), column)
        segments = offset_segments(ZoneInfo(self.tz_name), self.start - timedelta(days=1),
                                   self.end + timedelta(days=1))

        def shifted(seconds: int) -> ColumnElement:
            return func.datetime(column, _sql_text(f"{seconds:+d} seconds"))

        if len(segments) == 1:
            return shifted(segments[0][1])
        whens = []
        for (_, seconds), (boundary, _) in pairwise(segments):
            stamp = boundary.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.000000")
            whens.append((column < _sql_text(stamp), shifted(seconds)))
        return case(*whens, else_=shifted(segments[-1][1]))

    def day(self, column: SQLColumnExpression[Any]) -> ColumnElement:
        """Local calendar day as 'YYYY-MM-DD' text."""
        if self.dialect == "postgresql":
            return func.to_char(self.local(column), _sql_text("YYYY-MM-DD"))
        return func.substr(self.local(column), 1, 10)

    def month(self, column: SQLColumnExpression[Any]) -> ColumnElement:
        """Local month as 'YYYY-MM' text."""
        if self.dialect == "postgresql":
            return func.to_char(self.local(column), _sql_text("YYYY-MM"))
        return func.substr(self.local(column), 1, 7)

    def buckets(self, column: SQLColumnExpression[Any], start: date, end: date) -> PeriodBuckets:
        """Per-day buckets of ``column`` from ``start`` to ``end`` (per month beyond three months)."""
        by_month = (end - start).days > DAYS_CHARTED_BY_DAY
        keys: list[str] = []
        day = start
        while day <= end:
            key = day.strftime("%Y-%m" if by_month else "%Y-%m-%d")
            if not keys or keys[-1] != key:
                keys.append(key)
            day += timedelta(days=1)
        bucket = (self.month if by_month else self.day)(column).label("bucket")
        return PeriodBuckets(bucket, keys, "month" if by_month else "day")

    def weekday(self, column: SQLColumnExpression[Any]) -> ColumnElement:
        """Local weekday, Monday = 0."""
        if self.dialect == "postgresql":
            return cast(func.extract("isodow", self.local(column)), Integer) - 1
        return (cast(func.strftime(_sql_text("%w"), self.local(column)), Integer) + 6) % 7

    def minute_of_day(self, column: SQLColumnExpression[Any]) -> ColumnElement:
        """Minutes since local midnight."""
        if self.dialect == "postgresql":
            local = self.local(column)
            return (cast(func.extract("hour", local), Integer) * 60
                    + cast(func.extract("minute", local), Integer))
        local = self.local(column)
        return (cast(func.strftime(_sql_text("%H"), local), Integer) * 60
                + cast(func.strftime(_sql_text("%M"), local), Integer))

    def outside_hours(self, column: SQLColumnExpression[Any],
                      hours: tuple[frozenset[int], time, time]) -> ColumnElement[bool]:
        """True when the local time falls outside business hours (days, start incl., end excl.)."""
        days, start, end = hours
        minute = self.minute_of_day(column)
        start_m, end_m = start.hour * 60 + start.minute, end.hour * 60 + end.minute
        if not days:
            return literal_column("1") == literal_column("1")
        inside = and_(self.weekday(column).in_([literal_column(str(d)) for d in sorted(days)]),
                      minute >= literal_column(str(start_m)), minute < literal_column(str(end_m)))
        return not_(inside)
