"""Stored report PDFs as a retention record class: old report jobs are destroyed whole.

A purge deletes the job row with its PDF and parameters (an access-audit PDF lists patient
identifiers, and an investigation's parameters name the ticket or user looked into), so
nothing of the report stays behind; the ``report.generate`` and ``report.download`` audit
events keep the fact that it was generated, by whom, of what kind and period.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, select

from audit.reports.models import ReportJob
from audit.retention.registry import HoldScope, RecordClass
from core.auth.models import User
from core.database import rowcount
from core.extensions import db

RECORD_CLASS = "report_files"
BATCH = 500


def candidates(cutoff: datetime, anchor: str) -> Select:
    """(id, anchor time) of report jobs created (or finished) before ``cutoff``."""
    column = ReportJob.finished_at if anchor == "finished" else ReportJob.created_at
    return select(ReportJob.id, column.label("anchor")).where(column.is_not(None), column < cutoff)


def _scope_condition(scope: HoldScope) -> Any:
    """SQL condition for the report jobs a hold covers (None: none of them)."""
    if scope.object_type == "user" and scope.object_key:
        return ReportJob.requested_by_id.in_(
            select(User.id).where(User.username == scope.object_key.lower()))
    if scope.object_type is None and scope.record_class == RECORD_CLASS:
        condition: ColumnElement[bool] = ReportJob.id.is_not(None)
        if scope.start is not None:
            condition = condition & (ReportJob.created_at >= scope.start)
        if scope.end is not None:
            condition = condition & (ReportJob.created_at <= scope.end)
        return condition
    return None


def held(ids: Sequence[str], holds: Sequence[HoldScope]) -> set[str]:
    """The report jobs among ``ids`` that a legal hold covers."""
    conditions = [c for c in (_scope_condition(h) for h in holds) if c is not None]
    found: set[str] = set()
    id_list = list(ids)
    for condition in conditions:
        for start in range(0, len(id_list), BATCH):
            found.update(db.session.execute(select(ReportJob.id).where(
                ReportJob.id.in_(id_list[start:start + BATCH]), condition)).scalars())
    return found


def purge(ids: Sequence[str]) -> int:
    """Delete report jobs with their PDFs; returns how many went."""
    id_list = list(ids)
    removed = 0
    for start in range(0, len(id_list), BATCH):
        removed += rowcount(db.session.execute(
            delete(ReportJob).where(ReportJob.id.in_(id_list[start:start + BATCH]))))
    db.session.flush()
    return removed


def matches(scope: HoldScope) -> bool:
    """Whether any stored report falls under ``scope``."""
    condition = _scope_condition(scope)
    return condition is not None and db.session.execute(
        select(ReportJob.id).where(condition).limit(1)).first() is not None


RETENTION_CLASS = RecordClass(
    key=RECORD_CLASS, object_type="report", label="Stored report files (generated PDFs and their parameters)",
    anchors=("created", "finished"), default_years=1, floor_years=0, floor_rule="",
    candidates=candidates, held=held, purge=purge)
