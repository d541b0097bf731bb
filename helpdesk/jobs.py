"""Scheduled help desk work; each job commits for itself."""

from __future__ import annotations

from flask import current_app

from core.extensions import db
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
