"""The audit trail as a retention record class: only a prefix of the chain can go, via purge_through."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select

from audit.retention.models import RetentionRun, RunStatus
from audit.retention.registry import HoldScope, RecordClass
from audit.trail.chain import purge_through
from audit.trail.models import AuditEvent
from core.auth.models import User
from core.extensions import db

DOCUMENTATION_RULE = "45 CFR 164.316(b)(2) (keep documentation 6 years)"


def begin_walk() -> None:
    """Forget cached chain boundaries: a run or dry run is starting."""
    _FIRST_YOUNG.clear()


def _audit_hold_condition(scope: HoldScope) -> Any:
    """SQL condition for the audit events a hold scope covers (None: covers none)."""
    if scope.object_type == "user":
        return AuditEvent.user_id == select(User.id).where(User.username == scope.object_key) \
            .scalar_subquery()
    if scope.object_type:
        return AuditEvent.about(scope.object_type, scope.object_key)
    if scope.record_class == "audit_events":
        cond: ColumnElement[bool] = AuditEvent.seq.is_not(None)
        if scope.start:
            cond = cond & (AuditEvent.occurred_at >= scope.start)
        if scope.end:
            cond = cond & (AuditEvent.occurred_at <= scope.end)
        return cond
    return None


# First young event per cutoff, for one walk: later events only append larger positions, so the
# value stays right while a walk runs; it is cleared when a run or dry run begins.
_FIRST_YOUNG: dict[datetime, int | None] = {}


def _audit_candidates(cutoff: datetime, anchor: str) -> Any:
    """Events older than ``cutoff`` that form an unbroken prefix of the chain (by seq)."""
    if cutoff not in _FIRST_YOUNG:
        _FIRST_YOUNG[cutoff] = db.session.execute(
            select(func.min(AuditEvent.seq)).where(AuditEvent.occurred_at >= cutoff)).scalar()
    query = select(AuditEvent.seq, AuditEvent.occurred_at).where(AuditEvent.occurred_at < cutoff)
    if _FIRST_YOUNG[cutoff] is not None:
        query = query.where(AuditEvent.seq < _FIRST_YOUNG[cutoff])
    return query


def _audit_held(ids: Sequence[int], holds: Sequence[HoldScope]) -> set[int]:
    """A held event stops the purge there: only the chain's prefix before it may go."""
    conditions = [c for c in (_audit_hold_condition(s) for s in holds) if c is not None]
    if not conditions or not ids:
        return set()
    first_held = db.session.execute(
        select(func.min(AuditEvent.seq)).where(or_(*conditions))).scalar_one_or_none()
    if first_held is None:
        return set()
    return {i for i in ids if i >= first_held}


def _running_retention_run() -> int | None:
    """The retention run in progress (the engine allows one at a time), which a purge names."""
    return db.session.execute(select(RetentionRun.id)
                              .where(RetentionRun.status == RunStatus.RUNNING)).scalar()


def _audit_purge(ids: Sequence[int]) -> int:
    """Purge the chain through the last of ``ids`` (they are its prefix), naming the run."""
    return purge_through(max(ids), "retention schedule", run_id=_running_retention_run())


def audit_matches(scope: HoldScope) -> bool:
    """Whether any audit event falls under ``scope``."""
    condition = _audit_hold_condition(scope)
    return condition is not None and db.session.execute(
        select(AuditEvent.id).where(condition).limit(1)).first() is not None


RETENTION_CLASS = RecordClass(
    key="audit_events", label="Audit events", anchors=("created",), default_years=6, floor_years=6,
    floor_rule=DOCUMENTATION_RULE, candidates=_audit_candidates, held=_audit_held,
    purge=_audit_purge)
