"""The nightly chain verification job."""

from __future__ import annotations

from audit.trail.chain_verification import ChainVerificationRun, run_verification
from core.extensions import db


def verify_chain_job() -> ChainVerificationRun:
    """Verify the audit trail and keep the result (commits)."""
    run = run_verification("scheduler")
    db.session.commit()
    return run
