"""SQL helpers the report kinds share: durations and percentiles on PostgreSQL and SQLite."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Float, SQLColumnExpression, cast, func, select
from sqlalchemy.sql.elements import ColumnElement

from core.extensions import db


def dialect() -> str:
    """The database dialect in use."""
    return db.session.get_bind().dialect.name


def seconds_between(later: SQLColumnExpression[Any], earlier: SQLColumnExpression[Any]) -> ColumnElement:
    """``later - earlier`` in seconds, computed by the database."""
    if dialect() == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def percentiles(value: ColumnElement, conditions: Sequence[ColumnElement[bool]],
                fractions: Sequence[float] = (0.5, 0.9)) -> list[float | None]:
    """Continuous percentiles of ``value`` over the rows matching ``conditions``.

    PostgreSQL computes them (percentile_cont); SQLite has no such aggregate, so the
    database sorts the single column and the percentiles are read off the sorted values.
    """
    if dialect() == "postgresql":
        aggregates = [func.percentile_cont(f).within_group(cast(value, Float)) for f in fractions]
        row = db.session.execute(select(*aggregates).where(*conditions)).one()
        return [float(v) if v is not None else None for v in row]
    ordered = [float(v) for (v,) in db.session.execute(
        select(value).where(*conditions, value.is_not(None)).order_by(value))]
    if not ordered:
        return [None for _ in fractions]
    found: list[float | None] = []
    for fraction in fractions:
        rank = fraction * (len(ordered) - 1)
        low, high = math.floor(rank), math.ceil(rank)
        found.append(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))
    return found


def human_duration(seconds: float | None) -> str:
    """'3 h 20 min', '2 d 4 h', '45 min' (empty for None)."""
    if seconds is None:
        return ""
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
