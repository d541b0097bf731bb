"""Record classes described in one declarative form, and the one set of queries that runs them all.

A domain says what its records are (the model, the anchor dates, which rows belong to the class,
what a legal hold on an object or a period covers, what is destroyed with a record); this module
turns that into the ``RecordClass`` the retention engine drives: finding candidates, sparing held
records and purging in batches are written once, here. The audit trail (a chain that can only
lose a prefix) and the PACS access log (month partitions) keep their own hand-written classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask
from sqlalchemy import ColumnElement, Select, delete, select

from audit.retention.registry import HoldScope, RecordClass, register_record_class, register_scope_matcher
from core.database import rowcount
from core.extensions import db

BATCH = 500

Condition = ColumnElement[bool]


def _same(moment: datetime) -> Any:
    """A cutoff or period bound as it is: the anchor columns hold timestamps."""
    return moment


def _everything() -> list[Condition]:
    """No condition: every row of the model belongs to the class."""
    return []


@dataclass(frozen=True)
class Described:
    """A record class in declarative form: what its records are, never how to walk them."""

    key: str
    label: str
    object_type: str                          # what audit events call one record ("ticket")
    model: Any                                # the mapped class; its ``id`` identifies a record
    anchors: Mapping[str, Any]                # anchor name -> date or timestamp column
    default_years: int
    floor_years: int = 0
    floor_rule: str = ""
    belongs: Callable[[], Sequence[Condition]] = _everything          # rows that form the class
    held_by: Mapping[str, Callable[[str], Condition | None]] = field(default_factory=dict)
    period: Callable[[Any, Any], Sequence[Condition]] | None = None   # default: first anchor in range
    purge_with: Sequence[Callable[[list[Any]], None]] = ()           # what goes first, given the ids
    as_column_value: Callable[[datetime], Any] = _same                 # e.g. a local date

    def _period(self, scope: HoldScope) -> list[Condition]:
        """The records a hold on this whole class for ``scope``'s period covers."""
        start = None if scope.start is None else self.as_column_value(scope.start)
        end = None if scope.end is None else self.as_column_value(scope.end)
        if self.period is not None:
            return [*self.period(start, end)]
        column = next(iter(self.anchors.values()))
        return [condition for condition in (None if start is None else column >= start,
                                            None if end is None else column <= end)
                if condition is not None]

    def covered(self, scope: HoldScope) -> list[Condition] | None:
        """SQL conditions for the records ``scope`` covers, or None when it covers none of them."""
        if scope.object_type:
            by_object = self.held_by.get(scope.object_type)
            condition = by_object(scope.object_key) if by_object and scope.object_key else None
            return None if condition is None else [condition]
        if scope.record_class == self.key:
            return self._period(scope)
        return None

    def candidates(self, cutoff: datetime, anchor: str) -> Select:
        """(id, anchor) of the class's records whose anchor is before ``cutoff``."""
        column = self.anchors[anchor]
        return (select(self.model.id, column.label("anchor"))
                .where(column.is_not(None), column < self.as_column_value(cutoff), *self.belongs()))

    def held(self, ids: Sequence[Any], holds: Sequence[HoldScope]) -> set[Any]:
        """The ids among ``ids`` that a legal hold covers."""
        found: set[Any] = set()
        id_list = list(ids)
        for hold in holds:
            conditions = self.covered(hold)
            if conditions is None:
                continue
            for start in range(0, len(id_list), BATCH):
                found.update(db.session.execute(select(self.model.id).where(
                    self.model.id.in_(id_list[start:start + BATCH]), *conditions)).scalars())
        return found

    def purge(self, ids: Sequence[Any]) -> int:
        """Delete these records (those still in the class) with what goes with them; flushes."""
        removed = 0
        id_list = list(ids)
        for start in range(0, len(id_list), BATCH):
            chunk = list(db.session.execute(select(self.model.id).where(
                self.model.id.in_(id_list[start:start + BATCH]), *self.belongs())).scalars())
            if not chunk:
                continue
            for first in self.purge_with:
                first(chunk)
            removed += rowcount(db.session.execute(delete(self.model).where(self.model.id.in_(chunk))))
        db.session.flush()
        return removed

    def matches(self, scope: HoldScope) -> bool:
        """Whether any record of the class falls under ``scope`` (one query)."""
        conditions = self.covered(scope)
        return conditions is not None and db.session.execute(
            select(self.model.id).where(*conditions, *self.belongs()).limit(1)).first() is not None

    def record_class(self) -> RecordClass:
        """The form the retention engine drives."""
        return RecordClass(key=self.key, label=self.label, object_type=self.object_type,
                           anchors=tuple(self.anchors), default_years=self.default_years,
                           floor_years=self.floor_years, floor_rule=self.floor_rule,
                           candidates=self.candidates, held=self.held, purge=self.purge)


def register_described(app: Flask, described: Described) -> None:
    """Make a declaratively described record class known to the engine, with its one-query matcher."""
    register_record_class(app, described.record_class())
    register_scope_matcher(app, described.key, described.matches)
