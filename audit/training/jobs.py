"""The nightly training assignment sync."""

from __future__ import annotations

from audit.training.services import ensure_assignments
from core.extensions import db


def training_sync_job() -> int:
    """Create missing training assignments (commits); returns how many."""
    created = ensure_assignments()
    db.session.commit()
    return created
