"""Nightly compliance jobs: chain verification, retention run, training assignment sync."""

from __future__ import annotations

from flask import Flask, current_app

from audit.retention.engine import RetentionBusy, run_retention
from audit.trail.chain_verification import ChainVerificationRun, run_verification
from audit.training.services import ensure_assignments
from core.extensions import db
from core.scheduler import register_job

DAY = 24 * 60 * 60.0


def _daily(app: Flask) -> float:
    """Once a day."""
    return DAY


def verify_chain_job() -> ChainVerificationRun:
    """Verify the audit trail and keep the result (commits)."""
    run = run_verification("scheduler")
    db.session.commit()
    return run


def retention_job() -> int:
    """Run retention under the policies in force (commits per batch); returns records destroyed."""
    try:
        return run_retention("scheduler").total
    except RetentionBusy as busy:
        db.session.rollback()
        current_app.logger.warning("nightly retention skipped: %s", busy)
        return 0


def training_sync_job() -> int:
    """Create missing training assignments (commits); returns how many."""
    created = ensure_assignments()
    db.session.commit()
    return created


def register_jobs() -> None:
    """Register the nightly jobs with the scheduler."""
    register_job("audit.verify_chain", _daily, verify_chain_job)
    register_job("audit.retention", _daily, retention_job)
    register_job("audit.training_sync", _daily, training_sync_job)
