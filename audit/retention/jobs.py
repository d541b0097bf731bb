"""The nightly retention run."""

from __future__ import annotations

from flask import current_app

from audit.retention.engine import RetentionBusy, run_retention
from core.extensions import db


def retention_job() -> int:
    """Run retention under the policies in force (commits per batch); returns records destroyed."""
    try:
        return run_retention("scheduler").total
    except RetentionBusy as busy:
        db.session.rollback()
        current_app.logger.warning("nightly retention skipped: %s", busy)
        return 0
