"""Stored report PDFs as retention record classes: old report jobs are destroyed whole.

A purge deletes the job row with its PDF and parameters (an access-audit PDF lists patient
identifiers, and an investigation's parameters name the ticket or user looked into), so
nothing of the report stays behind; the ``report.generate`` and ``report.download`` audit
events keep the fact that it was generated, by whom, of what kind and period.

Most kinds are kept as "report files"; a kind whose ``record_class`` names another class
(certificates of destruction) is kept under that class instead, by default for good.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, select, true

from audit.reports.models import ReportJob
from audit.reports.registry import report_kinds
from audit.retention.registry import HoldScope, RecordClass
from core.auth.models import User
from core.extensions import db

RECORD_CLASS = "report_files"
CERTIFICATE_CLASS = "destruction_certificates"
BATCH = 500


def _kinds_of(key: str) -> ColumnElement[bool]:
    """Report jobs whose kind is kept under record class ``key``."""
    elsewhere = [k.key for k in report_kinds() if k.record_class != RECORD_CLASS]
    if key == RECORD_CLASS:
        return ReportJob.kind.not_in(elsewhere) if elsewhere else true()
    return ReportJob.kind.in_([k.key for k in report_kinds() if k.record_class == key])


def _candidates(key: str) -> Callable[[datetime, str], Select]:
    """(id, anchor time) of the class's report jobs created (or finished) before the cutoff."""

    def candidates(cutoff: datetime, anchor: str) -> Select:
        column = ReportJob.finished_at if anchor == "finished" else ReportJob.created_at
        return select(ReportJob.id, column.label("anchor")).where(column.is_not(None), column < cutoff,
                                                                  _kinds_of(key))

    return candidates


def _scope_condition(key: str, scope: HoldScope) -> Any:
    """SQL condition for the class's report jobs a hold covers (None: none of them)."""
    if scope.object_type == "user" and scope.object_key:
        return ReportJob.requested_by_id.in_(
            select(User.id).where(User.username == scope.object_key.lower())) & _kinds_of(key)
    if scope.object_type is None and scope.record_class == key:
        condition = _kinds_of(key)
        if scope.start is not None:
            condition = condition & (ReportJob.created_at >= scope.start)
        if scope.end is not None:
            condition = condition & (ReportJob.created_at <= scope.end)
        return condition
    return None


def _held(key: str) -> Callable[[Sequence[str], Sequence[HoldScope]], set[str]]:
    """The class's report jobs among ``ids`` that a legal hold covers."""

    def held(ids: Sequence[str], holds: Sequence[HoldScope]) -> set[str]:
        conditions = [c for c in (_scope_condition(key, h) for h in holds) if c is not None]
        found: set[str] = set()
        id_list = list(ids)
        for condition in conditions:
            for start in range(0, len(id_list), BATCH):
                found.update(db.session.execute(select(ReportJob.id).where(
                    ReportJob.id.in_(id_list[start:start + BATCH]), condition)).scalars())
        return found

    return held


def purge(ids: Sequence[str]) -> int:
    """Delete report jobs with their PDFs; returns how many went."""
    id_list = list(ids)
    removed = 0
    for start in range(0, len(id_list), BATCH):
        removed += db.session.execute(
            delete(ReportJob).where(ReportJob.id.in_(id_list[start:start + BATCH]))).rowcount
    db.session.flush()
    return removed


def matcher(key: str) -> Callable[[HoldScope], bool]:
    """Whether any stored report of class ``key`` falls under a scope."""

    def matches(scope: HoldScope) -> bool:
        condition = _scope_condition(key, scope)
        return condition is not None and db.session.execute(
            select(ReportJob.id).where(condition).limit(1)).first() is not None

    return matches


def matches(scope: HoldScope) -> bool:
    """Whether any stored report file falls under ``scope``."""
    return matcher(RECORD_CLASS)(scope)


RETENTION_CLASS = RecordClass(
    key=RECORD_CLASS, object_type="report", label="Stored report files (generated PDFs and their parameters)",
    anchors=("created", "finished"), default_years=1, floor_years=0, floor_rule="",
    candidates=_candidates(RECORD_CLASS), held=_held(RECORD_CLASS), purge=purge)
# Kept for good by default: the default policy (100 years) is stored not enforced, like every default.
CERTIFICATE_RETENTION_CLASS = RecordClass(
    key=CERTIFICATE_CLASS, object_type="report",
    label="Certificates of destruction (kept permanently unless a policy is enforced)",
    anchors=("created", "finished"), default_years=100, floor_years=6,
    floor_rule="HIPAA 45 CFR 164.316(b)(2) (documentation kept 6 years)",
    candidates=_candidates(CERTIFICATE_CLASS), held=_held(CERTIFICATE_CLASS), purge=purge)
