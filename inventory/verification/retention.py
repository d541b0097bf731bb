"""Retention of stored C-ECHO checks: a record class the retention engine drives."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, select

from audit.retention.registry import HoldScope, RecordClass
from core.database import rowcount
from core.extensions import db
from inventory.models import Asset
from inventory.verification.models import NodeCheck

RECORD_CLASS = "verification_results"


def _candidates(cutoff: datetime, anchor: str) -> Select:
    """Checks made before ``cutoff`` (the only anchor is the check's time)."""
    return select(NodeCheck.id, NodeCheck.checked_at).where(NodeCheck.checked_at < cutoff)


def _hold_condition(scope: HoldScope) -> Any:
    """SQL condition for the checks a hold covers, or None when it covers none."""
    if scope.object_type == "asset" and scope.object_key:
        return NodeCheck.asset_id.in_(select(Asset.id).where(Asset.asset_tag == scope.object_key))
    if scope.record_class == RECORD_CLASS and not scope.object_type:
        condition: ColumnElement[bool] = NodeCheck.id.is_not(None)
        if scope.start:
            condition = condition & (NodeCheck.checked_at >= scope.start)
        if scope.end:
            condition = condition & (NodeCheck.checked_at <= scope.end)
        return condition
    return None


def _held(ids: Sequence[int], holds: Sequence[HoldScope]) -> set[int]:
    """The ids among ``ids`` that a legal hold covers."""
    conditions = [c for c in (_hold_condition(h) for h in holds) if c is not None]
    if not ids or not conditions:
        return set()
    held: set[int] = set()
    for condition in conditions:
        held.update(db.session.execute(
            select(NodeCheck.id).where(NodeCheck.id.in_(list(ids)), condition)).scalars())
    return held


def _purge(ids: Sequence[int]) -> int:
    """Delete these checks (flushes); returns how many went."""
    if not ids:
        return 0
    result = db.session.execute(delete(NodeCheck).where(NodeCheck.id.in_(list(ids))))
    db.session.flush()
    return rowcount(result)


RETENTION_CLASS = RecordClass(
    key=RECORD_CLASS, object_type="node_check", label="DICOM verification results", anchors=("created",),
    default_years=2,
    floor_years=0, floor_rule="no legal minimum (operational records)",
    candidates=_candidates, held=_held, purge=_purge)
