"""Scheduled help desk work; each job commits for itself."""

from __future__ import annotations

from typing import Any

from flask import current_app

from core.extensions import db
from core.jobs.registry import JobContext
from helpdesk.services import autoclose_resolved


def close_resolved_tickets() -> list[str]:
    """Close tickets resolved longer than PACSDESK_AUTOCLOSE_DAYS ago; commit; return their numbers."""
    try:
        closed = autoclose_resolved()
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    if closed:
        current_app.logger.info("auto-closed %d resolved tickets", len(closed))
    return closed


def autoclose_job(ctx: JobContext) -> dict[str, Any]:
    """The hourly auto-close as a job (commits)."""
    return {"closed": close_resolved_tickets()}
