"""The audit package's blueprint (the trail, retention and training pages add their routes) and its panel."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import func, select

from audit.retention import engine as retention
from audit.trail.chain_verification import last_verification, unacknowledged_failure
from audit.training import services as training
from core.extensions import db

bp = Blueprint("audit", __name__)


def compliance_panel() -> dict[str, Any]:
    """Figures for the compliance dashboard panel."""
    overdue = db.session.execute(
        select(func.count()).select_from(training.TrainingAssignment)).scalar_one()
    late_users = 0
    late = 0
    if overdue:
        _, rows = training.matrix(training.MatrixFilter())
        for _user, cells in rows:
            n = sum(1 for s in cells.values() if s.needs_action)
            late += n
            late_users += 1 if n else 0
    return {"overdue_training": late, "overdue_users": late_users,
            "verification": last_verification(), "broken": unacknowledged_failure(),
            "retention_run": retention.last_run()}
