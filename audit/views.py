"""The audit package's blueprint (the trail, retention and training pages add their routes) and its panel."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from audit.retention import engine as retention
from audit.trail.chain_verification import last_verification, unacknowledged_failure
from audit.training import services as training

bp = Blueprint("audit", __name__)


def compliance_panel() -> dict[str, Any]:
    """Figures for the compliance dashboard panel."""
    late, late_users = training.overdue_counts()
    return {"overdue_training": late, "overdue_users": late_users,
            "verification": last_verification(), "broken": unacknowledged_failure(),
            "retention_run": retention.last_run()}
