"""Retention runs as jobs: nightly under the policies in force, or confirmed by a person after a dry run."""

from __future__ import annotations

from typing import Any

from flask import current_app

from audit.retention.engine import RetentionBusy, RetentionChanged, confirmed_moment, run_retention
from core.auth.models import User
from core.extensions import db
from core.jobs.registry import JobContext
from core.jobs.worker import Fail

RETENTION_JOB = "audit.retention"


def retention_job(ctx: JobContext) -> dict[str, Any]:
    """Run retention (commits per batch); a confirmed run keeps the cutoffs of its dry run."""
    user = db.session.get(User, ctx.user_id) if ctx.user_id is not None else None
    digest = ctx.params.get("expected_digest")
    try:
        as_of = confirmed_moment(ctx.params.get("as_of"))
        report = run_retention(user.username if user else "scheduler", user, expected_digest=digest,
                               as_of=as_of)
    except RetentionBusy as busy:
        db.session.rollback()
        if user is None:
            current_app.logger.warning("nightly retention skipped: %s", busy)
            return {"skipped": str(busy)}
        raise Fail(str(busy)) from None
    except RetentionChanged as changed:
        db.session.rollback()
        raise Fail(str(changed)) from None
    return {"run_id": report.run_id, "destroyed": report.total, "digest": report.digest}
